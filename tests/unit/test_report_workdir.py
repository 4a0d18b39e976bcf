"""Reading mmengine work dirs: runs, scalars on the iteration axis (resumed runs, epoch-based validation),
wall time, notes, and the one-line refusal of folders that are not work dirs."""
import json
from pathlib import Path

import pytest

from convnext_dense.errors import ReportError
from convnext_dense.report import workdir

CONFIG = '''
default_scope = 'mmdet'
train_cfg = dict(type='{loop}', {length}, val_interval=2)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
'''


def write_run(work_dir: Path, stamp: str, records, log_times=('2026/12/01 10:00:05', '2026/12/01 10:01:40'),
              loop: str = 'IterBasedTrainLoop', length: str = 'max_iters=6') -> Path:
    run = work_dir / stamp
    (run / 'vis_data').mkdir(parents=True)
    (run / 'vis_data' / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))
    (run / 'vis_data' / 'config.py').write_text(CONFIG.format(loop=loop, length=length))
    (run / f'{stamp}.log').write_text(''.join(f'{t} - mmengine - INFO - Iter(train)\n' for t in log_times))
    return run


def train(step, loss, **extra):
    return dict(lr=0.1, loss=loss, loss_cls=loss / 2, time=0.5, data_time=0.1, iter=step, step=step, **extra)


def test_resumed_run_overrides_the_iterations_it_logs_again(tmp_path):
    write_run(tmp_path, '20261201_100000', [train(1, 4.0), train(2, 3.0), {'coco/bbox_mAP': 0.1, 'step': 2},
                                            train(3, 2.5)])
    write_run(tmp_path, '20261201_110000', [train(3, 2.0), train(4, 1.0), {'coco/bbox_mAP': 0.3, 'step': 4}],
              log_times=('2026/12/01 11:00:01', '2026/12/01 11:00:50'))
    run = workdir.read_work_dir(tmp_path, 'a')
    assert run.train['loss'] == [(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]
    assert run.val == {'coco/bbox_mAP': [(2, 0.1), (4, 0.3)]}  # time / data_time of validations are not metrics
    assert run.last_iteration == 4
    assert run.train_wall_s == pytest.approx(100 + 50)  # each run: folder time stamp to its last log line
    assert run.config_file == tmp_path / '20261201_110000' / 'vis_data' / 'config.py'
    assert run.cfg.train_cfg.max_iters == 6
    assert run.notes == []


def test_epoch_based_validation_lands_on_the_iteration_axis(tmp_path):
    # 5 iterations per epoch: iteration 4 is in epoch 1, 7 and 10 in epoch 2.
    records = [train(4, 2.0, epoch=1), {'bbox_mAP': 0.2, 'step': 1}, train(7, 1.5, epoch=2), train(10, 1.0, epoch=2),
               {'bbox_mAP': 0.4, 'step': 2}]
    write_run(tmp_path, '20261201_100000', records, loop='EpochBasedTrainLoop', length='max_epochs=3')
    run = workdir.read_work_dir(tmp_path, 'a')
    assert run.epoch_length == 5
    assert run.val['bbox_mAP'] == [(5, 0.2), (10, 0.4)]


def test_epoch_length_is_the_smallest_that_every_record_allows():
    assert workdir.estimate_epoch_length([{'epoch': 1, 'iter': 50}, {'epoch': 2, 'iter': 117}]) == 59
    assert workdir.estimate_epoch_length([{'iter': 3}]) is None


def test_a_run_without_validation_gets_a_note(tmp_path):
    write_run(tmp_path, '20261201_100000', [train(1, 4.0), train(2, 3.0)])
    run = workdir.read_work_dir(tmp_path, 'a')
    assert run.val == {}
    assert run.notes == [f'{tmp_path}: no validation yet (train_cfg.val_interval is 2): no validation curves or '
                         f'metric deltas']


def test_a_damaged_last_line_is_the_one_being_written(tmp_path):
    run = write_run(tmp_path, '20261201_100000', [train(1, 4.0)])
    with open(run / 'vis_data' / 'scalars.json', 'a') as f:
        f.write('{"lr": 0.1, "lo')
    assert workdir.read_work_dir(tmp_path, 'a').train['loss'] == [(1, 4.0)]
    (run / 'vis_data' / 'scalars.json').write_text('{"lr": 0.1, "lo\n' + json.dumps(train(2, 1.0)) + '\n')
    with pytest.raises(ReportError, match=r'scalars.json line 1 is not JSON'):
        workdir.read_work_dir(tmp_path, 'a')


@pytest.mark.parametrize('kind', ['missing', 'file', 'empty'])
def test_a_folder_that_is_not_a_work_dir_is_one_line(tmp_path, kind):
    path = tmp_path / 'not_a_work_dir'
    if kind == 'file':
        path.write_text('x')
    elif kind == 'empty':
        (path / 'checkpoints').mkdir(parents=True)
    with pytest.raises(ReportError) as error:
        workdir.read_work_dir(path, 'a')
    message = str(error.value)
    assert str(path) in message and 'pass the --work-dir of a train run' in message and '\n' not in message


def test_labels_grow_until_they_differ(tmp_path):
    paths = [tmp_path / 'a' / 'det', tmp_path / 'b' / 'det', tmp_path / 'seg']
    assert workdir.unique_labels(paths) == ['a/det', 'b/det', f'{tmp_path.name}/seg']
    assert workdir.unique_labels(paths[2:]) == ['seg']
