"""The layer-decay constructor: the official oracle, parity with mmdet's and mmseg's, and its refusals."""
import importlib
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn as nn
from conftest import LogRecords
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from convnext_dense.engine.layer_decay import (LearningRateDecayOptimizerConstructor, default_num_layers,
                                               min_num_layers)
from convnext_dense.models import ConvNeXt

BASE_LR = 2e-4
BASE_WD = 0.05
OPTIM_CFG = dict(optimizer=dict(type='AdamW', lr=BASE_LR, betas=(0.9, 0.999), weight_decay=BASE_WD))
TINY_DEPTHS = (3, 3, 9, 3)
SMALL_DEPTHS = (3, 3, 27, 3)


class Detector(nn.Module):
    """A stand-in detector: a ConvNeXt backbone, a neck and a head with 1-D, bias and token parameters."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone.channels[-1]
        self.neck = nn.Sequential(nn.Conv2d(width, 8, 1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 3)
        # Bare name the official no-decay test lists: 3-D, so only the name keeps it out of decay.
        self.pos_embed = nn.Parameter(torch.zeros(1, 2, 8))


def narrow_convnext(depths: Tuple[int, ...], **kwargs) -> ConvNeXt:
    """Official depths at width 8: the same parameter names as the real arch, built in milliseconds."""
    return ConvNeXt(dict(depths=depths, channels=(8, 8, 8, 8)), **kwargs)


def constructor(**paramwise) -> LearningRateDecayOptimizerConstructor:
    return LearningRateDecayOptimizerConstructor(dict(OPTIM_CFG), paramwise)


def build_groups(ctor, model: nn.Module) -> List[dict]:
    params: List[dict] = []
    ctor.add_params(params, model)
    return params


def scale_by_name(groups: List[dict]) -> Dict[str, float]:
    return {name: group['lr_scale'] for group in groups for name in group['param_names']}


def comparable(groups: List[dict]) -> List[dict]:
    """Groups with tensors replaced by their identities; every other key compared as is."""
    return [{**group, 'params': [id(p) for p in group['params']]} for group in groups]


@pytest.fixture(scope='module')
def real_models() -> Dict[str, Detector]:
    """Real tiny and small widths, built once: parity must hold on the shapes users train."""
    return {arch: Detector(ConvNeXt(arch)) for arch in ('tiny', 'small')}


# The official oracle (decay_rate 2, num_layers 6): stem, stage 0, stage 1, stage 2 block 0, stage 3, head.
ORACLE_NAMES = ('backbone.downsample_layers.0.0.weight', 'backbone.stages.0.0.dwconv.weight',
                'backbone.stages.1.2.pwconv1.weight', 'backbone.stages.2.0.pwconv2.weight',
                'backbone.stages.3.2.gamma', 'head.weight')


@pytest.mark.parametrize('decay_type, expected', [
    ('stage_wise', (128, 64, 32, 16, 8, 1)),
    ('layer_wise', (128, 64, 32, 16, 2, 1)),
])
def test_official_oracle(decay_type, expected):
    groups = build_groups(constructor(decay_rate=2, decay_type=decay_type, num_layers=6),
                          Detector(narrow_convnext(TINY_DEPTHS)))
    scales = scale_by_name(groups)
    assert tuple(scales[name] for name in ORACLE_NAMES) == expected
    for group in groups:
        assert group['lr'] == group['lr_scale'] * BASE_LR


def test_layer_wise_full_map():
    scales = scale_by_name(build_groups(constructor(decay_rate=2, decay_type='layer_wise', num_layers=6),
                                        Detector(narrow_convnext(TINY_DEPTHS))))
    downsample = [scales[f'backbone.downsample_layers.{i}.1.weight'] for i in range(4)]
    assert downsample == [128, 32, 16, 2]  # stem conv is .0, its LayerNorm .1
    assert [scales[f'backbone.stages.2.{b}.dwconv.weight'] for b in range(9)] == [16] * 3 + [8] * 3 + [4] * 3
    assert scales['backbone.norm3.weight'] == scales['neck.1.weight'] == scales['pos_embed'] == 1


def test_weight_decay_only_on_multi_dim_non_bias():
    groups = build_groups(constructor(decay_rate=0.7, num_layers=6), Detector(narrow_convnext(TINY_DEPTHS)))
    wd = {name: group['weight_decay'] for group in groups for name in group['param_names']}
    no_decay = {'backbone.stages.0.0.gamma', 'backbone.stages.0.0.norm.weight', 'backbone.norm0.bias',
                'backbone.downsample_layers.0.0.bias', 'neck.0.bias', 'neck.1.weight', 'head.bias', 'pos_embed'}
    decay = {'backbone.downsample_layers.0.0.weight', 'backbone.stages.2.8.dwconv.weight',
             'backbone.stages.3.0.pwconv1.weight', 'neck.0.weight', 'head.weight'}
    assert {wd[name] for name in no_decay} == {0.0}
    assert {wd[name] for name in decay} == {BASE_WD}
    assert all(g['group_name'].endswith('_no_decay') == (g['weight_decay'] == 0) for g in groups)


@pytest.mark.parametrize('reference', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('decay_type, decay_rate', [('layer_wise', 0.7), ('stage_wise', 0.9)])
@pytest.mark.parametrize('arch, num_layers', [('tiny', 6), ('small', 12)])
def test_parity_with_mmdet_and_mmseg(real_models, reference, decay_type, decay_rate, arch, num_layers):
    optimizers = importlib.import_module(f'{reference}.engine.optimizers')
    model = real_models[arch]
    paramwise = dict(decay_rate=decay_rate, decay_type=decay_type, num_layers=num_layers)
    official = optimizers.LearningRateDecayOptimizerConstructor(dict(OPTIM_CFG), dict(paramwise))
    ours = build_groups(constructor(**paramwise), model)
    assert comparable(ours) == comparable(build_groups(official, model))
    assert comparable(build_groups(constructor(decay_rate=decay_rate, decay_type=decay_type), model)) == \
        comparable(ours), 'the derived num_layers must be the official one'


def test_parity_with_frozen_stages():
    optimizers = importlib.import_module('mmdet.engine.optimizers')
    model = Detector(narrow_convnext(TINY_DEPTHS, frozen_stages=2))
    paramwise = dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6)
    ours = build_groups(constructor(**paramwise), model)
    official = optimizers.LearningRateDecayOptimizerConstructor(dict(OPTIM_CFG), dict(paramwise))
    assert comparable(ours) == comparable(build_groups(official, model))


def test_frozen_parameters_are_skipped():
    model = Detector(narrow_convnext(TINY_DEPTHS, frozen_stages=2))
    names = [name for group in build_groups(constructor(decay_rate=0.7), model)
             for name in group['param_names']]
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert names and sorted(names) == sorted(trainable)
    frozen = ('backbone.downsample_layers.0.', 'backbone.downsample_layers.1.', 'backbone.stages.0.',
              'backbone.stages.1.')
    assert not [name for name in names if name.startswith(frozen)]
    assert any(name.startswith('backbone.stages.2.') for name in names)


@pytest.mark.parametrize('third_depth, expected', [(6, 6), (8, 6), (9, 6), (10, 12), (27, 12), (28, 13),
                                                   (33, 14)])
def test_default_num_layers(third_depth, expected):
    assert default_num_layers((3, 3, third_depth, 3)) == expected


def test_default_num_layers_is_always_accepted():
    for third_depth in range(1, 61):
        depths = (3, 3, third_depth, 3)
        for decay_type in ('layer_wise', 'stage_wise'):
            assert default_num_layers(depths) >= min_num_layers(depths, decay_type)


def test_derived_num_layers_matches_explicit_and_is_logged():
    model = Detector(narrow_convnext(SMALL_DEPTHS))
    derived = build_groups(constructor(decay_rate=0.8), model)
    assert comparable(derived) == comparable(build_groups(constructor(decay_rate=0.8, num_layers=12), model))
    assert scale_by_name(derived)['backbone.stages.3.0.gamma'] == 0.8


@pytest.mark.parametrize('depths, decay_type, too_small, fits', [
    (TINY_DEPTHS, 'layer_wise', 3, 4),
    (SMALL_DEPTHS, 'layer_wise', 6, 10),
    (TINY_DEPTHS, 'stage_wise', 2, 3),
])
def test_refuses_num_layers_that_lifts_backbone_above_head(depths, decay_type, too_small, fits):
    model = Detector(narrow_convnext(depths))
    with pytest.raises(ValueError, match=f'num_layers >= {fits}'):
        build_groups(constructor(decay_rate=0.7, decay_type=decay_type, num_layers=too_small), model)
    groups = build_groups(constructor(decay_rate=0.7, decay_type=decay_type, num_layers=fits), model)
    backbone_scales = [s for name, s in scale_by_name(groups).items() if name.startswith('backbone.')]
    assert max(backbone_scales) <= 1


@pytest.mark.parametrize('paramwise, match', [
    (dict(decay_rate=0.7, decay_type='layer_wise_vit'), 'decay_type'),
    (dict(decay_rate=0.7, custom_keys={'head': dict(lr_mult=10.)}), 'custom_keys'),
    (dict(decay_rate=0.7, norm_decay_mult=0.), 'norm_decay_mult'),
    (dict(decay_type='layer_wise'), 'decay_rate'),
    (None, 'decay_rate'),
    (dict(decay_rate=0.7, num_layers=6.0), 'num_layers'),
])
def test_rejects_bad_paramwise_cfg(paramwise, match):
    with pytest.raises(ValueError, match=match):
        LearningRateDecayOptimizerConstructor(dict(OPTIM_CFG), paramwise)


def test_rejects_optimizer_without_lr():
    with pytest.raises(ValueError, match='lr'):
        LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type='AdamW')), dict(decay_rate=0.7))


class ResNetLike(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(3, 3, 1)])


@pytest.mark.parametrize('model, match', [
    (nn.Sequential(nn.Conv2d(3, 3, 1)), 'has no `backbone`'),
    (type('Det', (nn.Module,), {})(), 'has no `backbone`'),
])
def test_rejects_model_without_backbone(model, match):
    with pytest.raises(TypeError, match=match):
        build_groups(constructor(decay_rate=0.7), model)


def test_rejects_non_convnext_backbone():
    model = nn.Module()
    model.backbone = ResNetLike()
    with pytest.raises(TypeError, match='ResNetLike is not ConvNeXt-family'):
        build_groups(constructor(decay_rate=0.7), model)


def test_rejects_backbone_with_unofficial_stage_layout():
    model = nn.Module()
    model.backbone = nn.Module()
    model.backbone.downsample_layers = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(4))
    model.backbone.stages = nn.ModuleList(nn.ModuleDict({'blocks': nn.Conv2d(3, 3, 1)}) for _ in range(4))
    with pytest.raises(ValueError, match='official ConvNeXt layout'):
        build_groups(constructor(decay_rate=0.7), model)


def test_data_parallel_wrapped_model():
    model = Detector(narrow_convnext(TINY_DEPTHS))
    ctor = constructor(decay_rate=0.7)
    wrapped = build_groups(ctor, nn.DataParallel(model))
    assert comparable(wrapped) == comparable(build_groups(ctor, model))


def test_ddp_wrapped_model(tmp_path):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        model = Detector(narrow_convnext(TINY_DEPTHS))
        ddp = nn.parallel.DistributedDataParallel(model)
        ctor = constructor(decay_rate=0.7, decay_type='stage_wise')
        assert comparable(build_groups(ctor, ddp)) == comparable(build_groups(ctor, model))
        optimizer = ctor(ddp).optimizer
        assert sum(len(g['params']) for g in optimizer.param_groups) == len(list(model.parameters()))
    finally:
        dist.destroy_process_group()


def test_builds_optimizer_from_config_in_every_scope():
    model = Detector(narrow_convnext(TINY_DEPTHS))
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
               constructor='convnext_dense.LearningRateDecayOptimizerConstructor',
               paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
    wrapper = build_optim_wrapper(model, dict(cfg))
    groups = wrapper.optimizer.param_groups
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    assert {round(g['lr'] / BASE_LR, 9) for g in groups} == {round(0.7 ** k, 9) for k in range(8)}
    for scope in ('mmdet', 'mmseg'):
        registry = importlib.import_module(f'{scope}.registry')
        assert registry.OPTIM_WRAPPER_CONSTRUCTORS.get(cfg['constructor']) is LearningRateDecayOptimizerConstructor


def test_missing_weight_decay_leaves_optimizer_default():
    ctor = LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type='AdamW', lr=BASE_LR)),
                                                 dict(decay_rate=0.7))
    groups = build_groups(ctor, Detector(narrow_convnext(TINY_DEPTHS)))
    for group in groups:
        if group['group_name'].endswith('_no_decay'):
            assert group['weight_decay'] == 0
        else:
            assert 'weight_decay' not in group



def test_logs_one_line_per_group():
    logger = MMLogger.get_current_instance()
    records = LogRecords()
    logger.addHandler(records)
    try:
        groups = build_groups(constructor(decay_rate=0.7, decay_type='stage_wise'),
                              Detector(narrow_convnext(TINY_DEPTHS)))
    finally:
        logger.removeHandler(records)
    assert len(records.messages) == 1
    lines = records.messages[0].splitlines()
    assert 'stage_wise' in lines[0] and 'num_layers=6 (derived' in lines[0]
    rows = lines[2:]
    assert len(rows) == len(groups) == 12  # layer ids 0-4 and 7, each decay and no-decay
    assert [row.split()[0] for row in rows][:2] == ['layer_0_no_decay', 'layer_0_decay']
    counts = {row.split()[0]: int(row.split()[5]) for row in rows}
    assert counts == {g['group_name']: len(g['params']) for g in groups}


def official_v2_group(name: str, param: nn.Parameter) -> Tuple[int, bool]:
    """The ConvNeXt V2 authors' grouping (optim_factory.py: get_num_layer_for_convnext, 12 groups, and
    get_parameter_groups' no-decay test), restated for a classifier's parameter names: (layer id, decay)."""
    no_decay = param.ndim == 1 or name.endswith(('.bias', '.gamma', '.beta'))
    parts = name.split('.')
    if parts[0] == 'downsample_layers':
        stage = int(parts[1])
        return {0: 0, 1: 2, 2: 3, 3: 12}[stage], not no_decay
    if parts[0] == 'stages':
        stage, block = int(parts[1]), int(parts[2])
        return {0: 1, 1: 2, 2: 3 + block // 3, 3: 12}.get(stage, 0), not no_decay
    return 13, not no_decay


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_v2_grn_affine_parameters_get_no_weight_decay(decay_type):
    """GRN's gamma and beta are 1-D: out of decay in both modes, as the V2 authors do."""
    model = Detector(narrow_convnext(SMALL_DEPTHS, use_grn=True, layer_scale_init_value=0.0))
    groups = build_groups(constructor(decay_rate=0.95, decay_type=decay_type, num_layers=12), model)
    wd = {name: group['weight_decay'] for group in groups for name in group['param_names']}
    grn = [name for name in wd if '.grn.' in name]
    assert len(grn) == 2 * sum(SMALL_DEPTHS)
    assert all(model.get_parameter(name).ndim == 1 for name in grn)
    assert {wd[name] for name in grn} == {0.0}
    assert wd['backbone.stages.1.0.pwconv1.weight'] == BASE_WD


@pytest.mark.parametrize('reference', ['mmdet', 'mmseg'])
def test_v2_groups_of_mmdets_and_mmsegs_own_constructors_equal_ours(reference):
    """GRN is 1-D, so the OpenMMLab constructors' own "1-D: no decay" rule leaves it undecayed: a user who
    keeps mmdet's or mmseg's constructor gets our constructor's groups."""
    optimizers = importlib.import_module(f'{reference}.engine.optimizers')
    model = Detector(narrow_convnext(SMALL_DEPTHS, use_grn=True, layer_scale_init_value=0.0))
    paramwise = dict(decay_rate=0.95, decay_type='layer_wise', num_layers=12)
    official = build_groups(optimizers.LearningRateDecayOptimizerConstructor(dict(OPTIM_CFG), dict(paramwise)),
                            model)
    assert comparable(official) == comparable(build_groups(constructor(**paramwise), model))
    wd = {name: group['weight_decay'] for group in official for name in group['param_names']}
    assert {wd[name] for name in wd if '.grn.' in name} == {0.0}


def test_v2_grn_is_undecayed_by_mmengines_default_constructor_with_flat_decay_off():
    model = Detector(narrow_convnext((1, 1, 1, 1), use_grn=True, layer_scale_init_value=0.0))
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(OPTIM_CFG['optimizer']),
                                              paramwise_cfg=dict(flat_decay_mult=0.0)))
    decay = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups for p in group['params']}
    grn = [p for name, p in model.named_parameters() if '.grn.' in name]
    assert grn and {decay[id(p)] for p in grn} == {0.0}
    assert decay[id(model.backbone.stages[0][0].pwconv1.weight)] == BASE_WD


def test_v2_grouping_matches_the_official_v2_optimizer_factory():
    """layer_wise over 12 layers (the V2-B detection recipe) gives every backbone parameter the layer id,
    lr scale decay_rate ** (13 - id) and decay flag of the V2 authors' fine-tuning code."""
    backbone = narrow_convnext(SMALL_DEPTHS, use_grn=True, layer_scale_init_value=0.0)
    groups = build_groups(constructor(decay_rate=0.95, decay_type='layer_wise', num_layers=12), Detector(backbone))
    ours = {name: (group['lr_scale'], group['weight_decay'] > 0)
            for group in groups for name in group['param_names'] if name.startswith('backbone.')}
    official = {}
    for name, param in backbone.named_parameters():
        if name.startswith('norm'):  # our output norms: the official classifier has none
            continue
        layer_id, decay = official_v2_group(name, param)
        official['backbone.' + name] = (0.95 ** (13 - layer_id), decay)
    ours = {k: v for k, v in ours.items() if not k.startswith('backbone.norm')}
    assert ours.keys() == official.keys()
    for name, (scale, decay) in official.items():
        assert ours[name] == (pytest.approx(scale, rel=1e-12), decay), name
