"""Bad input to ``train`` and ``test`` ends in one ``error: ...`` line that names the problem and
the fix, with the exit status its error type has (docs/robustness.md), instead of a traceback through mmengine
(robustness).

Most cases run ``convnext-dense train|test`` in this process (one mmdet import for all of them); two run the
real CLI in a subprocess to check what the user sees on the console: no traceback at all, exit status 1.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from shapes_run import TRAIN, logged_losses, make_data, run_tool, write_config

import mmdet  # noqa: F401  (a missing mmdet must fail the suite, not skip it)

from convnext_dense.cli import data_checks
from convnext_dense.cli.main import main as cli_main

# Every case runs on CPU without deterministic algorithms (they would stay switched on in this process).
NON_DETERMINISTIC = 'randomness.deterministic=False'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp('bad_input') / 'shapes', num_train=4, num_val=2)


@pytest.fixture
def config(tmp_path, data_root) -> Path:
    return write_config(tmp_path / 'tiny.py', data_root, max_iters=2)


@pytest.fixture(autouse=True)
def _isolate_runs(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # the tools set it; keep it from leaking into other tests
    monkeypatch.delenv('CONVNEXT_DENSE_DEBUG', raising=False)
    yield
    # Each in-process run leaves global mmengine instances behind; a logger still writing to this test's
    # (closed) captured stdout would print "--- Logging error ---" tracebacks into the next test.
    from mmengine.logging import MMLogger
    from mmengine.visualization import Visualizer
    for logger in MMLogger._instance_dict.values():
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes.extend(cls.__subclasses__())


def run_main(tool, argv, capsys):
    """Runs ``convnext-dense TOOL ARGV``; returns (exit status, the last stderr line, all of stderr)."""
    status = cli_main([tool, *[str(arg) for arg in argv]])
    stderr = capsys.readouterr().err.strip()
    assert 'Traceback' not in stderr
    return status, stderr.splitlines()[-1], stderr


def tiny_backbone_checkpoint(path: Path, channels=(32, 64, 128, 256), prefix: str = '') -> Path:
    """Saves the state dict of a 1-block ConvNeXt with other ``channels`` (another arch) to ``path``."""
    from convnext_dense.models import ConvNeXt
    model = ConvNeXt(arch=dict(depths=(1, 1, 1, 1), channels=channels))
    torch.save({'state_dict': {prefix + k: v for k, v in model.state_dict().items()}}, path)
    return path


def test_config_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / 'nope.py'
    code, line, _ = run_main('train', [missing], capsys)
    assert code == 2
    assert line == f'error: config {missing} not found: no such file and no such config name; list them with: ' \
                   f'convnext-dense config-path --list'


def test_unknown_backbone_arch(config, capsys):
    code, line, _ = run_main('train', [config, '--cfg-options', 'model.backbone.arch=giant', NON_DETERMINISTIC],
                             capsys)
    assert code == 2  # a ConfigError, wherever it is found
    assert line.startswith("error: ConvNeXt: unknown arch 'giant'; choose one of [")
    assert line.endswith("or pass dict(depths=(...), channels=(...)).")


def test_debug_variable_shows_the_original_exception(config, monkeypatch):
    monkeypatch.setenv('CONVNEXT_DENSE_DEBUG', '1')
    with pytest.raises(ValueError, match="unknown arch 'giant'"):
        cli_main(['train', str(config), '--cfg-options', 'model.backbone.arch=giant', NON_DETERMINISTIC])


def test_out_indices_out_of_range(config, capsys):
    code, line, _ = run_main('train', [config, '--cfg-options', 'model.backbone.out_indices=(0,1,2,4)',
                                          NON_DETERMINISTIC], capsys)
    assert code == 2
    assert line.startswith('error: ConvNeXt: out_indices entry 4 is out of range; valid are ')


def test_pretrained_checkpoint_of_another_arch(config, tmp_path, capsys):
    other = tiny_backbone_checkpoint(tmp_path / 'other_arch.pth')
    code, line, _ = run_main('train', [
        config, '--work-dir', tmp_path / 'work', '--cfg-options', NON_DETERMINISTIC,
        'model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={other}'], capsys)
    assert code == 2  # a CheckpointMismatchError, as from test and --resume
    assert line.startswith(f'error: checkpoint {other} (init_cfg) does not fit ConvNeXt(arch=')
    assert 'the checkpoint seems to be arch dict(depths=(1, 1, 1, 1), channels=(32, 64, 128, 256))' in line
    assert re.search(r'\d+ shape mismatches, 0 missing of \d+ tensors \(first: downsample_layers\.0\.0\.weight ',
                     line)
    assert line.endswith('or another checkpoint')
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_test_checkpoint_of_another_model(config, tmp_path, capsys):
    other = tiny_backbone_checkpoint(tmp_path / 'backbone_only.pth', prefix='backbone.')
    code, line, _ = run_main('test', [config, other, '--work-dir', tmp_path / 'work'], capsys)
    assert code == 2
    assert line.startswith(f'error: checkpoint {other} (CHECKPOINT) does not fit the model of this config: ')
    mismatched, missing = map(int, re.search(r'(\d+) shape mismatches, (\d+) missing of', line).groups())
    assert mismatched > 0 and missing > 0  # backbone shapes differ; neck and heads are absent
    # A file of a ConvNeXt backbone alone is named as such (a file of another model: test_whole_model.py).
    assert 'it holds a ConvNeXt backbone only' in line
    assert line.endswith('or pass a whole-model checkpoint')


@pytest.mark.parametrize('kind', ['random_bytes', 'truncated_zip'])
def test_file_that_is_not_a_checkpoint(kind, config, tmp_path, capsys):
    bad = tmp_path / f'{kind}.pth'
    if kind == 'random_bytes':
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        full = tiny_backbone_checkpoint(tmp_path / 'full.pth', channels=(16, 32, 64, 128))
        data = full.read_bytes()
        bad.write_bytes(data[:len(data) // 2])
    work = ['--work-dir', tmp_path / 'work']
    for tool, argv, expected_code in (
            ('test', [config, bad, *work], 2),
            ('train', [config, *work, '--resume', bad], 2),
            ('train', [config, *work, '--cfg-options', NON_DETERMINISTIC,
                          'model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={bad}'], 2)):
        code, line, _ = run_main(tool, argv, capsys)
        assert code == expected_code
        assert line.startswith(f'error: could not load checkpoint {bad}: ')
        assert line.endswith('It is either not a PyTorch checkpoint, truncated, or it references Python objects '
                             'that are refused for safety (weights_only=True); re-save it as a plain state dict '
                             'of tensors.')


def broken_copy(data_root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the annotation json of ``data_root``'s train split, changed by ``edit(coco)``."""
    coco = json.loads((data_root / 'annotations' / 'instances_train.json').read_text())
    edit(coco)
    path = tmp_path / 'instances_broken.json'
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize('field, edit, expected', [
    ('bbox', lambda coco: coco['annotations'][1].pop('bbox'), 'annotations[1] has no "bbox" (1 of '),
    ('category_id', lambda coco: [a.pop('category_id') for a in coco['annotations']],
     'annotations[0] has no "category_id" ('),
    ('categories', lambda coco: coco.pop('categories'), 'no "categories" list at the top level'),
    ('file_name', lambda coco: coco['images'][0].pop('file_name'), 'images[0] has no "file_name" (1 of '),
])
def test_annotation_json_with_missing_fields(field, edit, expected, config, data_root, tmp_path, capsys):
    broken = broken_copy(data_root, tmp_path, edit)
    code, line, _ = run_main('train', [config, '--cfg-options', f'train_dataloader.dataset.ann_file={broken}'],
                             capsys)
    assert code == 2
    assert line.startswith(f'error: annotation file {broken}: {expected}')
    assert line.endswith('every category id, name')


def test_large_annotation_file_is_named_after_the_parser_fails(config, data_root, tmp_path, capsys, monkeypatch):
    """Files above the up-front size limit are only checked once mmdet's parser has failed on them."""
    monkeypatch.setattr(data_checks, 'UPFRONT_MAX_BYTES', 0)
    broken = broken_copy(data_root, tmp_path, lambda coco: coco['annotations'][0].pop('bbox'))
    code, line, _ = run_main('train', [config, '--work-dir', tmp_path / 'work', '--cfg-options',
                                          NON_DETERMINISTIC, f'train_dataloader.dataset.ann_file={broken}'], capsys)
    assert code == 1  # mmdet's parser failed while the run was built; the boundary names the file
    assert line.startswith(f'error: annotation file {broken}: annotations[0] has no "bbox"')


def test_missing_data_root(config, tmp_path, capsys):
    missing = tmp_path / 'no_shapes'
    code, line, _ = run_main('train', [config, '--cfg-options', f'train_dataloader.dataset.data_root={missing}/'],
                             capsys)
    assert code == 2
    assert line.startswith(f'error: data root {missing}/ not found: expected {missing}/annotations/'
                           f'instances_train.json and {missing}/images/train/ (COCO layout); pass --data-root DIR '
                           f'(moves every split and evaluator) or link the data there')


def garbage_file(path: Path) -> Path:
    """A file that is no checkpoint: `test` reads the checkpoint after the data checks, so its error means
    they passed."""
    path.write_bytes(b'not a checkpoint')
    return path


def test_data_root_option_moves_the_whole_config(data_root, tmp_path, capsys):
    """--data-root moves train, val, test and the evaluator's file of a config whose data_root is elsewhere."""
    config = write_config(tmp_path / 'elsewhere.py', tmp_path / 'not_here')
    not_a_checkpoint = garbage_file(tmp_path / 'garbage.pth')
    code, line, _ = run_main('test', [config, not_a_checkpoint, '--work-dir', tmp_path / 'work'], capsys)
    assert line.startswith(f'error: data root {tmp_path}/not_here/ not found')
    code, line, _ = run_main('test', [config, not_a_checkpoint, '--work-dir', tmp_path / 'work',
                                      '--data-root', f'{data_root}/'], capsys)
    assert code == 2  # the data checks of the test split and its evaluator passed; then the checkpoint's
    assert line.startswith(f'error: could not load checkpoint {not_a_checkpoint}')


def test_data_root_option_moves_a_segmentation_config(data_root, tmp_path, capsys):
    """The demo UperNet (label maps, data/shapes/ in the config) reads the shapes set wherever it is."""
    config = Path(__file__).resolve().parents[2] / 'configs' / 'demo' / 'upernet_convnext_shapes.py'
    not_a_checkpoint = garbage_file(tmp_path / 'garbage.pth')
    code, line, _ = run_main('test', [config, not_a_checkpoint, '--work-dir', tmp_path / 'work',
                                      '--data-root', f'{tmp_path}/moved/'], capsys)
    assert line.startswith(f'error: data root {tmp_path}/moved/ not found')
    code, line, _ = run_main('test', [config, not_a_checkpoint, '--work-dir', tmp_path / 'work',
                                      '--data-root', f'{data_root}/'], capsys)
    assert code == 2
    assert line.startswith(f'error: could not load checkpoint {not_a_checkpoint}')


# The json lists circle, square, triangle, star, ring (ids 1-5).
SHUFFLED = 'train_dataloader.dataset.metainfo.classes=[ring,star,triangle,square,circle]'


def test_shuffled_classes_with_mmdets_dataset_stop_with_both_orders(config, capsys):
    code, line, _ = run_main('train', [config, '--cfg-options', 'train_dataloader.dataset.type=CocoDataset',
                                       SHUFFLED], capsys)
    assert code == 2
    assert line.startswith("error: train_dataloader.dataset: mmdet's CocoDataset numbers labels in the order of "
                           "the categories of ")
    assert "label 0 would be trained as 'circle' and named 'ring'; use type='convnext_dense.CocoDataset'" in line
    assert line.endswith('(circle, square, triangle, star, ring)')


def test_heads_of_another_number_of_classes_stop_naming_the_option(config, capsys):
    code, line, _ = run_main('train', [config, '--cfg-options', 'model.roi_head.mask_head.num_classes=80'], capsys)
    assert code == 2
    assert line == ('error: model.roi_head.mask_head.num_classes is 80 but train_dataloader.dataset has 5 classes '
                    '(circle, square, triangle, star, ring); pass --num-classes 5 (sets every head) or list 80 '
                    'names in train_dataloader.dataset.metainfo.classes')


def test_resume_without_a_checkpoint_says_so_and_labels_follow_shuffled_classes(config, tmp_path, capsys):
    """A `--resume` that finds nothing names the folder it looked in; our dataset trains on shuffled classes."""
    work_dir = tmp_path / 'work'
    config.write_text(config.read_text().replace('max_iters=2', 'max_iters=1'))
    code = cli_main(['train', str(config), '--work-dir', str(work_dir), '--resume', '--cfg-options',
                     NON_DETERMINISTIC, SHUFFLED])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert (f'--resume: no checkpoint in {work_dir} (no last_checkpoint file there); training starts from scratch'
            in captured.out + captured.err)
    checkpoint = torch.load(work_dir / 'iter_1.pth', map_location='cpu', weights_only=False)
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == ('ring', 'star', 'triangle', 'square', 'circle')


def test_slurm_launcher_without_gpu(config, capsys):
    if torch.cuda.is_available():
        pytest.skip('only without CUDA')
    code, line, _ = run_main('train', [config, '--launcher', 'slurm'], capsys)
    assert code == 2
    assert line == ('error: --launcher slurm needs CUDA GPUs and none is visible; on CPU launch with torchrun '
                    '(bash tools/dist_train.sh CONFIG NPROC), which uses the gloo backend')


# The two cases below run the real CLI: what the user sees on the console, exit status and all.

def test_corrupt_image_stops_naming_the_file(tmp_path):
    data_root = make_data(tmp_path / 'shapes', num_train=4, num_val=2)
    coco = json.loads((data_root / 'annotations' / 'instances_train.json').read_text())
    corrupt = data_root / 'images' / 'train' / coco['images'][0]['file_name']
    corrupt.write_bytes(np.random.default_rng(1).bytes(2048))
    config = write_config(tmp_path / 'tiny.py', data_root, max_iters=2)
    result = run_tool([TRAIN, str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                       NON_DETERMINISTIC])
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: corrupt or unreadable image {corrupt}: it could not be decoded. Replace the file or remove its '
        f'entry from the annotation file (training stops instead of skipping it).')
    # ... and the traceback went to the log file for whoever debugs it.
    log_text = ''.join(p.read_text() for p in (tmp_path / 'work').glob('*/*.log'))
    assert 'Traceback' in log_text and 'failed to load image' in log_text


def test_nan_loss_stops_naming_the_iteration_before_saving(data_root, tmp_path):
    config = write_config(tmp_path / 'every_iter.py', data_root, max_iters=2, checkpoint_interval=1)
    work_dir = tmp_path / 'work'
    result = run_tool([TRAIN, str(config), '--work-dir', str(work_dir), '--cfg-options', NON_DETERMINISTIC,
                       'model.roi_head.bbox_head.loss_cls.loss_weight=nan'])
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr + result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith('error: loss is nan at iteration 1 (epoch 1); terms: ')
    assert 'loss_cls=nan' in line and 'images: ' in line and '.png' in line
    assert line.endswith('then --resume from the last checkpoint.')
    assert not list(work_dir.glob('*.pth')) and not logged_losses(work_dir)
