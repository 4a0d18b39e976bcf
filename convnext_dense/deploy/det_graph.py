"""The exported detector: uint8 RGB images to detections, as mmdet 3.3's two-stage ``predict`` computes them.

The graph calls the trained model's own modules and mmdet's own helpers wherever the TorchScript exporter
records them faithfully: the backbone, neck, RPN, box and mask heads' forwards, the anchor generator's
``single_level_grid_priors`` (written to stay dynamic under tracing), the box coders' ``decode``, the RoI
extractors' ``map_roi_levels`` and the box heads' ``regress_by_class``. Three parts are written here instead,
each for a reason the exporter gives:

- ``RPNHead._bbox_post_process`` and ``multiclass_nms`` branch in Python on the data (``if not
  valid_mask.all()``, ``if bboxes.numel() > 0``): a trace records the branch its example took. The graph does
  the same filtering with tensor ops, whatever the data.
- NMS and RoIAlign: mmcv's ops export to its custom-op domain (or, with mmcv-lite, not at all); torchvision's
  ``nms`` and ``roi_align`` export to the standard ``NonMaxSuppression`` and ``RoiAlign`` (``half_pixel`` for
  mmcv's ``aligned=True``, hence opset >= 16), which stock ONNX Runtime runs.
- Pasting masks into the image: mmdet's ``_do_paste_mask`` runs in the predictor on each detection's M x M
  probabilities, at the original image size the graph does not know.

Batches: the backbone and neck run on the whole batch; the heads run image by image (the tracer unrolls the
loop, so a detector file has a fixed batch size) with each image's own size for clipping, as mmdet's batched
``predict`` does. Boxes are in the resized input's pixels (``rescale=False``).
"""
from typing import Any, List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.deploy.preprocess import preprocess_from
from convnext_dense.errors import DeployError

#: An image size: an int in eager mode, a 0-d tensor while tracing (so the graph keeps it dynamic).
Size = Union[int, torch.Tensor]


def _clip_boxes(boxes: torch.Tensor, height: Size, width: Size) -> torch.Tensor:
    """Clamps (N, 4k) xyxy boxes to [0, width] x [0, height] (mmdet clips to the unpadded image)."""
    limits = torch.stack([torch.as_tensor(width), torch.as_tensor(height)]).to(boxes)
    pairs = boxes.reshape(boxes.shape[0], -1, 2)
    return torch.min(pairs, limits).clamp(min=0).reshape(boxes.shape)


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                 iou_threshold: float) -> torch.Tensor:
    """Indices kept by NMS within each group, by decreasing score (``NonMaxSuppression`` in the graph).

    The groups are separated by mmcv's coordinate offset (``(max + 1) * group``), so that the boxes NMS
    compares are the very numbers mmcv's ``batched_nms`` compares. The 0 appended before the max keeps the
    graph valid when no box is left (boxes are clipped to non-negative coordinates, so it changes nothing).
    """
    import torchvision
    max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
    offsets = groups.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)


def _nms_iou(nms_cfg: Any, where: str) -> float:
    nms_cfg = dict(nms_cfg)
    if nms_cfg.get('type', 'nms') != 'nms' or nms_cfg.get('class_agnostic', False):
        raise DeployError(f"{where}.nms={nms_cfg}: export writes plain per-class NMS only; set "
                          f"nms=dict(type='nms', iou_threshold=...)")
    return float(nms_cfg['iou_threshold'])


def _topk_min(scores: torch.Tensor, k: int) -> Union[int, torch.Tensor]:
    """``min(k, len(scores))`` that stays a dynamic value in a traced graph."""
    from torchvision.models.detection._utils import _topk_min
    return _topk_min(scores, k, 0)


def check_detector(detector: nn.Module) -> None:
    """Raises :class:`DeployError` unless :class:`DetectorGraph` can export ``detector``."""
    name = type(detector).__name__
    rpn = getattr(detector, 'rpn_head', None)
    roi_head = getattr(detector, 'roi_head', None)
    if rpn is None or roi_head is None:
        raise DeployError(f'cannot export {name}: the export writes two-stage detectors (Mask R-CNN, Cascade '
                          f'Mask R-CNN, Faster R-CNN); export its backbone alone with --what backbone')
    if type(rpn).__name__ != 'RPNHead' or type(rpn.prior_generator).__name__ != 'AnchorGenerator':
        raise DeployError(f'cannot export {name} with {type(rpn).__name__}: the export writes an RPNHead with '
                          f'an AnchorGenerator; export its backbone alone with --what backbone')
    if type(roi_head).__name__ not in ('StandardRoIHead', 'CascadeRoIHead'):
        raise DeployError(f'cannot export {name} with {type(roi_head).__name__}: the export writes '
                          f'StandardRoIHead and CascadeRoIHead; export its backbone alone with --what backbone')
    heads = roi_head.bbox_head if hasattr(roi_head, 'num_stages') else [roi_head.bbox_head]
    for head in heads:
        if head.custom_cls_channels or type(head.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder':
            raise DeployError(f'cannot export {name}: its box head {type(head).__name__} uses a custom '
                              f'classifier or box coder; the export writes softmax heads with DeltaXYWHBBoxCoder')
    for module in roi_head.modules():
        if type(module).__name__ == 'RoIAlign' and getattr(module, 'pool_mode', 'avg') != 'avg':
            raise DeployError(f"cannot export {name}: RoIAlign pool_mode={module.pool_mode!r}; ONNX RoiAlign "
                              f"is written with pool_mode='avg'")


class DetectorGraph(nn.Module):
    """An mmdet Mask R-CNN or Cascade Mask R-CNN from a batch of RGB images to its detections.

    ``forward(image, image_size)`` returns ``boxes`` (D x 4 xyxy), ``scores`` (D), ``labels`` (D), with a mask
    head ``mask_probs`` (D x M x M, each detection's mask probabilities of its class inside its box), and
    ``image_index`` (D): which image of the batch each detection belongs to.

    Args:
        detector: The trained mmdet ``TwoStageDetector`` (eval mode) with an ``RPNHead`` and a
            ``StandardRoIHead`` or ``CascadeRoIHead``.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_detector(detector)
        self.detector = detector
        preprocessor = detector.data_preprocessor
        self.preprocess = preprocess_from(preprocessor, preprocessor.pad_size_divisor, preprocessor.pad_value)
        roi_head = detector.roi_head
        self.cascade = hasattr(roi_head, 'num_stages')
        self.num_stages = roi_head.num_stages if self.cascade else 1
        self.with_mask = roi_head.with_mask
        rpn_cfg, rcnn_cfg = detector.test_cfg.rpn, detector.test_cfg.rcnn
        self.rpn_nms_pre = int(rpn_cfg.get('nms_pre', -1))
        self.rpn_max_per_img = int(rpn_cfg.max_per_img)
        self.rpn_min_bbox_size = float(rpn_cfg.get('min_bbox_size', -1))
        self.rpn_iou = _nms_iou(rpn_cfg.nms, 'test_cfg.rpn')
        self.score_thr = float(rcnn_cfg.score_thr)
        self.max_per_img = int(rcnn_cfg.max_per_img)
        self.rcnn_iou = _nms_iou(rcnn_cfg.nms, 'test_cfg.rcnn')

    @property
    def output_names(self) -> List[str]:
        return ['boxes', 'scores', 'labels'] + (['mask_probs'] if self.with_mask else []) + ['image_index']

    def _stage(self, modules: Any, stage: int) -> nn.Module:
        return modules[stage] if self.cascade else modules

    def _mask_extractor(self, stage: int) -> nn.Module:
        roi_head = self.detector.roi_head
        if roi_head.share_roi_extractor:
            return self._stage(roi_head.bbox_roi_extractor, stage)
        return self._stage(roi_head.mask_roi_extractor, stage)

    def _proposals(self, cls_scores: Sequence[torch.Tensor], bbox_preds: Sequence[torch.Tensor], image: int,
                   height: Size, width: Size) -> torch.Tensor:
        """RPN proposals of one image (K x 4), as mmdet's ``RPNHead.predict`` (per-level top-k, NMS by level)."""
        from mmdet.structures.bbox import get_box_tensor
        rpn = self.detector.rpn_head
        level_boxes, level_scores, level_ids = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            logits = cls_score[image].permute(1, 2, 0).reshape(-1, rpn.cls_out_channels)
            scores = logits.sigmoid()[:, 0] if rpn.use_sigmoid_cls else logits.softmax(-1)[:, 0]
            deltas = bbox_pred[image].permute(1, 2, 0).reshape(-1, 4)
            anchors = get_box_tensor(rpn.prior_generator.single_level_grid_priors(
                cls_score.shape[-2:], level, dtype=cls_score.dtype, device=cls_score.device))
            if self.rpn_nms_pre > 0:
                scores, order = scores.topk(_topk_min(scores, self.rpn_nms_pre))
                deltas, anchors = deltas[order], anchors[order]
            level_boxes.append(rpn.bbox_coder.decode(anchors, deltas, max_shape=None))
            level_scores.append(scores)
            level_ids.append(torch.full_like(scores, level, dtype=torch.int64))
        boxes = _clip_boxes(torch.cat(level_boxes), height, width)
        scores, ids = torch.cat(level_scores), torch.cat(level_ids)
        if self.rpn_min_bbox_size >= 0:
            valid = ((boxes[:, 2] - boxes[:, 0] > self.rpn_min_bbox_size)
                     & (boxes[:, 3] - boxes[:, 1] > self.rpn_min_bbox_size)).nonzero().squeeze(1)
            boxes, scores, ids = boxes[valid], scores[valid], ids[valid]
        keep = _batched_nms(boxes, scores, ids, self.rpn_iou)[:self.rpn_max_per_img]
        return boxes[keep]

    @staticmethod
    def _roi_features(extractor: nn.Module, feats: Tuple[torch.Tensor, ...], boxes: torch.Tensor,
                      image: int) -> torch.Tensor:
        """``SingleRoIExtractor`` on one image's boxes, with torchvision's ``roi_align`` (-> ``RoiAlign``)."""
        import torchvision
        rois = torch.cat([torch.full_like(boxes[:, :1], image), boxes], dim=1)
        num_levels = len(extractor.featmap_strides)
        levels = extractor.map_roi_levels(rois, num_levels)
        layer = extractor.roi_layers[0]
        out = feats[0].new_zeros((rois.shape[0], extractor.out_channels) + tuple(layer.output_size))
        for level in range(num_levels):
            layer = extractor.roi_layers[level]
            index = (levels == level).nonzero().squeeze(1)
            level_feats = torchvision.ops.roi_align(
                feats[level], rois[index], tuple(layer.output_size), spatial_scale=layer.spatial_scale,
                sampling_ratio=layer.sampling_ratio, aligned=layer.aligned)
            out = out.index_put((index,), level_feats)
        return out

    def _boxes_and_scores(self, feats: Tuple[torch.Tensor, ...], proposals: torch.Tensor, image: int,
                          height: Size, width: Size) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-class boxes (K x C x 4) and softmax scores (K x C+1), as mmdet's ``predict_bbox``."""
        roi_head = self.detector.roi_head
        rois, stage_logits = proposals, []
        for stage in range(self.num_stages):
            head = self._stage(roi_head.bbox_head, stage)
            extractor = self._stage(roi_head.bbox_roi_extractor, stage)
            cls_score, bbox_pred = head(self._roi_features(extractor, feats[:extractor.num_inputs], rois, image))
            stage_logits.append(cls_score)
            if stage < self.num_stages - 1:
                labels = cls_score[:, :-1].argmax(dim=1)
                rois = head.regress_by_class(rois, labels, bbox_pred, dict(img_shape=None))
                rois = _clip_boxes(rois, height, width)
        # Cascade: the mean of the stages' logits, as mmdet's _refine_roi (a single stage: its logits).
        scores = F.softmax(sum(stage_logits) / float(len(stage_logits)), dim=-1)
        boxes = _clip_boxes(head.bbox_coder.decode(rois, bbox_pred, max_shape=None), height, width)
        num_classes = scores.shape[1] - 1
        if head.reg_class_agnostic:
            return boxes[:, None, :].expand(-1, num_classes, 4), scores
        return boxes.reshape(boxes.shape[0], -1, 4), scores

    def _multiclass_nms(self, boxes: torch.Tensor, scores: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mmdet's ``multiclass_nms``: per-class boxes above the score threshold, NMS by class, top N."""
        class_scores = scores[:, :-1]
        labels = (torch.ones_like(class_scores, dtype=torch.int64).cumsum(1) - 1).reshape(-1)
        boxes, class_scores = boxes.reshape(-1, 4), class_scores.reshape(-1)
        valid = (class_scores > self.score_thr).nonzero().squeeze(1)
        boxes, class_scores, labels = boxes[valid], class_scores[valid], labels[valid]
        keep = _batched_nms(boxes, class_scores, labels, self.rcnn_iou)[:self.max_per_img]
        return boxes[keep], class_scores[keep], labels[keep]

    def _mask_probs(self, feats: Tuple[torch.Tensor, ...], boxes: torch.Tensor, labels: torch.Tensor,
                    image: int) -> torch.Tensor:
        """Each detection's mask probabilities of its class (N x M x M); cascade: the mean of the stages'."""
        roi_head = self.detector.roi_head
        stage_probs = []
        for stage in range(self.num_stages):
            extractor = self._mask_extractor(stage)
            logits = self._stage(roi_head.mask_head, stage)(
                self._roi_features(extractor, feats[:extractor.num_inputs], boxes, image))
            stage_probs.append(logits.sigmoid())
        probs = torch.stack(stage_probs).mean(dim=0) if self.cascade else stage_probs[0]
        if probs.shape[1] == 1:  # class-agnostic mask head
            return probs[:, 0]
        return torch.gather(probs, 1, labels[:, None, None, None].expand(-1, 1, *probs.shape[2:]))[:, 0]

    def forward(self, image: torch.Tensor, image_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feats = self.detector.extract_feat(self.preprocess(image, image_size))
        cls_scores, bbox_preds = self.detector.rpn_head(feats)
        per_image: List[Tuple[torch.Tensor, ...]] = []
        for i in range(image.shape[0]):  # the tracer unrolls this: a fixed batch size
            height, width = image_size[i, 0], image_size[i, 1]
            proposals = self._proposals(cls_scores, bbox_preds, i, height, width)
            boxes, scores = self._boxes_and_scores(feats, proposals, i, height, width)
            boxes, scores, labels = self._multiclass_nms(boxes, scores)
            masks = (self._mask_probs(feats, boxes, labels, i),) if self.with_mask else ()
            per_image.append((boxes, scores, labels) + masks + (torch.full_like(labels, i),))
        return tuple(torch.cat(parts) for parts in zip(*per_image))
