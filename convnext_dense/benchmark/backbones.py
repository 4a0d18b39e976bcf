"""The three backbones the benchmark compares, built with the same weights: ours, timm's and mmpretrain's."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from convnext_dense.errors import ConfigError

IMPLS = ('ours', 'timm', 'mmpretrain')


def arch_spec(arch: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """``'tiny'`` or ``'depths:2,2,2,2;channels:8,16,32,64'`` (tiny test archs) -> (depths, channels)."""
    from convnext_dense.arch import resolve_arch
    if ':' in arch:
        parts = dict(p.split(':') for p in arch.split(';'))
        return resolve_arch({k: tuple(int(v) for v in parts[k].split(',')) for k in ('depths', 'channels')})
    return resolve_arch(arch)


class TimmDense(nn.Module):
    """timm's ConvNeXt giving our outputs: the four stage outputs, each through a timm ``LayerNorm2d``.

    Args:
        depths: Blocks per stage.
        channels: Channels per stage.
        layer_scale_init_value: Initial layer scale.
    """

    def __init__(self, depths: Sequence[int], channels: Sequence[int], layer_scale_init_value: float) -> None:
        super().__init__()
        from timm.layers import LayerNorm2d as TimmLayerNorm2d
        from timm.models.convnext import ConvNeXt as TimmConvNeXt
        self.body = TimmConvNeXt(depths=tuple(depths), dims=tuple(channels), num_classes=0,
                                 ls_init_value=layer_scale_init_value)
        self.body.prune_intermediate_layers(len(depths), prune_norm=True, prune_head=True)
        # Some timm versions keep the head's norm after pruning; intermediates never use the head.
        self.body.head = nn.Identity()
        self.norms = nn.ModuleList(TimmLayerNorm2d(c) for c in channels)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feats = self.body.forward_intermediates(x, indices=len(self.norms), intermediates_only=True)
        return tuple(norm(f) for norm, f in zip(self.norms, feats))


def build_backbones(arch: str, impls: Sequence[str], layer_scale_init_value: float = 1.0,
                    with_cp: bool = False, seed: int = 0, cpu_kernels: Optional[str] = None
                    ) -> Tuple[Dict[str, nn.Module], Dict[str, str]]:
    """Builds the requested backbones with our randomly initialised weights copied into each.

    Args:
        arch: An arch name or a ``'depths:...;channels:...'`` string.
        impls: Subset of ``('ours', 'timm', 'mmpretrain')``.
        layer_scale_init_value: Layer scale of all three (1.0 makes every block matter numerically).
        with_cp: Activation checkpointing in ours and mmpretrain's (timm's has none per block).
        seed: Seed of the random weights.
        cpu_kernels: Our CPU kernels, as ``ConvNeXt(cpu_kernels=...)`` takes them in text (None: the default).

    Returns:
        The built modules and, per implementation that could not be built, the reason.
    """
    from convnext_dense.checkpoint import to_mmpretrain, to_timm
    from convnext_dense.models.convnext import ConvNeXt
    depths, channels = arch_spec(arch)
    torch.manual_seed(seed)
    ours = ConvNeXt(dict(depths=depths, channels=channels), layer_scale_init_value=layer_scale_init_value,
                    with_cp=with_cp, cpu_kernels=cpu_kernels)
    ours.init_weights()
    state = ours.state_dict()
    models, missing = {}, {}
    for impl in impls:
        try:
            if impl == 'ours':
                models[impl] = ours
            elif impl == 'timm':
                model = TimmDense(depths, channels, layer_scale_init_value)
                # timm's layout has no output norms: ours go to the wrapper's norms.
                weights = {f'body.{k}': v for k, v in to_timm(state).items()}
                weights.update({f'norms.{k[4:]}': v for k, v in state.items() if k.startswith('norm')})
                model.load_state_dict(weights, strict=True)
                models[impl] = model
            elif impl == 'mmpretrain':
                from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
                model = MMPretrainConvNeXt(arch=dict(depths=list(depths), channels=list(channels)),
                                           out_indices=(0, 1, 2, 3), gap_before_final_norm=False,
                                           layer_scale_init_value=layer_scale_init_value, with_cp=with_cp)
                model.load_state_dict(to_mmpretrain(state), strict=True)
                models[impl] = model
            else:
                raise ConfigError(f'unknown implementation {impl!r}; choose from {IMPLS}')
        except ImportError as err:
            missing[impl] = f'not importable: {err}'
    return models, missing


def max_output_difference(models: Dict[str, nn.Module], size: Tuple[int, int] = (64, 64)) -> Dict[str, float]:
    """Largest absolute difference of each model's fp32 outputs from ours (proof of equal weights)."""
    if 'ours' not in models:
        return {}
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    for model in models.values():
        model.eval()  # not chained: mmpretrain's ConvNeXt.train() returns None
    with torch.no_grad():
        ref = [o.float() for o in models['ours'](x)]
        return {name: max((a - b).abs().max().item() for a, b in zip(ref, model(x)))
                for name, model in models.items() if name != 'ours'}
