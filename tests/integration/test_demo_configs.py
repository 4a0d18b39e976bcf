"""The demo configs build, train 2 iterations, validate and test through ``train`` and ``test`` on a
tiny shapes set; and the demo driver's readers, table and figures work on what those runs write."""
import json
import math
from pathlib import Path

import pytest

from convnext_dense.cli import demo
from convnext_dense.config import config_path
from convnext_dense.datasets.shapes import make_shapes

ITERS = 2


@pytest.fixture(scope='module')
def tiny_shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('tiny') / 'shapes'
    make_shapes(root, seed=0, num_train=4, num_val=2, image_size=128)
    return root


def _small_run_options(task: 'demo.Task', data_root: Path) -> list:
    options = demo.data_options(task, data_root) + demo.schedule_options(ITERS)
    options += ['train_dataloader.batch_size=2', 'val_dataloader.batch_size=2', 'test_dataloader.batch_size=2',
                'default_hooks.logger.interval=1']
    # Worker processes only cost start-up time for 4 images.
    for loader in task.dataloaders:
        options += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return options


@pytest.mark.parametrize('task', demo.TASKS, ids=lambda t: t.key)
def test_demo_config_trains_validates_and_tests(task, tiny_shapes, tmp_path, repo_root, capsys):
    from convnext_dense.cli import test as test_tool
    from convnext_dense.cli import train
    from convnext_dense.cli.runner import build_runner

    work_dir = tmp_path / task.key
    config = config_path(task.config)
    options = _small_run_options(task, tiny_shapes)
    args = train.parse_args([config, '--work-dir', str(work_dir), '--cfg-options', *options])
    cfg = train.load_config(args)
    runner = build_runner(cfg)
    runner.train()

    # The layer-decay constructor gave the stem a smaller lr than the heads.
    scales = {group['lr_scale'] for group in runner.optim_wrapper.optimizer.param_groups}
    assert min(scales) < 1.0 == max(scales)
    history = demo.read_history(work_dir, task.metrics)
    assert [step for step, _ in history['loss']] == list(range(1, ITERS + 1))
    assert all(math.isfinite(loss) for _, loss in history['loss'])
    for metric in task.metrics:
        assert [step for step, _ in history[metric]] == [ITERS], metric

    checkpoint = demo.last_checkpoint(work_dir)
    assert checkpoint.is_file() and checkpoint.name == f'iter_{ITERS}.pth'
    test_dir = work_dir / 'test'
    # In one process mmengine would hand the test the training run's visualizer (and its save_dir): name a
    # new one, as a fresh process (the demo's) gets anyway.
    test_tool.main([config, str(checkpoint), '--work-dir', str(test_dir), '--show-dir', str(test_dir / 'painted'),
                    '--cfg-options', *options, 'visualizer.name=test_visualizer'])
    metrics = demo.read_test_metrics(test_dir, task.metrics)
    assert all(0.0 <= demo.as_fraction(m, v) <= 1.0 for m, v in metrics.items())
    assert len(demo.painted_images(test_dir)) == 2  # one per val image


def test_table_reports_targets_and_figures_are_written(tmp_path):
    results = {
        'det': {'metrics': {'coco/bbox_mAP': 0.612, 'coco/segm_mAP': 0.55}, 'train_s': 300.0, 'test_s': 20.0},
        'seg': {'metrics': {'mIoU': 65.0}, 'train_s': 200.0, 'test_s': 10.0},
    }
    table = demo.format_table(results, wall_s=600.0)
    assert '| 0.612 | 0.550 | - |' in table and '| 0.650 |' in table
    assert 'coco/bbox_mAP >= 0.50: met' in table and 'mIoU >= 0.70: MISSED (0.650)' in table
    assert demo.target_status(results) == {'coco/bbox_mAP': (0.612, 0.50, True), 'mIoU': (0.65, 0.70, False)}

    history = {'loss': [(1, 2.0), (2, 1.5)], 'mIoU': [(2, 40.0)]}
    demo.plot_curves({'seg': history}, tmp_path / 'curves.png')
    assert (tmp_path / 'curves.png').stat().st_size > 1000
    demo.write_json_atomic({'a': 1}, tmp_path / 'summary.json')
    assert json.loads((tmp_path / 'summary.json').read_text()) == {'a': 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []  # no temporary files left


def test_detector_backbone_starts_from_segmentor_checkpoint(tmp_path):
    """The demo's derived config loads a segmentor checkpoint's ``backbone.*`` into the detector's backbone."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    from convnext_dense.models.convnext import ConvNeXt

    torch.manual_seed(0)
    source = ConvNeXt(arch='atto', out_indices=(0, 1, 2, 3))
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(6, 64, 1, 1)  # segmentor keys the detector ignores
    checkpoint = tmp_path / 'seg' / 'iter_2.pth'
    checkpoint.parent.mkdir()
    torch.save({'meta': {}, 'state_dict': state}, checkpoint)

    config_file = demo.backbone_init_config(demo.DET, checkpoint, tmp_path / 'configs')
    cfg = Config.fromfile(str(config_file))
    assert cfg.model.backbone.init_cfg == {'type': 'Pretrained', 'checkpoint': str(checkpoint)}
    assert cfg.model.roi_head.bbox_head.num_classes == 5  # everything else comes from the demo config
    init_default_scope('mmdet')
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(detector.backbone.state_dict()[key], value), key
    assert [p.name for p in config_file.parent.iterdir()] == [config_file.name]  # no temporary file left
