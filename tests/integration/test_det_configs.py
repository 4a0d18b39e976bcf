"""The detection configs load, build their models and optimizers, and follow the paper's recipes."""
import copy
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from convnext_dense.arch import ARCH_SETTINGS
from convnext_dense.engine.layer_decay import default_num_layers

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
    # num_layers is derived from the backbone; test_optimizer_has_paper_lr_scales checks it is the paper's
    assert wrapper.paramwise_cfg == dict(decay_rate=decay_rate, decay_type='layer_wise')
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
    """Every parameter's lr with the paper's num_layers (6 for T, 12 for S/B/L/XL), derived by the constructor."""
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


# ConvNeXt V2: Mask R-CNN with FCMAE weights and large-scale jitter, as mmdet's projects/ConvNeXt-V2.
V2_WEIGHTS = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/'
V2_DETECTORS = {  # stem -> (arch, FPN in_channels, official FCMAE file)
    'mask_rcnn_convnextv2_b_fcmae_lsj_3x': ('base', [128, 256, 512, 1024], 'convnextv2_base_1k_224_fcmae.pt'),
    'mask_rcnn_convnextv2_l_fcmae_lsj_3x': ('large', [192, 384, 768, 1536], 'convnextv2_large_1k_224_fcmae.pt'),
    'mask_rcnn_convnextv2_h_fcmae_lsj_3x': ('huge', [352, 704, 1408, 2816], 'convnextv2_huge_1k_224_fcmae.pt'),
}
# mmdet 3.3's projects/ConvNeXt-V2/configs/mask-rcnn_convnext-v2-b_fpn_lsj-3x-fcmae_coco.py merged (mmdet's
# wheel does not ship projects/): written by tests/fixtures/make_mmdet_convnextv2_config.py.
MMDET_V2_B = json.loads((REPO_ROOT / 'tests' / 'fixtures' / 'mmdet_mask_rcnn_convnextv2_b_lsj_3x.json').read_text())


def plain(value):
    """A config value as JSON would hold it: dicts, lists (for tuples too) and scalars."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def test_v2_b_reproduces_mmdets_published_config_key_by_key():
    """Every key of mmdet's merged config, with the same value, except what names our package: the backbone
    type and checkpoint (the official FCMAE file, loaded without mmpretrain's conversion), the import of our
    package, our optimizer constructor (the same rule, plus GRN out of weight decay), our COCO dataset and
    metric (mmdet's, with labels in the order of metainfo.classes: the same labels on COCO), and what our
    runtime adds without changing the recipe (a non-finite-loss stop, the --tta pipeline, a base variable); its
    num_layers=12 our constructor derives from the backbone. auto_scale_lr.base_batch_size is the recipe's 32
    images per iteration (mmdet's keeps its base schedule's 16; auto-scaling is off in both)."""
    ours = plain(Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / 'mask_rcnn_convnextv2_b_fcmae_lsj_3x.py'))
                 .to_dict())
    theirs = plain(MMDET_V2_B['config'])

    assert (ours.pop('dataset_type'), theirs.pop('dataset_type')) == ('convnext_dense.CocoDataset', 'CocoDataset')
    for split in ('train', 'val', 'test'):
        assert ours[f'{split}_dataloader']['dataset'].pop('type') == 'convnext_dense.CocoDataset'
        assert theirs[f'{split}_dataloader']['dataset'].pop('type') == 'CocoDataset'
    for split in ('val', 'test'):
        assert (ours[f'{split}_evaluator'].pop('type'), theirs[f'{split}_evaluator'].pop('type')) == (
            'convnext_dense.CocoMetric', 'CocoMetric')
    assert (ours['auto_scale_lr'].pop('base_batch_size'), theirs['auto_scale_lr'].pop('base_batch_size')) == (32, 16)
    assert ours['train_dataloader']['batch_size'] * 8 == 32

    our_backbone, their_backbone = ours['model'].pop('backbone'), theirs['model'].pop('backbone')
    assert (our_backbone.pop('type'), their_backbone.pop('type')) == ('convnext_dense.ConvNeXt', 'mmcls.ConvNeXt')
    assert our_backbone.pop('init_cfg') == dict(type='Pretrained',
                                                checkpoint=V2_WEIGHTS + 'convnextv2_base_1k_224_fcmae.pt')
    assert their_backbone.pop('init_cfg')['prefix'] == 'backbone.'
    assert their_backbone.pop('gap_before_final_norm') is False  # per-stage output norms: what ours computes
    assert our_backbone == their_backbone
    assert ours.pop('checkpoint_file') == V2_WEIGHTS + 'convnextv2_base_1k_224_fcmae.pt'
    theirs.pop('checkpoint_file')
    assert ours.pop('custom_imports') == dict(imports=['convnext_dense', 'convnext_dense.runtime'],
                                              allow_failed_imports=False)
    assert theirs.pop('custom_imports') == dict(imports=['mmcls.models'], allow_failed_imports=False)
    assert ours['optim_wrapper'].pop('constructor') == 'convnext_dense.LearningRateDecayOptimizerConstructor'
    assert theirs['optim_wrapper'].pop('constructor') == 'LearningRateDecayOptimizerConstructor'
    assert theirs['optim_wrapper']['paramwise_cfg'].pop('num_layers') == 12 == default_num_layers(
        ARCH_SETTINGS['base'][0])
    assert ours.pop('custom_hooks') == [dict(type='convnext_dense.FiniteLossHook')]
    assert {ours.pop('tta_model')['type'], ours.pop('tta_pipeline')[1]['type']} == {'DetTTAModel', 'TestTimeAug'}
    ours.pop('multi_scales')  # our base's multi-scale list, used by no pipeline of this config

    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key
    assert theirs['model']['test_cfg']['rcnn']['nms'] == dict(type='soft_nms', iou_threshold=0.5)


@pytest.mark.parametrize('stem', sorted(V2_DETECTORS))
def test_v2_detectors_are_the_b_recipe_with_their_backbone(stem):
    arch, fpn_in, weights = V2_DETECTORS[stem]
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / f'{stem}.py'))
    reference = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / 'mask_rcnn_convnextv2_b_fcmae_lsj_3x.py'))
    backbone = cfg.model.backbone
    assert (backbone.arch, backbone.use_grn, backbone.layer_scale_init_value) == (arch, True, 0.0)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=V2_WEIGHTS + weights)
    assert list(cfg.model.neck.in_channels) == fpn_in
    assert cfg.optim_wrapper.paramwise_cfg == dict(decay_rate=0.95, decay_type='layer_wise')
    assert default_num_layers(ARCH_SETTINGS[arch][0]) == 12  # what the constructor derives, as mmdet's sets
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.model.test_cfg.rcnn.nms.type == 'soft_nms'
    for key in ('train_pipeline', 'train_dataloader', 'param_scheduler', 'train_cfg', 'optim_wrapper'):
        assert cfg[key] == reference[key], key


def test_v2_detector_param_groups_keep_grn_out_of_weight_decay():
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'det' / 'mask_rcnn_convnextv2_b_fcmae_lsj_3x.py'))
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    model = build_on_meta(cfg.model)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor,
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer.to_dict()),
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg.to_dict()))
    groups = constructor(model).optimizer.param_groups
    decay_of = {name: group['weight_decay'] for group in groups for name in group['param_names']}
    grn = [name for name in decay_of if '.grn.' in name]
    assert len(grn) == 2 * 36 and {decay_of[name] for name in grn} == {0.0}
    assert decay_of['backbone.stages.2.20.pwconv1.weight'] == 0.05


def mmdet_param_groups(backbone_type: str) -> dict:
    """``{parameter name: (lr, weight decay)}`` from mmdet's own ``LearningRateDecayOptimizerConstructor`` for
    mmdet's published ConvNeXt V2-B Mask R-CNN config, its backbone ``type`` set to ``backbone_type``."""
    from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    config = Config(copy.deepcopy(MMDET_V2_B['config']))
    config.model.backbone.update(type=backbone_type, init_cfg=None)  # no download: names and shapes only
    model = MODELS.build(config.model)  # on the CPU: mmpretrain's ConvNeXt reads its drop-path rates back
    optim_wrapper = config.optim_wrapper.to_dict()
    constructor = LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=optim_wrapper['optimizer']), optim_wrapper['paramwise_cfg'])
    groups = constructor(model).optimizer.param_groups
    return {name: (group['lr'], group['weight_decay']) for group in groups for name in group['param_names']}


def test_mmdets_own_constructor_treats_our_v2_backbone_as_mmpretrains():
    """A drop-in backbone must not depend on the constructor the user keeps: with mmdet's constructor (what
    mmdet's ConvNeXt-V2 project config uses), ours gets the lr and weight decay of mmpretrain's ConvNeXt for
    every parameter, GRN undecayed (1-D in both)."""
    from convnext_dense.checkpoint.layouts import mmpretrain_key_to_ours
    theirs = {mmpretrain_key_to_ours(name): value for name, value in mmdet_param_groups('mmpretrain.ConvNeXt').items()}
    ours = mmdet_param_groups('convnext_dense.ConvNeXt')
    assert ours == theirs
    grn = [name for name in ours if '.grn.' in name]
    assert len(grn) == 2 * 36 and {ours[name][1] for name in grn} == {0.0}
    assert ours['backbone.stages.2.20.pwconv1.weight'][1] == 0.05
