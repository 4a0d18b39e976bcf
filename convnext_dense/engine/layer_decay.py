"""Layer-wise / stage-wise learning-rate decay for ConvNeXt backbones (the official rule).

ConvNeXt's detection and segmentation recipes (Liu et al., CVPR 2022) train the backbone with a learning rate
that decays from the head down to the stem. Every parameter gets a layer id and the scale
``decay_rate ** (num_layers + 1 - layer_id)``:

- ``layer_wise``: stem ``0``; stage 0 ``1``; downsample 1 and stage 1 ``2``; downsample 2 ``3``; stage 2
  block ``b`` ``3 + b // 3``; downsample 3 and stage 3 ``num_layers``.
- ``stage_wise``: every downsample layer ``0``; stage ``s`` ``s + 1``.
- Everything else (output norms, neck, heads) ``num_layers + 1``, i.e. scale 1.

1-D parameters (ConvNeXt V2's GRN ``gamma`` / ``beta`` among them), biases, and GRN parameters by name get no
weight decay, as in the V2 authors' optimizer factory; frozen parameters are left out. The param groups (names,
order, ``lr``, ``weight_decay``, ``lr_scale``, ``group_name``, ``param_names``) are the ones mmdet 3.x's and
mmseg 1.x's ``LearningRateDecayOptimizerConstructor`` build, so configs switch over unchanged::

    optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
        constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
        paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))

Unlike those, this one derives ``num_layers`` when it is omitted, refuses a ``num_layers`` that would lift a
backbone parameter to the head's rate or above, and rejects options it does not honour instead of ignoring
them.
"""
from dataclasses import dataclass, field
from numbers import Real
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor

from convnext_dense.arch import NUM_STAGES
from convnext_dense.errors import ConfigError, ConfigTypeError
from convnext_dense.registry import OPTIM_WRAPPER_CONSTRUCTORS

DECAY_TYPES: Tuple[str, ...] = ('layer_wise', 'stage_wise')
HONOURED_KEYS: Tuple[str, ...] = ('decay_rate', 'decay_type', 'num_layers')
# The official rule sends ViT-style tokens to the stem; a ConvNeXt-family backbone rarely has them, but
# keeping the rule keeps the grouping identical to mmdet's and mmseg's on any backbone that does.
STEM_TOKEN_NAMES: Tuple[str, ...] = ('backbone.cls_token', 'backbone.mask_token', 'backbone.pos_embed')
# The official no-decay test compares bare names; kept verbatim for identical results.
NO_DECAY_NAMES: Tuple[str, ...] = ('pos_embed', 'cls_token')
# GRN's affine parameters: 1-D in our backbone, mmpretrain's and timm's, but 1x1x1xC in the official V2 code,
# which the "1-D or bias" rule would miss; the V2 authors exclude them by name.
NO_DECAY_SUFFIXES: Tuple[str, ...] = ('.grn.gamma', '.grn.beta')
NAME = 'LearningRateDecayOptimizerConstructor'


def default_num_layers(depths: Sequence[int]) -> int:
    """The ``num_layers`` of the official recipes for a backbone with these stage depths.

    The official configs use 6 for a third stage of at most 9 blocks (atto ... tiny) and 12 for up to 27
    (small ... xlarge, V2 huge). Deeper third stages, which no official config covers, put stage 3 one layer
    above the last group of stage 2, as 6 and 12 do for 9 and 27 blocks: ``4 + (depths[2] - 1) // 3``.

    Args:
        depths: Blocks per stage.
    """
    third = depths[2]
    if third <= 9:
        return 6
    if third <= 27:
        return 12
    return 4 + (third - 1) // 3


def min_num_layers(depths: Sequence[int], decay_type: str) -> int:
    """The smallest ``num_layers`` that gives no backbone parameter an lr scale above 1 (the head's).

    A parameter with layer id ``i`` gets ``decay_rate ** (num_layers + 1 - i)``, which exceeds 1 (for
    ``decay_rate < 1``) exactly when ``i > num_layers + 1``; so ``num_layers`` must be at least the largest
    backbone layer id minus one. Stage 3 always gets id ``num_layers`` and never limits it.

    Args:
        depths: Blocks per stage.
        decay_type: ``'layer_wise'`` or ``'stage_wise'``.
    """
    if decay_type == 'stage_wise':
        largest_id = len(depths)  # stage s -> s + 1
    else:
        largest_id = max(3, 3 + (depths[2] - 1) // 3)  # downsample 2 -> 3, stage 2 block b -> 3 + b // 3
    return largest_id - 1


def get_layer_id(name: str, decay_type: str, num_layers: int) -> int:
    """The layer id of a parameter of the (unwrapped) model under the official rule.

    Args:
        name: Parameter name as ``model.named_parameters()`` gives it, e.g. ``backbone.stages.2.4.dwconv.weight``.
        decay_type: ``'layer_wise'`` or ``'stage_wise'``.
        num_layers: The ``num_layers`` of ``paramwise_cfg``.

    Raises:
        ValueError: A ``backbone.downsample_layers`` / ``backbone.stages`` parameter whose stage or block is
            not an index (a backbone that only looks like ConvNeXt).
    """
    if name in STEM_TOKEN_NAMES:
        return 0
    parts = name.split('.')
    if parts[0] != 'backbone' or len(parts) < 4 or parts[1] not in ('downsample_layers', 'stages'):
        return num_layers + 1
    is_downsample = parts[1] == 'downsample_layers'
    try:
        stage = int(parts[2])
        block = 0 if is_downsample else int(parts[3])
    except ValueError:
        raise ConfigError(f'{NAME}: cannot read the stage and block of backbone parameter {name!r}; layer decay '
                         f'needs the official ConvNeXt layout backbone.downsample_layers.<stage>.* and '
                         f'backbone.stages.<stage>.<block>.*') from None
    if decay_type == 'stage_wise':
        return 0 if is_downsample else stage + 1
    if stage == NUM_STAGES - 1:
        return num_layers
    if is_downsample:
        return (0, 2, 3)[stage]
    return (1, 2)[stage] if stage < 2 else 3 + block // 3


def find_convnext_backbone(model: nn.Module) -> nn.Module:
    """``model.backbone`` if it is a ConvNeXt-family backbone (this package's, mmpretrain's, ...).

    Args:
        model: The unwrapped detector or segmentor.

    Raises:
        TypeError: No ``backbone``, or one without four-entry ``downsample_layers`` and ``stages`` lists.
    """
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, nn.Module):
        raise ConfigTypeError(f'{NAME}: {type(model).__name__} has no `backbone` module; layer decay needs a model '
                        f'whose `backbone` is a ConvNeXt. Use the DefaultOptimWrapperConstructor for others.')
    for attr in ('downsample_layers', 'stages'):
        layers = getattr(backbone, attr, None)
        if not isinstance(layers, nn.ModuleList) or len(layers) != NUM_STAGES:
            raise ConfigTypeError(f'{NAME}: backbone {type(backbone).__name__} is not ConvNeXt-family: it needs '
                            f'`{attr}`, a ModuleList of {NUM_STAGES}. Use a ConvNeXt backbone '
                            f"(type='convnext_dense.ConvNeXt') or the DefaultOptimWrapperConstructor.")
    return backbone


@dataclass
class _Group:
    """One param group under construction: a layer id and decay / no-decay."""

    layer_id: int
    decay: bool
    lr_scale: float
    lr: float
    weight_decay: Optional[float]
    params: List[nn.Parameter] = field(default_factory=list)
    param_names: List[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"layer_{self.layer_id}_{'decay' if self.decay else 'no_decay'}"

    def to_param_group(self) -> dict:
        group = dict(params=self.params, param_names=self.param_names, lr_scale=self.lr_scale,
                     group_name=self.name, lr=self.lr)
        if self.weight_decay is not None:
            group['weight_decay'] = self.weight_decay
        return group


def format_group_table(groups: Sequence[_Group]) -> str:
    """One line per param group, stem to head: layer id, lr scale, lr, weight decay, tensors, elements."""
    lines = [f"{'group':<18} {'layer':>5} {'lr_scale':>12} {'lr':>12} {'wd':>8} {'tensors':>7} {'params':>12}"]
    for group in sorted(groups, key=lambda g: (g.layer_id, g.decay)):
        wd = 'default' if group.weight_decay is None else f'{group.weight_decay:g}'
        numel = sum(p.numel() for p in group.params)
        lines.append(f'{group.name:<18} {group.layer_id:>5} {group.lr_scale:>12.6g} {group.lr:>12.6g} '
                     f'{wd:>8} {len(group.params):>7} {numel:>12,}')
    return '\n'.join(lines)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with the official ConvNeXt layer-wise / stage-wise lr decay.

    Args:
        optim_wrapper_cfg: The ``optim_wrapper`` config; its ``optimizer`` must set ``lr`` and normally sets
            ``weight_decay`` (without it decayed groups use the optimizer's default).
        paramwise_cfg: ``dict(decay_rate, decay_type='layer_wise', num_layers=None)``. ``decay_rate`` is the
            per-layer factor; ``decay_type`` is ``'layer_wise'`` or ``'stage_wise'``; ``num_layers`` defaults
            to :func:`default_num_layers` of the backbone and must be at least :func:`min_num_layers`.

    Raises:
        ValueError: A missing or invalid ``decay_rate``, ``decay_type`` or ``num_layers``, any other
            ``paramwise_cfg`` key, or an optimizer without ``lr``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(HONOURED_KEYS))
        if unknown:
            raise ConfigError(f'{NAME}: paramwise_cfg keys {unknown} are not supported (only {list(HONOURED_KEYS)} '
                             f'are); remove them, or use the DefaultOptimWrapperConstructor without layer decay.')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = paramwise_cfg.get('decay_rate')
        self.decay_type = paramwise_cfg.get('decay_type', 'layer_wise')
        self.num_layers = paramwise_cfg.get('num_layers')
        if isinstance(self.decay_rate, bool) or not isinstance(self.decay_rate, Real) or self.decay_rate <= 0:
            raise ConfigError(f'{NAME}: paramwise_cfg.decay_rate must be a positive number (the official recipes '
                             f'use 0.7-0.95), got {self.decay_rate!r}.')
        if self.decay_type not in DECAY_TYPES:
            raise ConfigError(f'{NAME}: paramwise_cfg.decay_type must be one of {list(DECAY_TYPES)}, '
                             f'got {self.decay_type!r}.')
        if self.num_layers is not None and (isinstance(self.num_layers, bool)
                                            or not isinstance(self.num_layers, int)):
            raise ConfigError(f'{NAME}: paramwise_cfg.num_layers must be an int or omitted (derived from the '
                             f'backbone), got {self.num_layers!r}.')
        if self.base_lr is None:
            raise ConfigError(f'{NAME}: optim_wrapper.optimizer needs an `lr` to scale; add lr=... to it.')

    def resolve_num_layers(self, backbone: nn.Module) -> int:
        """The configured ``num_layers``, or the derived one; refuses one that is too small.

        Args:
            backbone: The ConvNeXt-family backbone.

        Raises:
            ValueError: ``num_layers`` below :func:`min_num_layers` for this backbone.
        """
        depths = tuple(len(stage) for stage in backbone.stages)
        if self.num_layers is None:
            return default_num_layers(depths)
        minimum = min_num_layers(depths, self.decay_type)
        if self.num_layers < minimum:
            raise ConfigError(
                f'{NAME}: paramwise_cfg.num_layers={self.num_layers} is too small for a backbone with depths '
                f'{depths} in {self.decay_type} mode: its deepest layer id is {minimum + 1}, so parameters '
                f'would get a scale decay_rate**{self.num_layers - minimum}, above the head\'s 1. Use '
                f'num_layers >= {minimum}, or omit it for the official {default_num_layers(depths)}.')
        return self.num_layers

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        """Appends one param group per (layer id, decay / no-decay) to ``params``.

        Args:
            params: The list of param groups, extended in place.
            module: The model, possibly inside a model wrapper (DDP); it must have a ConvNeXt ``backbone``.
            **kwargs: Ignored (the base class recurses with ``prefix``; this one does not recurse).
        """
        if is_model_wrapper(module):
            module = module.module
        num_layers = self.resolve_num_layers(find_convnext_backbone(module))
        groups: Dict[Tuple[int, bool], _Group] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            decay = not (param.ndim == 1 or name.endswith(('.bias',) + NO_DECAY_SUFFIXES)
                         or name in NO_DECAY_NAMES)
            layer_id = get_layer_id(name, self.decay_type, num_layers)
            key = (layer_id, decay)
            if key not in groups:
                scale = self.decay_rate ** (num_layers + 1 - layer_id)
                groups[key] = _Group(layer_id, decay, lr_scale=scale, lr=scale * self.base_lr,
                                     weight_decay=self.base_wd if decay else 0.)
            groups[key].params.append(param)
            groups[key].param_names.append(name)
        if get_dist_info()[0] == 0:
            derived = '' if self.num_layers is not None else ' (derived from the backbone)'
            MMLogger.get_current_instance().info(
                f'{NAME}: {self.decay_type}, decay_rate={self.decay_rate}, num_layers={num_layers}{derived}, '
                f'base lr={self.base_lr}, weight_decay={self.base_wd}\n'
                f'{format_group_table(list(groups.values()))}')
        params.extend(group.to_param_group() for group in groups.values())
