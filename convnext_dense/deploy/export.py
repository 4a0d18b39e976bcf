"""ONNX export of ConvNeXt backbones, UperNet segmentors and Mask R-CNN / Cascade Mask R-CNN detectors.

Every file holds standard ONNX operators only, so stock ``onnxruntime`` runs it without a custom-op library:
RoIAlign is ``RoiAlign`` (``coordinate_transformation_mode='half_pixel'`` for mmcv's ``aligned=True``, hence
opset >= 16) and NMS is ``NonMaxSuppression``.

The exporter is pinned: ``torch.onnx.export(..., dynamo=False)``, the TorchScript tracer. The detector's
inference path has outputs whose size depends on the data (proposals after NMS, detections above the score
threshold); the tracer records those as ``NonZero`` / ``NonMaxSuppression`` with dynamic shapes, and
torchvision registers its ``roi_align`` and ``nms`` translations (``RoiAlign`` with ``half_pixel``,
``NonMaxSuppression``) for this exporter. The dynamo exporter needs each data-dependent size declared to
``torch.export`` and a translation of each torchvision op, and adds an ``onnxscript`` dependency; one exporter
for the three kinds of files keeps them alike.

What a file holds (inputs, outputs, metadata):

- ``backbone``: input ``input`` (N x 3 x H x W float32, an image normalized as the config's data
  preprocessor does); outputs ``out{i}`` per out index (the stage's normalized features).
- ``seg``: input ``image`` (H x W x 3 uint8 RGB, after the config's test ``Resize`` if any); outputs
  ``seg_logits`` (1 x C x H x W, resized back to the input size) and ``seg_label`` (1 x H x W int64).
- ``det``: input ``image`` (as for ``seg``); outputs ``boxes`` (N x 4 xyxy, input pixels), ``scores`` (N),
  ``labels`` (N int64) and, with a mask head, ``mask_probs`` (N x M x M: each instance's mask probabilities
  inside its box, which :func:`convnext_dense.deploy.predictor.paste_masks` pastes into the image).

The graphs of ``seg`` and ``det`` files convert the image (channel order, mean/std, padding to the size
divisor) as the config's data preprocessor does. The test pipeline's ``Resize`` is not in the graph (OpenCV's
bilinear resize has no bit-exact ONNX equivalent): its settings are stored in the metadata and
:class:`~convnext_dense.deploy.predictor.OnnxPredictor` applies it with mmcv's own transform. Metadata
(``metadata_props``, JSON values): ``task``, ``classes``, ``palette``, ``preprocess``, ``postprocess``,
``input_shape`` (``null`` when the file takes any size), ``producer``.
"""
import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.errors import DeployError
from convnext_dense.io import atomic_write
from convnext_dense.version import __version__

#: ``RoiAlign`` with ``coordinate_transformation_mode`` (mmcv's ``aligned=True``) exists from opset 16 on.
MIN_OPSET = 16
#: Newest opset the TorchScript exporter writes.
MAX_OPSET = 20
DEFAULT_OPSET = 17
#: The exporter tested here (see the module docstring).
DYNAMO = False
TASKS = ('backbone', 'seg', 'det')


# --------------------------------------------------------------------------------------------- preprocessing
class ImagePreprocess(nn.Module):
    """An H x W x 3 uint8 RGB image to the 1 x 3 x H' x W' float input the model was trained on.

    Args:
        mean: Per-channel mean, in the model's channel order.
        std: Per-channel standard deviation, in the model's channel order.
        to_bgr: The model takes BGR (its data preprocessor did not convert BGR to RGB).
        pad_size_divisor: Pad bottom and right to a multiple of this (1: no padding).
        pad_value: Value of the padded pixels, after normalization (as mmengine pads).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_bgr: bool = False,
                 pad_size_divisor: int = 1, pad_value: float = 0.0) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.to_bgr = to_bgr
        self.pad_size_divisor = int(pad_size_divisor)
        self.pad_value = float(pad_value)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(2, 0, 1).unsqueeze(0).float()
        if self.to_bgr:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        if self.pad_size_divisor > 1:
            divisor = self.pad_size_divisor
            pad_h = (divisor - x.shape[2] % divisor) % divisor
            pad_w = (divisor - x.shape[3] % divisor) % divisor
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x

    def describe(self) -> Dict[str, Any]:
        return dict(mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist(), to_bgr=self.to_bgr,
                    pad_size_divisor=self.pad_size_divisor, pad_value=self.pad_value)


def _preprocess_from(data_preprocessor: nn.Module, pad_size_divisor: int, pad_value: float) -> ImagePreprocess:
    """The :class:`ImagePreprocess` of an mmdet / mmseg data preprocessor (RGB image in)."""
    mean = data_preprocessor.mean.flatten().tolist() if data_preprocessor._enable_normalize else [0.0] * 3
    std = data_preprocessor.std.flatten().tolist() if data_preprocessor._enable_normalize else [1.0] * 3
    # The pipeline loads BGR; channel_conversion flips it to RGB. Fed RGB, the graph flips only when the
    # model was trained on BGR (no conversion).
    to_bgr = not bool(getattr(data_preprocessor, '_channel_conversion',
                              getattr(data_preprocessor, 'channel_conversion', False)))
    return ImagePreprocess(mean, std, to_bgr, pad_size_divisor, pad_value)


class AdaptiveAvgPool2dExport(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matrices, so it exports for any input size.

    The TorchScript exporter writes adaptive pooling as a fixed ``AveragePool`` sized for the traced input,
    and refuses output sizes that do not divide it (UperNet's pool scales 3 and 6). Bin ``i`` of ``n`` over
    a length ``L`` averages ``[floor(i L / n), ceil((i + 1) L / n))``, as PyTorch does.

    Args:
        output_size: The pooled size (int or (h, w)).
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _averaging_matrix(line: torch.Tensor, bins: int) -> torch.Tensor:
        """(bins x L) averaging weights along ``line`` (a 1-D tensor of length L)."""
        index = torch.ones_like(line, dtype=torch.int64).cumsum(0) - 1  # 0..L-1, L read from the data
        length = index[-1:] + 1
        bin_index = torch.arange(bins, dtype=torch.int64, device=line.device)[:, None]
        start = torch.div(bin_index * length, bins, rounding_mode='floor')
        end = torch.div((bin_index + 1) * length + bins - 1, bins, rounding_mode='floor')
        inside = ((index[None, :] >= start) & (index[None, :] < end)).to(line.dtype)
        return inside / inside.sum(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._averaging_matrix(x[0, 0, :, 0], self.output_size[0])
        cols = self._averaging_matrix(x[0, 0, 0, :], self.output_size[1])
        return torch.matmul(torch.matmul(rows, x), cols.t())


def _exportable_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with SyncBN as BN and adaptive pools the exporter can write for any size."""
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(copy.deepcopy(model)).eval()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
                setattr(parent, name, AdaptiveAvgPool2dExport(child.output_size))
    return model


# ------------------------------------------------------------------------------------------------ segmentor
class SegmentorGraph(nn.Module):
    """Whole-image inference of an mmseg ``EncoderDecoder`` from an RGB image to logits and the label map.

    The logits are resized back to the input's size (mmseg's ``predict`` then resizes them to the image's
    size before the test pipeline's ``Resize``: the predictor does that step).

    Args:
        segmentor: The trained mmseg ``EncoderDecoder`` (eval mode).
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor
        preprocessor = segmentor.data_preprocessor
        test_cfg = getattr(preprocessor, 'test_cfg', None) or {}
        if test_cfg.get('size') is not None:
            raise DeployError(f"data_preprocessor.test_cfg.size={test_cfg['size']} pads every test image to one "
                              f'size, which export does not write into the graph; use size_divisor instead')
        self.preprocess = _preprocess_from(preprocessor, test_cfg.get('size_divisor') or 1,
                                           getattr(preprocessor, 'pad_val', 0))
        self.align_corners = segmentor.decode_head.align_corners
        # mmseg's rule: one output channel is a binary task thresholded after a sigmoid.
        self.threshold = (float(segmentor.decode_head.threshold) if segmentor.decode_head.out_channels == 1
                          else None)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(image)
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=self.align_corners)
        logits = logits[:, :, :image.shape[0], :image.shape[1]]  # drop the padding
        if self.threshold is not None:
            return logits, (logits.sigmoid() > self.threshold).long()[:, 0]
        return logits, logits.argmax(dim=1)


# ------------------------------------------------------------------------------------------------- detector
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


class DetectorGraph(nn.Module):
    """Inference of an mmdet Mask R-CNN or Cascade Mask R-CNN from an RGB image to its detections.

    It calls the trained modules (backbone, neck, RPN head, RoI extractors' level mapping, box and mask
    heads, box coders, ``regress_by_class``) and does with export-friendly ops what mmdet/mmcv do with
    Python control flow or mmcv kernels: anchors from the feature maps' sizes, top-k, box clipping, NMS
    (torchvision's ``nms`` -> ``NonMaxSuppression``) and RoIAlign (torchvision's ``roi_align`` ->
    ``RoiAlign``). It follows mmdet 3.3's ``predict`` with ``rescale=False``: boxes are in input pixels.

    Args:
        detector: The trained mmdet ``TwoStageDetector`` (eval mode) with an ``RPNHead`` and a
            ``StandardRoIHead`` or ``CascadeRoIHead``.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_detector(detector)
        self.detector = detector
        preprocessor = detector.data_preprocessor
        self.preprocess = _preprocess_from(preprocessor, preprocessor.pad_size_divisor, preprocessor.pad_value)
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

    def _stage(self, modules: Any, stage: int) -> nn.Module:
        return modules[stage] if self.cascade else modules

    def _mask_extractor(self, stage: int) -> nn.Module:
        roi_head = self.detector.roi_head
        if roi_head.share_roi_extractor:
            return self._stage(roi_head.bbox_roi_extractor, stage)
        return self._stage(roi_head.mask_roi_extractor, stage)

    @staticmethod
    def _anchors(prior_generator: nn.Module, level: int, score_map: torch.Tensor) -> torch.Tensor:
        """mmdet's ``grid_priors`` of one level, with the grid sizes read from ``score_map`` (dynamic)."""
        stride_w, stride_h = prior_generator.strides[level]
        base = prior_generator.base_anchors[level].to(score_map)
        # 0..W-1 and 0..H-1 from the map itself: the traced graph keeps them dynamic.
        xs = (torch.ones_like(score_map[0, 0, :]).cumsum(0) - 1) * stride_w
        ys = (torch.ones_like(score_map[0, :, 0]).cumsum(0) - 1) * stride_h
        xx = xs[None, :].expand(ys.shape[0], xs.shape[0]).reshape(-1)
        yy = ys[:, None].expand(ys.shape[0], xs.shape[0]).reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)

    def _proposals(self, feats: Tuple[torch.Tensor, ...], height: Size, width: Size) -> torch.Tensor:
        """RPN proposals (K x 4), as mmdet's ``RPNHead.predict`` (per-level top-k and NMS by level)."""
        rpn = self.detector.rpn_head
        cls_scores, bbox_preds = rpn(feats)
        level_boxes, level_scores, level_ids = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            logits = cls_score[0].permute(1, 2, 0).reshape(-1, rpn.cls_out_channels)
            scores = logits.sigmoid()[:, 0] if rpn.use_sigmoid_cls else logits.softmax(-1)[:, 0]
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            anchors = self._anchors(rpn.prior_generator, level, cls_score[0])
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
    def _roi_features(extractor: nn.Module, feats: Tuple[torch.Tensor, ...], boxes: torch.Tensor) -> torch.Tensor:
        """``SingleRoIExtractor`` with torchvision's ``roi_align`` (-> ``RoiAlign``) per level."""
        import torchvision
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
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

    def _boxes_and_scores(self, feats: Tuple[torch.Tensor, ...], proposals: torch.Tensor, height: Size,
                          width: Size) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-class boxes (K x C x 4) and softmax scores (K x C+1), as mmdet's ``predict_bbox``."""
        roi_head = self.detector.roi_head
        rois, stage_logits = proposals, []
        for stage in range(self.num_stages):
            head = self._stage(roi_head.bbox_head, stage)
            extractor = self._stage(roi_head.bbox_roi_extractor, stage)
            cls_score, bbox_pred = head(self._roi_features(extractor, feats[:extractor.num_inputs], rois))
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

    def _mask_probs(self, feats: Tuple[torch.Tensor, ...], boxes: torch.Tensor,
                    labels: torch.Tensor) -> torch.Tensor:
        """Each detection's mask probabilities of its class (N x M x M); cascade: the mean of the stages'."""
        roi_head = self.detector.roi_head
        stage_probs = []
        for stage in range(self.num_stages):
            extractor = self._mask_extractor(stage)
            logits = self._stage(roi_head.mask_head, stage)(
                self._roi_features(extractor, feats[:extractor.num_inputs], boxes))
            stage_probs.append(logits.sigmoid())
        probs = torch.stack(stage_probs).mean(dim=0) if self.cascade else stage_probs[0]
        if probs.shape[1] == 1:  # class-agnostic mask head
            return probs[:, 0]
        return torch.gather(probs, 1, labels[:, None, None, None].expand(-1, 1, *probs.shape[2:]))[:, 0]

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        height, width = image.shape[0], image.shape[1]  # 0-d tensors while tracing: dynamic in the graph
        feats = self.detector.extract_feat(self.preprocess(image))
        proposals = self._proposals(feats, height, width)
        boxes, scores = self._boxes_and_scores(feats, proposals, height, width)
        boxes, scores, labels = self._multiclass_nms(boxes, scores)
        if not self.with_mask:
            return boxes, scores, labels
        return boxes, scores, labels, self._mask_probs(feats, boxes, labels)


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


# ---------------------------------------------------------------------------------------------- the export
def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DeployError(f'--opset {opset}: RoiAlign with half_pixel coordinates (mmcv aligned=True) needs opset '
                          f'>= {MIN_OPSET} and the exporter writes up to {MAX_OPSET}; pass --opset '
                          f'{DEFAULT_OPSET}')


def _check_shape(shape: Sequence[int], minimum: int = 32) -> Tuple[int, int]:
    if len(shape) != 2 or min(int(s) for s in shape) < minimum:
        raise DeployError(f'--shape {" ".join(str(s) for s in shape)}: give the example input as H W, each at '
                          f'least {minimum} (ConvNeXt downsamples 32x)')
    return int(shape[0]), int(shape[1])


def _export(module: nn.Module, example: torch.Tensor, input_name: str, output_names: List[str],
            dynamic_axes: Optional[Dict[str, Dict[int, str]]], opset: int) -> bytes:
    """Runs the pinned exporter and returns the serialized model."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in mm* code (they are constant per model)
        # and about its own deprecation: the choice of exporter is deliberate (module docstring).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', category=UserWarning, module='torch.onnx')
        torch.onnx.export(module, (example,), buffer, dynamo=DYNAMO, opset_version=opset,
                          input_names=[input_name], output_names=output_names, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def _write(model_bytes: bytes, out: Union[str, Path], metadata: Dict[str, Any]) -> Path:
    """Adds ``metadata`` (each value as JSON) to the model's ``metadata_props`` and writes it atomically."""
    import onnx
    model = onnx.load_from_string(model_bytes)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    atomic_write(model.SerializeToString(), out)
    return Path(out)


def _producer(opset: int) -> str:
    return f'convnext_dense {__version__}, torch {torch.__version__} TorchScript exporter (dynamo=False), opset {opset}'


def export_backbone(backbone: nn.Module, out: Union[str, Path], shape: Sequence[int] = (224, 224),
                    dynamic: bool = False, opset: int = DEFAULT_OPSET, batch_size: int = 1,
                    preprocess: Optional[Dict[str, Any]] = None) -> Path:
    """Exports a backbone: a normalized N x 3 x H x W image to its multi-scale features.

    Args:
        backbone: The backbone (e.g. :class:`convnext_dense.models.ConvNeXt`).
        out: Path of the ``.onnx`` file.
        shape: Example input height and width (the input size of a static file).
        dynamic: Batch, height and width dynamic instead of fixed to the example's.
        opset: ONNX opset version.
        batch_size: Example batch size.
        preprocess: How to normalize an image for this backbone (stored in the metadata).

    Returns:
        The written path.
    """
    _check_opset(opset)
    height, width = _check_shape(shape)
    module = _exportable_copy(backbone)
    example = torch.randn(batch_size, 3, height, width)
    with torch.no_grad():
        num_outputs = len(module(example))
    names = [f'out{i}' for i in range(num_outputs)]
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'} for name in names})
    model_bytes = _export(module, example, 'input', names, axes, opset)
    return _write(model_bytes, out, dict(task='backbone', preprocess=preprocess, postprocess=None, classes=None,
                                         palette=None, input_shape=None if dynamic else [height, width],
                                         producer=_producer(opset)))


def export_model(model: nn.Module, out: Union[str, Path], shape: Sequence[int], dynamic: bool = False,
                 opset: int = DEFAULT_OPSET, dataset_meta: Optional[Dict[str, Any]] = None,
                 resize: Optional[Dict[str, Any]] = None) -> Path:
    """Exports an mmseg ``EncoderDecoder`` or an mmdet Mask R-CNN / Cascade Mask R-CNN, image to predictions.

    Args:
        model: The trained model (any mode; a copy is exported in eval mode).
        out: Path of the ``.onnx`` file.
        shape: Example image height and width (the input size of a static file).
        dynamic: Height and width dynamic instead of fixed to the example's.
        opset: ONNX opset version (at least :data:`MIN_OPSET`).
        dataset_meta: ``classes`` and ``palette`` (stored in the metadata).
        resize: Settings of the test pipeline's ``Resize`` (stored in the metadata, applied by the predictor).

    Returns:
        The written path.
    """
    _check_opset(opset)
    height, width = _check_shape(shape)
    task = model_task(model)
    module = _exportable_copy(model)
    graph = DetectorGraph(module) if task == 'det' else SegmentorGraph(module)
    if task == 'det':
        names = ['boxes', 'scores', 'labels'] + (['mask_probs'] if graph.with_mask else [])
        postprocess = dict(mask_thr_binary=float(module.test_cfg.rcnn.get('mask_thr_binary', 0.5)))
        axes = {name: {0: 'detections'} for name in names}
    else:
        names = ['seg_logits', 'seg_label']
        postprocess = dict(align_corners=bool(graph.align_corners), threshold=graph.threshold)
        axes = {'seg_logits': {2: 'height', 3: 'width'}, 'seg_label': {1: 'height', 2: 'width'}}
    axes['image'] = {0: 'height', 1: 'width'}
    if not dynamic:
        axes = {name: value for name, value in axes.items() if name not in ('image', 'seg_logits', 'seg_label')}
    # Any image of the shape serves to trace: every data-dependent size is a graph op, not a constant.
    example = torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(0),
                            dtype=torch.uint8)
    model_bytes = _export(graph, example, 'image', names, axes or None, opset)
    meta = dataset_meta or {}
    preprocess = dict(graph.preprocess.describe(), input='image: H x W x 3 uint8 RGB', resize=resize)
    return _write(model_bytes, out, dict(
        task=task, classes=list(meta.get('classes') or []),
        palette=[list(c) for c in (meta.get('palette') or [])], preprocess=preprocess, postprocess=postprocess,
        input_shape=None if dynamic else [height, width], producer=_producer(opset)))


def model_task(model: nn.Module) -> str:
    """``'seg'`` for an mmseg ``EncoderDecoder``, ``'det'`` for an exportable detector, else :class:`DeployError`."""
    name = type(model).__name__
    if name == 'EncoderDecoder':
        return 'seg'
    if hasattr(model, 'roi_head') or hasattr(model, 'bbox_head'):
        check_detector(model)
        return 'det'
    raise DeployError(f'cannot export {name}: the export writes mmseg EncoderDecoder (UperNet) segmentors and '
                      f'Mask R-CNN / Cascade Mask R-CNN detectors; export its backbone with --what backbone')


# -------------------------------------------------------------------------------------- from a config file
def load_model(config: Union[str, Path], checkpoint: Union[str, Path]) -> Tuple[nn.Module, Any, Dict[str, Any]]:
    """Builds the config's model on the CPU (SyncBN as BN) and loads a whole-model checkpoint into it.

    Returns:
        The model in eval mode, the config, and ``dataset_meta`` (the checkpoint's, else the config's).
    """
    from mmengine.config import ConfigDict
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import convnext_dense  # noqa: F401  (registers the backbone)
    from convnext_dense.apis.inference import config_dataset_meta
    from convnext_dense.config import load_config, syncbn_to_bn
    from convnext_dense.errors import CheckpointMismatchError, ConfigError
    if not Path(checkpoint).is_file():
        raise ConfigError(f'{checkpoint}: no such checkpoint file; check the path')
    cfg = load_config(config)  # a path or a shipped config's name
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ConfigError(f"{config}: default_scope is {scope!r}; export reads detector (default_scope='mmdet') and "
                          f"segmentor (default_scope='mmseg') configs")
    init_default_scope(scope)
    # ConfigDict: mm* models read their test_cfg by attribute
    model = MODELS.build(ConfigDict(syncbn_to_bn(cfg.model.to_dict())))
    try:
        loaded = load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True, logger='silent')
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointMismatchError(f'{checkpoint} does not fit {config} ({first}); pass the checkpoint trained '
                                      f'with this config') from error
    meta = (loaded.get('meta') or {}).get('dataset_meta') if isinstance(loaded, dict) else None
    if not meta:
        meta = config_dataset_meta(cfg)
    return model.eval(), cfg, dict(meta)


def pipeline_resize(cfg: Any) -> Optional[Dict[str, Any]]:
    """The arguments of the test pipeline's ``Resize`` (None without one)."""
    pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline') or []
    for transform in pipeline:
        if str(transform.get('type', '')).split('.')[-1] == 'Resize':
            return {key: (list(value) if isinstance(value, tuple) else value)
                    for key, value in transform.items() if key != 'type'}
    return None


def _default_shape(cfg: Any, resize: Optional[Dict[str, Any]], what: str) -> Tuple[int, int]:
    if what == 'backbone':
        return 224, 224
    if resize and resize.get('scale'):
        scale = resize['scale']
        width, height = (scale, scale) if isinstance(scale, int) else scale
        return int(height), int(width)
    size = cfg.model.get('data_preprocessor', {}).get('size')
    return tuple(size) if size else (512, 512)


def export_from_config(config: Union[str, Path], checkpoint: Union[str, Path], out: Union[str, Path],
                       shape: Optional[Sequence[int]] = None, dynamic: bool = False, opset: int = DEFAULT_OPSET,
                       what: str = 'model') -> Path:
    """Exports the model of ``config`` with the weights of ``checkpoint`` (what ``convnext-dense export`` runs).

    Args:
        config: A detector or segmentor config.
        checkpoint: A whole-model checkpoint trained with it.
        out: Path of the ``.onnx`` file.
        shape: Example input H, W (default: the test Resize scale; 224 x 224 for a backbone).
        dynamic: Any input size instead of the example's only.
        opset: ONNX opset version.
        what: ``'model'`` (image to predictions) or ``'backbone'`` (normalized image to features).

    Returns:
        The written path.
    """
    if what not in ('model', 'backbone'):
        raise DeployError(f'--what {what}: choose model or backbone')
    _check_opset(opset)
    model, cfg, dataset_meta = load_model(config, checkpoint)
    resize = pipeline_resize(cfg)
    shape = _check_shape(shape or _default_shape(cfg, resize, what))
    if what == 'backbone':
        preprocess = _preprocess_from(model.data_preprocessor, 1, 0.0).describe()
        return export_backbone(model.backbone, out, shape, dynamic=dynamic, opset=opset,
                               preprocess=dict(preprocess, input='input: N x 3 x H x W float32, normalized'))
    return export_model(model, out, shape, dynamic=dynamic, opset=opset, dataset_meta=dataset_meta, resize=resize)
