"""mmpretrain ConvNeXt's constructor arguments, checked against what this backbone computes.

mmdet's and mmseg's ConvNeXt configs build ``mmpretrain.ConvNeXt`` with arguments this backbone has no use
for (``gap_before_final_norm=False``, ``linear_pw_conv=True``, ...). Accepting them where their value
describes our computation lets such a config switch by its ``type`` alone; any other value would compute
something else, so it is refused with one line saying what is supported and why.
"""
from typing import Any, Optional

from convnext_dense.arch import STEM_STRIDE
from convnext_dense.errors import ConfigError

#: The only norm and activation the blocks, downsampling layers and output norms compute.
SUPPORTED_NORM_CFG = dict(type='LN2d', eps=1e-6)
SUPPORTED_ACT_CFG = dict(type='GELU')


def _unscoped(type_name: Any) -> Any:
    """``'mmpretrain.LN2d'`` -> ``'LN2d'``: a registry scope does not change the layer."""
    return type_name.rpartition('.')[2] if isinstance(type_name, str) else type_name


def _refuse(argument: str, value: Any, supported: str, why: str) -> ConfigError:
    return ConfigError(f'ConvNeXt: {argument}={value!r} is not supported; use {supported} (or leave it out): '
                       f'{why}.')


def check_mmpretrain_args(stem_patch_size: int = STEM_STRIDE, norm_cfg: Optional[dict] = None,
                          act_cfg: Optional[dict] = None, linear_pw_conv: bool = True,
                          gap_before_final_norm: bool = False) -> None:
    """Accepts the values of mmpretrain-only arguments that describe this backbone, refuses the others.

    Args:
        stem_patch_size: Patch size of the stem; the stem here is the paper's 4x4, stride 4.
        norm_cfg: Norm of stem, downsampling, blocks and outputs; only ``dict(type='LN2d', eps=1e-6)``
            (``requires_grad=True`` may be given). mmpretrain defaults a missing ``eps`` to 1e-5.
        act_cfg: Activation between the pointwise layers; only ``dict(type='GELU')``.
        linear_pw_conv: Pointwise layers as ``nn.Linear`` (True, the official layout) or 1x1 convs.
        gap_before_final_norm: Pool each output to a vector before its norm (a classifier's output).

    Raises:
        ConfigError: A value this backbone does not compute.
    """
    if gap_before_final_norm:
        raise _refuse('gap_before_final_norm', gap_before_final_norm, 'gap_before_final_norm=False',
                      'True pools each output to a vector for a classifier head; a dense-prediction backbone '
                      'returns the normalized feature maps (mmdet and mmseg configs pass False)')
    if not linear_pw_conv:
        raise _refuse('linear_pw_conv', linear_pw_conv, 'linear_pw_conv=True',
                      'the pointwise layers are nn.Linear as in the official code (1x1-conv weights of shape '
                      '(O, I, 1, 1) in a checkpoint are reshaped when it loads)')
    if stem_patch_size != STEM_STRIDE:
        raise _refuse('stem_patch_size', stem_patch_size, f'stem_patch_size={STEM_STRIDE}',
                      'the stem is the paper\'s 4x4 stride-4 patchify, so outputs have strides 4, 8, 16, 32')
    if norm_cfg is not None:
        given = {k: v for k, v in dict(norm_cfg).items() if not (k == 'requires_grad' and v is True)}
        given.setdefault('eps', 1e-5)  # mmpretrain's build_norm_layer default
        if _unscoped(given.get('type')) != 'LN2d' or set(given) != {'type', 'eps'} or given['eps'] != 1e-6:
            raise _refuse('norm_cfg', dict(norm_cfg), f'norm_cfg={SUPPORTED_NORM_CFG!r}',
                          'every norm is a LayerNorm over channels with eps 1e-6, as in the paper')
    if act_cfg is not None:
        given = {k: v for k, v in dict(act_cfg).items() if not (k == 'approximate' and v == 'none')}
        if set(given) != {'type'} or _unscoped(given['type']) != 'GELU':
            raise _refuse('act_cfg', dict(act_cfg), f'act_cfg={SUPPORTED_ACT_CFG!r}',
                          'the blocks compute the exact (erf) GELU, as in the paper')
