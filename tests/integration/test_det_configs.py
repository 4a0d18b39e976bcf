"""The detection configs load, build their models and optimizers, and follow the paper's recipes."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DET_CONFIGS = sorted((REPO_ROOT / 'configs' / 'det').glob('*.py')) + sorted(
    (REPO_ROOT / 'configs' / 'demo').glob('mask_rcnn_*.py'))
URL = 'https://dl.fbaipublicfiles.com/convnext/'

# stem -> (detector, arch, drop path, lr, layer-wise decay rate, num_layers, pretrained file, FPN in_channels)
RECIPES = {
    'mask_rcnn_convnext_t_3x': ('MaskRCNN', 'tiny', 0.4, 1e-4, 0.95, 6, 'convnext_tiny_1k_224.pth', 96),
    'cascade_convnext_t_3x': ('CascadeRCNN', 'tiny', 0.4, 2e-4, 0.7, 6, 'convnext_tiny_1k_224.pth', 96),
    'cascade_convnext_s_3x': ('CascadeRCNN', 'small', 0.6, 2e-4, 0.7, 12, 'convnext_small_1k_224.pth', 96),
    'cascade_convnext_b_3x': ('CascadeRCNN', 'base', 0.7, 2e-4, 0.8, 12, 'convnext_base_1k_224.pth', 128),
    'cascade_convnext_b_in22k_3x': ('CascadeRCNN', 'base', 0.6, 1e-4, 0.8, 12, 'convnext_base_22k_224.pth', 128),
    'cascade_convnext_l_in22k_3x': ('CascadeRCNN', 'large', 0.7, 1e-4, 0.7, 12, 'convnext_large_22k_224.pth', 192),
    'cascade_convnext_xl_in22k_3x': ('CascadeRCNN', 'xlarge', 0.8, 1e-4, 0.7, 12, 'convnext_xlarge_22k_224.pth',
                                     256),
}


def build_on_meta(model_cfg: dict) -> torch.nn.Module:
    """Builds a detector with parameters on the meta device: the real modules, no memory or init time."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    with torch.device('meta'):
        return MODELS.build(copy.deepcopy(model_cfg))


def expected_layer_id(name: str, num_layers: int) -> int:
    """The official layer-wise rule (docs/design.md, contracts), written out independently of the constructor."""
    parts = name.split('.')
    if not name.startswith('backbone.') or parts[1].startswith('norm'):
        return num_layers + 1
    kind, index = parts[1], int(parts[2])
    if kind == 'downsample_layers':
        return {0: 0, 1: 2, 2: 3, 3: num_layers}[index]
    if index == 2:
        return 3 + int(parts[3]) // 3
    return {0: 1, 1: 2, 3: num_layers}[index]


def test_every_paper_config_exists():
    assert set(RECIPES) <= {path.stem for path in DET_CONFIGS}


@pytest.mark.parametrize('path', DET_CONFIGS, ids=[p.stem for p in DET_CONFIGS])
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmdet'
    assert 'convnext_dense' in cfg.custom_imports['imports']
    model = build_on_meta(cfg.model)
    assert type(model.backbone).__name__ == 'ConvNeXt'
    assert list(cfg.model.neck.in_channels) == list(model.backbone.out_channels)


@pytest.mark.parametrize('stem', sorted(RECIPES))
def test_paper_recipe(stem):
    detector, arch, drop_path, lr, decay_rate, num_layers, weights, fpn_in = RECIPES[stem]
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / f'{stem}.py'))
    backbone = cfg.model.backbone
    assert (cfg.model.type, backbone.arch, backbone.drop_path_rate) == (detector, arch, drop_path)
    assert backbone.layer_scale_init_value == 1.0
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=URL + weights)
    assert cfg.model.neck.in_channels[0] == fpn_in
    wrapper = cfg.optim_wrapper
    assert (wrapper.type, wrapper.loss_scale) == ('AmpOptimWrapper', 'dynamic')
    assert wrapper.constructor == 'convnext_dense.LearningRateDecayOptimizerConstructor'
    assert wrapper.paramwise_cfg == dict(decay_rate=decay_rate, decay_type='layer_wise', num_layers=num_layers)
    assert dict(wrapper.optimizer) == dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05)
    # 16 images per iteration: 8 GPUs x 2, which auto_scale_lr refers to.
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.param_scheduler[1].milestones == [27, 33]
    assert (cfg.param_scheduler[0].end, cfg.param_scheduler[0].start_factor) == (1000, 0.001)
    if detector == 'CascadeRCNN':
        for head in cfg.model.roi_head.bbox_head:
            assert head.type == 'Shared4Conv1FCBBoxHead' and head.conv_out_channels == 256
            assert head.norm_cfg.type == 'SyncBN'
            assert head.reg_decoded_bbox and head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)


def test_train_augmentation_is_the_papers():
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / 'cascade_convnext_t_3x.py'))
    steps = [step['type'] for step in cfg.train_pipeline]
    assert steps == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'RandomChoice', 'PackDetInputs']
    multi_scale, crop = cfg.train_pipeline[3]['transforms']
    assert [s[0] for s in multi_scale[0]['scales']] == list(range(480, 801, 32))
    assert {s[1] for s in multi_scale[0]['scales']} == {1333}
    assert [t['type'] for t in crop] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    assert crop[0]['scales'] == [(400, 1333), (500, 1333), (600, 1333)]
    assert (crop[1]['crop_type'], tuple(crop[1]['crop_size'])) == ('absolute_range', (384, 600))


@pytest.mark.parametrize('stem', sorted(RECIPES))
def test_optimizer_has_paper_lr_scales(stem):
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    _, _, _, lr, decay_rate, num_layers, _, _ = RECIPES[stem]
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / f'{stem}.py'))
    model = build_on_meta(cfg.model)
    # AmpOptimWrapper needs CUDA; the parameter groups do not depend on the wrapper type.
    wrapper_cfg = dict(type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer.to_dict())
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor, optim_wrapper_cfg=wrapper_cfg,
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg.to_dict()))
    optimizer = constructor(model).optimizer
    group_of = {id(p): group for group in optimizer.param_groups for p in group['params']}
    checked = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = group_of[id(param)]
        expected = lr * decay_rate ** (num_layers + 1 - expected_layer_id(name, num_layers))
        assert group['lr'] == pytest.approx(expected, rel=1e-6), name
        no_decay = param.ndim == 1 or name.endswith('.bias')
        assert group['weight_decay'] == (0.0 if no_decay else 0.05), name
        checked += 1
    assert checked == sum(1 for p in model.parameters() if p.requires_grad)
