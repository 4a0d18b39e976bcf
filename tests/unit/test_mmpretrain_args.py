"""mmpretrain ConvNeXt's constructor arguments: accepted where they describe our computation, else refused."""
import pytest
import torch

from convnext_dense.errors import ConfigError, ConvNeXtDenseError
from convnext_dense.models import ConvNeXt
from convnext_dense.models.mmpretrain_args import check_mmpretrain_args

SMALL_ARCH = dict(depths=[1, 1, 2, 1], channels=[8, 16, 32, 64])

# Every argument mmpretrain's ConvNeXt takes, with the values mmdet's and mmseg's ConvNeXt configs and
# mmpretrain's own defaults give them (gap_before_final_norm as in the dense configs).
MMPRETRAIN_ARGS = dict(arch=SMALL_ARCH, in_channels=3, stem_patch_size=4, norm_cfg=dict(type='LN2d', eps=1e-6),
                       act_cfg=dict(type='GELU'), linear_pw_conv=True, use_grn=False, drop_path_rate=0.1,
                       layer_scale_init_value=1.0, out_indices=[0, 1, 2, 3], frozen_stages=0,
                       gap_before_final_norm=False, with_cp=False,
                       init_cfg=[dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
                                 dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.)])


def test_every_mmpretrain_argument_is_accepted_with_the_values_we_compute():
    model = ConvNeXt(**MMPRETRAIN_ARGS)
    model.init_weights()
    assert model.out_indices == (0, 1, 2, 3) and model.frozen_stages == 0
    outputs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == SMALL_ARCH['channels']


def test_mmpretrain_default_out_indices_minus_one_is_the_last_stage():
    model = ConvNeXt(SMALL_ARCH, out_indices=-1)
    assert model.out_indices == (3,) and [o.shape[1] for o in model(torch.randn(1, 3, 32, 32))] == [64]


@pytest.mark.parametrize('kwargs', [dict(norm_cfg=dict(type='mmpretrain.LN2d', eps=1e-6, requires_grad=True)),
                                    dict(act_cfg=dict(type='mmpretrain.GELU', approximate='none')),
                                    dict(norm_cfg=None, act_cfg=None)])
def test_equivalent_spellings_are_accepted(kwargs):
    check_mmpretrain_args(**kwargs)


@pytest.mark.parametrize('kwargs,fragments', [
    (dict(gap_before_final_norm=True), ('gap_before_final_norm=True is not supported',
                                        'use gap_before_final_norm=False', 'feature maps')),
    (dict(linear_pw_conv=False), ('linear_pw_conv=False', 'use linear_pw_conv=True', 'nn.Linear')),
    (dict(stem_patch_size=2), ('stem_patch_size=2', 'use stem_patch_size=4', 'strides 4, 8, 16, 32')),
    (dict(norm_cfg=dict(type='BN')), ("norm_cfg={'type': 'BN'}", "use norm_cfg={'type': 'LN2d', 'eps': 1e-06}",
                                      'LayerNorm over channels')),
    (dict(norm_cfg=dict(type='LN2d')), ("norm_cfg={'type': 'LN2d'}", 'eps 1e-6')),
    (dict(norm_cfg=dict(type='LN2d', eps=1e-6, requires_grad=False)), ('requires_grad',)),
    (dict(act_cfg=dict(type='ReLU')), ("act_cfg={'type': 'ReLU'}", "use act_cfg={'type': 'GELU'}", 'GELU')),
    (dict(act_cfg=dict(type='GELU', approximate='tanh')), ("'approximate': 'tanh'", 'exact (erf) GELU')),
])
def test_values_we_do_not_compute_are_refused_in_one_line(kwargs, fragments):
    with pytest.raises(ConfigError) as info:
        ConvNeXt(SMALL_ARCH, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, (ConvNeXtDenseError, ValueError))
    assert '\n' not in message and message.startswith('ConvNeXt: ')
    for fragment in fragments:
        assert fragment in message
