"""Params and FLOPs of a Mask R-CNN / Cascade Mask R-CNN config in the ConvNeXt paper's convention.

The paper's detection FLOPs are those of mmdet 2.x's ``forward_dummy`` at 1280x800 (W x H):

- backbone and FPN on the whole image, the RPN head on every FPN level;
- 1000 proposals through every box branch: RoIAlign, the box head (4conv1fc or 2fc) and its fc outputs;
- the first 100 of them through every mask branch: RoIAlign and the FCN mask head;
- no post-processing (NMS, box decoding, mask pasting).

mmdet 3.x's ``tensor`` mode instead runs the mask heads on all 1000 boxes at every cascade stage, which
gives about 2.17T for Cascade-T instead of the paper's 741G. :class:`PaperDummyForward` runs exactly the
2.x sequence with the 3.x modules. Counting follows fvcore / ``mmengine.analysis``: a multiply-add is one
FLOP; convolutions, linear layers, normalization layers and upsampling are counted; activations,
additions and mmcv's RoIAlign (a custom op, whose cost is a few bilinear samples per output) are not.
Params are all parameters of the detector (SyncBN, which cannot run on CPU, is built as BN: same count).
"""
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config, ConfigDict

from convnext_dense import zoo
from convnext_dense.config import syncbn_to_bn

#: Paper input size, (H, W): 1280x800 images (W x H).
PAPER_SHAPE = (800, 1280)
NUM_BOX_PROPOSALS = 1000
NUM_MASK_PROPOSALS = 100

#: config file stem -> (params, FLOPs) of the paper's table (configs/det/metafile.yml).
PAPER_VALUES: Dict[str, Tuple[float, float]] = zoo.paper_complexity('det')


def make_proposals(num: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Deterministic boxes ``(num, 5)`` in RoI format (batch index, x1, y1, x2, y2) inside the image."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.rand(num, 2, generator=generator) * torch.tensor([width, height])
    sizes = 16 + torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) / 2
    corners = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)
    corners = torch.minimum(corners.clamp(min=0), torch.tensor([width, height, width, height]) - 1.0)
    return torch.cat([torch.zeros(num, 1), corners], dim=1)


class PaperDummyForward(nn.Module):
    """mmdet 2.x's ``forward_dummy`` of a two-stage detector, with mmdet 3.x modules.

    Args:
        detector: A built ``MaskRCNN`` / ``CascadeRCNN`` (a ``TwoStageDetector`` with an RoI head).
        image_shape: ``(H, W)`` of the input, to place the proposals inside the image.
        num_box_proposals: Proposals through every box branch.
        num_mask_proposals: The first proposals through every mask branch.
    """

    def __init__(self, detector: nn.Module, image_shape: Tuple[int, int],
                 num_box_proposals: int = NUM_BOX_PROPOSALS, num_mask_proposals: int = NUM_MASK_PROPOSALS) -> None:
        super().__init__()
        self.detector = detector
        self.register_buffer('rois', make_proposals(num_box_proposals, *image_shape), persistent=False)
        self.num_mask_proposals = num_mask_proposals

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        detector = self.detector
        feats = detector.extract_feat(image)
        cls_scores, bbox_preds = detector.rpn_head(feats)
        outs = [*cls_scores, *bbox_preds]
        roi_head = detector.roi_head
        # Cascade heads take the stage index first; the standard head has one stage and no index.
        stages = [(i,) for i in range(roi_head.num_stages)] if hasattr(roi_head, 'num_stages') else [()]
        for stage in stages:
            results = roi_head._bbox_forward(*stage, feats, self.rois)
            outs += [results['cls_score'], results['bbox_pred']]
        if roi_head.with_mask:
            mask_rois = self.rois[:self.num_mask_proposals]
            for stage in stages:
                outs.append(roi_head._mask_forward(*stage, feats, mask_rois)['mask_preds'])
        return tuple(outs)


def build_detector(cfg: Config) -> nn.Module:
    """Builds the config's detector in eval mode, without loading pretrained weights."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model_cfg = ConfigDict(syncbn_to_bn(cfg.model.to_dict()))  # mmdet reads train_cfg.rpn as attributes
    return MODELS.build(model_cfg).eval()


def count_flops(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> FlopAnalyzer:
    """fvcore-convention FLOP counter over one traced forward, with warnings off."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


def detector_complexity(cfg: Config, shape: Optional[Tuple[int, int]] = None) -> dict:
    """Params and FLOPs of the whole detector and its backbone in the paper's convention.

    Args:
        cfg: A detection config (Mask R-CNN or Cascade Mask R-CNN style two-stage detector).
        shape: Input ``(H, W)``; the paper's 800x1280 when None.

    Returns:
        ``dict(params, flops, backbone_params, backbone_flops, shape, paper_params, paper_flops)`` as plain
        numbers; ``paper_*`` are None for configs outside the paper's table, ``paper_flops`` also for
        another input shape than the paper's.
    """
    height, width = shape or PAPER_SHAPE
    detector = build_detector(cfg)
    if not hasattr(detector, 'roi_head') or not hasattr(detector, 'rpn_head'):
        raise ValueError(f'{cfg.filename}: det_flops counts two-stage detectors with rpn_head and roi_head '
                         f'(Mask R-CNN, Cascade Mask R-CNN), got model type {cfg.model.get("type")!r}.')
    wrapper = PaperDummyForward(detector, (height, width)).eval()
    with torch.no_grad():
        analyzer = count_flops(wrapper, (torch.zeros(1, 3, height, width),))
        flops = analyzer.total()
        backbone_flops = analyzer.by_module()['detector.backbone']
    paper = PAPER_VALUES.get(Path(cfg.filename or '').stem, (None, None))
    return dict(
        params=int(sum(p.numel() for p in detector.parameters())),
        flops=int(flops),
        backbone_params=int(sum(p.numel() for p in detector.backbone.parameters())),
        backbone_flops=int(backbone_flops),
        shape=(height, width),
        paper_params=paper[0],
        paper_flops=paper[1] if (height, width) == PAPER_SHAPE else None)
