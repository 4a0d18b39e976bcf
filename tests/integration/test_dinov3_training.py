"""The DINOv3 configs train two iterations on the shapes data, their ``hf-hub:`` weights served from a
pre-filled Hugging Face cache with the network off.

Each run keeps the config's model (detector or segmentor, heads, losses), its optimizer, layer decay and
hub name, and swaps in what a two-iteration CPU run needs: a 1-block-per-stage ConvNeXt (and the matching
neck / head widths), BN for SyncBN, no AMP, the demo configs' shapes data and pipelines at 64 px, and for the
detectors 64 proposals and 16 sampled RoIs per cascade stage instead of 2000 and 512. The cached file holds
that small backbone in timm's layout, as timm's DINOv3 files do. The recipes themselves are checked key by key
in tests/unit/test_dinov3_configs.py.
"""
import hashlib
import math
from pathlib import Path

import pytest
import torch
from conftest import LogRecords
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from convnext_dense.checkpoint import from_ours
from convnext_dense.checkpoint.formats import write_safetensors
from convnext_dense.config import config_path, syncbn_to_bn
from convnext_dense.datasets.shapes import make_shapes
from convnext_dense.models import ConvNeXt

SMALL = dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 128))
CONFIGS = {  # stem -> (task, demo config with the shapes data, hub repository)
    'cascade_convnext_t_dinov3_3x': ('det', 'demo/mask_rcnn_convnext_shapes', 'timm/convnext_tiny.dinov3_lvd1689m'),
    'cascade_convnext_b_dinov3_3x': ('det', 'demo/mask_rcnn_convnext_shapes', 'timm/convnext_base.dinov3_lvd1689m'),
    'upernet_convnext_t_dinov3_512_160k': ('seg', 'demo/upernet_convnext_shapes',
                                           'timm/convnext_tiny.dinov3_lvd1689m'),
    'upernet_convnext_b_dinov3_512_160k': ('seg', 'demo/upernet_convnext_shapes',
                                           'timm/convnext_base.dinov3_lvd1689m'),
}
# What the run takes from the demo config: the training data and pipeline.
DATA_KEYS = ('train_pipeline', 'train_dataloader')
IMAGE_SIZE = 64


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('dinov3') / 'shapes'
    make_shapes(root, seed=0, num_train=2, num_val=0, image_size=IMAGE_SIZE, max_objects=3,
                radius_range=(6.0, 14.0))
    return root


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """Both DINOv3 repositories in a Hugging Face cache, holding the small backbone in timm's layout."""
    from huggingface_hub import constants
    cache = tmp_path / 'hf_cache'
    torch.manual_seed(0)
    weights = from_ours(ConvNeXt(SMALL).state_dict(), 'timm')
    blob_path = tmp_path / 'model.safetensors'
    write_safetensors(weights, str(blob_path))
    data = blob_path.read_bytes()
    for repo_id in {repo for _, _, repo in CONFIGS.values()}:
        repo = cache / f'models--{repo_id.replace("/", "--")}'
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        (repo / 'refs').mkdir(parents=True)
        (repo / 'refs' / 'main').write_text(commit)
        (repo / 'snapshots' / commit).mkdir(parents=True)
        (repo / 'snapshots' / commit / 'model.safetensors').write_bytes(data)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return cache


def two_iteration_config(stem: str, data_root: Path, work_dir: Path) -> Config:
    task, demo_config, _ = CONFIGS[stem]
    cfg = Config.fromfile(config_path(f'{task}/{stem}'))
    demo = Config.fromfile(config_path(demo_config))
    model = cfg.model
    model.backbone.arch = dict(SMALL)
    channels = list(SMALL['channels'])
    if task == 'det':
        model.neck.in_channels = channels
        model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
        for stage in model.train_cfg.rcnn:
            stage.sampler.num = 16
    else:
        model.decode_head.in_channels = channels
        model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
        model.data_preprocessor.size = (IMAGE_SIZE, IMAGE_SIZE)
        model.test_cfg = dict(mode='whole')
    cfg.model = ConfigDict(syncbn_to_bn(model.to_dict()))
    for key in DATA_KEYS:
        cfg[key] = demo[key]
    # Two images: BN of UperNet's 1x1 pooling branch needs more than one value per channel.
    cfg.train_dataloader.update(batch_size=2 if task == 'seg' else 1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = f'{data_root}/'
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader', 'test_evaluator', 'test_cfg'):
        cfg[key] = None  # training only: mmengine validates at a loop's end otherwise
    cfg.param_scheduler = []
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1000, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('stem', sorted(CONFIGS))
def test_dinov3_config_trains_two_iterations_from_its_hub_weights(stem, shapes, hub_cache, tmp_path):
    from convnext_dense.cli.runner import build_runner

    cfg = two_iteration_config(stem, shapes, tmp_path / 'work')
    assert cfg.model.backbone.init_cfg.checkpoint == f'hf-hub:{CONFIGS[stem][2]}'
    runner = build_runner(cfg)
    records = LogRecords()
    MMLogger.get_current_instance().addHandler(records)
    try:
        runner.train()
    finally:
        MMLogger.get_current_instance().removeHandler(records)

    loads = [m for m in records.messages if m.startswith(f'ConvNeXt weights from hf-hub:{CONFIGS[stem][2]} ')]
    assert len(loads) == 1 and '(backbone layout: timm)' in loads[0] and '  missing: none' in loads[0], \
        records.messages
    losses = [float(m.split(' loss: ')[1].split()[0]) for m in records.messages if ' loss: ' in m]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), records.messages
    scales = {group['lr_scale'] for group in runner.optim_wrapper.optimizer.param_groups}
    assert min(scales) < 1.0 == max(scales)  # the recipe's layer decay: the stem learns slowest
