"""Params and FLOPs of an mmseg segmentor config, counted the way the ConvNeXt paper counts them.

Convention (matches the paper's ADE20K table within 1% for all six UperNet models):

- FLOPs are multiply-adds (fvcore / ``mmengine.analysis.FlopAnalyzer``) of one whole-image forward at
  2048x512 (W x H; 2560x640 for the 640-crop configs), batch 1, through the backbone and the decode head
  only. That is mmseg 0.x's ``forward_dummy`` (``encode_decode``), which the paper's ``get_flops`` ran: the
  auxiliary head is a training-only branch and is not counted, nor is the final bilinear resize of the
  logits to the input size. Here the same path is mmseg 1.x's ``mode='tensor'`` forward.
- Params are counted over the whole model, auxiliary head included (UperNet-T: 59.4M without the FCN head,
  60.2M with it; the paper says 60M).

SyncBN is swapped for BN and pretrained weights are not loaded: neither changes a count, and both need
resources (a process group, the network) that counting should not. Counting XL at 2560x640 runs a 3.3
TFLOP forward on the CPU, so expect a minute or more there.
"""
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from convnext_dense import zoo
from convnext_dense.config import syncbn_to_bn

# config file stem -> (params, FLOPs) of the paper's table (configs/seg/metafile.yml).
PAPER_NUMBERS: Dict[str, Tuple[float, float]] = zoo.paper_complexity('seg')

# The paper's whole-image test scale (H, W) per training crop side.
PAPER_SHAPES: Dict[int, Tuple[int, int]] = {512: (512, 2048), 640: (640, 2560)}


def default_shape(cfg: Config) -> Tuple[int, int]:
    """Returns the paper's (H, W) for the config's crop size: 512x2048, or 640x2560 for 640 crops.

    Args:
        cfg: A segmentation config; its ``crop_size`` (or the data preprocessor's ``size``) picks the shape.
    """
    crop = cfg.get('crop_size') or cfg.model.get('data_preprocessor', {}).get('size') or (512, 512)
    return PAPER_SHAPES.get(int(crop[0]), (crop[0], crop[0] * 4))


def build_segmentor(cfg: Config) -> torch.nn.Module:
    """Builds ``cfg.model`` for counting: BN for SyncBN, no pretrained weights, eval mode, CPU.

    Args:
        cfg: An mmseg config (``default_scope='mmseg'``) whose ``custom_imports`` have been applied.
    """
    from mmseg.registry import MODELS  # mmseg: an optional dependency (seg extra)

    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = ConfigDict(syncbn_to_bn(cfg.model.to_dict()))
    model_cfg.get('backbone', {}).pop('init_cfg', None)
    model_cfg.pop('pretrained', None)
    return MODELS.build(model_cfg).eval()


def _import_custom_modules(cfg: Config) -> None:
    custom = cfg.get('custom_imports')
    if custom:
        import_modules_from_strings(**custom)


def segmentor_complexity(cfg: Config, shape: Optional[Tuple[int, int]] = None) -> dict:
    """Counts params and FLOPs of a segmentor config in the paper's convention (see the module docstring).

    Args:
        cfg: The loaded mmseg config.
        shape: Input (H, W); None means the paper's size for this config (512x2048 or 640x2560).

    Returns:
        ``dict(params, flops, backbone_params, backbone_flops, shape=(H, W), paper_params, paper_flops)``
        as plain numbers; the ``paper_*`` entries are None when the config file is not one of the paper's.
    """
    _import_custom_modules(cfg)
    height, width = shape if shape else default_shape(cfg)
    model = build_segmentor(cfg)
    inputs = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        # EncoderDecoder.forward(inputs, data_samples=None, mode='tensor'): backbone + decode head only.
        analyzer = FlopAnalyzer(model, (inputs,))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        backbone_flops = analyzer.total('backbone')
    params = parameter_count(model)
    paper_params, paper_flops = PAPER_NUMBERS.get(Path(cfg.filename or '').stem, (None, None))
    return dict(params=int(params['']), flops=int(flops), backbone_params=int(params['backbone']),
                backbone_flops=int(backbone_flops), shape=(int(height), int(width)),
                paper_params=paper_params, paper_flops=paper_flops)
