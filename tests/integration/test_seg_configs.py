"""The ADE20K UperNet configs: each loads, builds, carries the paper's recipe and its stage-wise lr scales."""
import copy
from pathlib import Path

import pytest
from mmengine.config import Config

import mmseg  # noqa: F401  (a missing mmseg must fail the suite, not skip it)

from convnext_dense.analysis.seg_flops import PAPER_NUMBERS, build_segmentor

REPO_ROOT = Path(__file__).resolve().parents[2]
SEG_CONFIGS = sorted((REPO_ROOT / 'configs' / 'seg').glob('*.py'))
WEIGHTS = 'https://dl.fbaipublicfiles.com/convnext/'

# config -> (arch, head in_channels, drop path, lr, num_layers, weights file, crop, slide stride)
PAPER_RECIPES = {
    'upernet_convnext_t_512_160k': ('tiny', (96, 192, 384, 768), 0.4, 1e-4, 6, 'convnext_tiny_1k_224.pth', 512, 341),
    'upernet_convnext_s_512_160k': ('small', (96, 192, 384, 768), 0.3, 1e-4, 12, 'convnext_small_1k_224.pth', 512,
                                    341),
    'upernet_convnext_b_512_160k': ('base', (128, 256, 512, 1024), 0.4, 1e-4, 12, 'convnext_base_1k_224.pth', 512,
                                    341),
    'upernet_convnext_b_in22k_640_160k': ('base', (128, 256, 512, 1024), 0.4, 1e-4, 12, 'convnext_base_22k_224.pth',
                                          640, 426),
    'upernet_convnext_l_in22k_640_160k': ('large', (192, 384, 768, 1536), 0.4, 1e-4, 12,
                                          'convnext_large_22k_224.pth', 640, 426),
    'upernet_convnext_xl_in22k_640_160k': ('xlarge', (256, 512, 1024, 2048), 0.4, 8e-5, 12,
                                           'convnext_xlarge_22k_224.pth', 640, 426),
}


def _load(name: str) -> Config:
    return Config.fromfile(str(REPO_ROOT / 'configs' / 'seg' / f'{name}.py'))


def test_all_paper_configs_exist():
    names = {path.stem for path in SEG_CONFIGS}
    assert set(PAPER_RECIPES) <= names
    # The DINOv3 configs run a paper recipe with other weights: the same network has the paper's numbers
    # (checked in tests/unit/test_dinov3_configs.py).
    assert set(PAPER_RECIPES) == {name for name in PAPER_NUMBERS if '_dinov3_' not in name}


@pytest.mark.parametrize('name', sorted(PAPER_RECIPES))
def test_config_carries_paper_recipe(name):
    arch, channels, drop_path, lr, num_layers, weights, crop, stride = PAPER_RECIPES[name]
    cfg = _load(name)
    assert cfg.default_scope == 'mmseg'
    assert 'convnext_dense' in cfg.custom_imports['imports']
    backbone = cfg.model.backbone
    assert backbone.type == 'convnext_dense.ConvNeXt' and backbone.arch == arch
    assert backbone.drop_path_rate == drop_path and backbone.layer_scale_init_value == 1.0
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=WEIGHTS + weights)
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert tuple(head.in_channels) == channels and head.channels == 512
    assert tuple(head.pool_scales) == (1, 2, 3, 6) and head.num_classes == 150
    assert head.norm_cfg.type == 'SyncBN' and aux.norm_cfg.type == 'SyncBN'
    assert (aux.type, aux.in_index, aux.in_channels, aux.channels) == ('FCNHead', 2, channels[2], 256)
    assert aux.loss_decode.loss_weight == 0.4
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    assert tuple(cfg.model.data_preprocessor.size) == (crop, crop)

    train_steps = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    assert tuple(train_steps['RandomResize'].scale) == (4 * crop, crop)
    assert tuple(train_steps['RandomResize'].ratio_range) == (0.5, 2.0)
    assert tuple(train_steps['RandomCrop'].crop_size) == (crop, crop)
    assert train_steps['RandomCrop'].cat_max_ratio == 0.75
    assert {'RandomFlip', 'PhotoMetricDistortion'} <= set(train_steps)
    assert train_steps['LoadAnnotations'].reduce_zero_label is True
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16

    tta = cfg.tta_pipeline[1].transforms
    assert [tuple(step.scale) for step in tta[0]] == [
        (int(4 * crop * r), int(crop * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert [step.prob for step in tta[1]] == [0.0, 1.0]
    assert cfg.tta_model.type == 'SegTTAModel'
    assert cfg.test_evaluator.type == 'IoUMetric'

    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper'
    assert wrapper.constructor == 'convnext_dense.LearningRateDecayOptimizerConstructor'
    assert wrapper.optimizer == dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05)
    # num_layers is derived from the backbone (the paper's value: test_config_builds_with_stage_wise_param_groups)
    assert wrapper.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise')
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 1e-6, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == ('PolyLR', 1.0, 0.0, 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000


def _stage_wise_scale(name: str, num_layers: int) -> float:
    """The expected lr scale of a parameter under stage_wise 0.9, written out independently of the package."""
    parts = name.split('.')
    if parts[:2] == ['backbone', 'downsample_layers']:
        layer_id = 0
    elif parts[:2] == ['backbone', 'stages']:
        layer_id = int(parts[2]) + 1
    else:
        layer_id = num_layers + 1
    return 0.9 ** (num_layers + 1 - layer_id)


@pytest.mark.parametrize('name', sorted(PAPER_RECIPES))
def test_config_builds_with_stage_wise_param_groups(name):
    from mmengine.optim import build_optim_wrapper

    _, _, _, lr, num_layers, _, _, _ = PAPER_RECIPES[name]
    cfg = _load(name)
    model = build_segmentor(cfg)  # SyncBN -> BN, no pretrained download

    total = sum(p.numel() for p in model.parameters())
    paper_params = PAPER_NUMBERS[name][0]
    assert abs(total - paper_params) / paper_params < 0.01, f'{name}: {total / 1e6:.1f}M params'

    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs CUDA; the param groups are the same
    wrapper_cfg.pop('loss_scale')
    optimizer = build_optim_wrapper(model, wrapper_cfg).optimizer
    group_of = {id(p): group for group in optimizer.param_groups for p in group['params']}
    named = dict(model.named_parameters())
    assert len(group_of) == len(named)
    for param_name, param in named.items():
        group = group_of[id(param)]
        expected_lr = lr * _stage_wise_scale(param_name, num_layers)
        assert group['lr'] == pytest.approx(expected_lr, rel=1e-9), param_name
        no_decay = param.ndim == 1 or param_name.endswith('.bias')
        assert group['weight_decay'] == (0.0 if no_decay else 0.05), param_name
    # The extremes: stem at 0.9**(L+1), the last stage at 0.9**(L-3), heads at the base lr, with the paper's L
    # (6 for T, 12 for S/B/L/XL), which the constructor derives from the backbone.
    assert group_of[id(named['backbone.downsample_layers.0.0.weight'])]['lr'] == pytest.approx(
        lr * 0.9 ** (num_layers + 1))
    assert group_of[id(named['backbone.stages.3.0.pwconv1.weight'])]['lr'] == pytest.approx(
        lr * 0.9 ** (num_layers - 3))
    assert group_of[id(named['decode_head.conv_seg.weight'])]['lr'] == pytest.approx(lr)


@pytest.mark.parametrize('path', [p for p in SEG_CONFIGS if p.stem not in PAPER_RECIPES]
                         + sorted((REPO_ROOT / 'configs' / 'demo').glob('upernet_*.py')), ids=lambda p: p.stem)
def test_other_seg_configs_load_and_build(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmseg'
    model = build_segmentor(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


# ConvNeXt V2 UperNet: our V1 UperNet-B recipe with the V2 backbone settings (no published V2 recipe).
V2_WEIGHTS = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/'
V2_SEGMENTORS = {  # name -> (arch, head in_channels, official ImageNet-1K fine-tuned file)
    'upernet_convnextv2_b_512_160k': ('base', (128, 256, 512, 1024), 'convnextv2_base_1k_224_ema.pt'),
    'upernet_convnextv2_l_512_160k': ('large', (192, 384, 768, 1536), 'convnextv2_large_1k_224_ema.pt'),
    'upernet_convnextv2_h_512_160k': ('huge', (352, 704, 1408, 2816), 'convnextv2_huge_1k_224_ema.pt'),
}


@pytest.mark.parametrize('name', sorted(V2_SEGMENTORS))
def test_v2_upernet_is_the_v1_b_recipe_with_v2_backbone_settings(name):
    arch, channels, weights = V2_SEGMENTORS[name]
    ours = _load(name).to_dict()
    v1 = _load('upernet_convnext_b_512_160k').to_dict()
    backbone, v1_backbone = ours['model'].pop('backbone'), v1['model'].pop('backbone')
    assert backbone == dict(v1_backbone, arch=arch, layer_scale_init_value=0.0, use_grn=True,
                            init_cfg=dict(type='Pretrained', checkpoint=V2_WEIGHTS + weights))
    assert tuple(ours['model']['decode_head'].pop('in_channels')) == channels
    assert ours['model']['auxiliary_head'].pop('in_channels') == channels[2]
    v1['model']['decode_head'].pop('in_channels')
    v1['model']['auxiliary_head'].pop('in_channels')
    ours.pop('checkpoint_file')
    v1.pop('checkpoint_file')
    assert sorted(ours) == sorted(v1)
    for key in v1:
        assert ours[key] == v1[key], key
