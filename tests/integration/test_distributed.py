"""PyTorch DDP as users launch it: ``tools/dist_train.sh`` (torchrun) with 2 CPU processes and the
gloo backend trains the shapes detector; the losses match a 1-process run on the same images; both ranks
hold the same weights after every step; only rank 0 writes logs and checkpoints; and the checkpoint is
tested by a plain 1-process ``tools/test.py``.

Loss comparison, and why it has a tolerance: rank r of 2 processes x 1 image gets images r, r+2, ... (the
InfiniteSampler shards by rank), so iteration i sees the same two images as iteration i of 1 process x 2
images. The config draws no random numbers after initialisation (no flip, RoI sampling takes every
candidate, drop path 0) and both runs start from the same seed-0 weights, so at iteration 1 the only
difference is mmdet's loss normalisation: a batch divides each loss by the *batch's* number of samples
(anchors, RoIs, positive masks), while DDP averages the per-image means. Measured: 0.66% apart at iteration
1, hence ``FIRST_ITER_RTOL`` = 1%; the two ranks' own losses are 11% apart, so a rank that trained on the
wrong image would fail. Later iterations are not compared closely: the slightly different gradients change
which proposals survive top-k and NMS, a discontinuous step (measured 0.9% and 4.8% apart at iterations 2
and 3). Gradient averaging itself is checked exactly: both ranks hold bit-identical weights after every step.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from convnext_dense.io import safe_torch_load
from shapes_run import REPO_ROOT, TEST, TRAIN, check_ok, make_data, run_tool, tool_env, write_config

import mmdet  # noqa: F401  (a missing mmdet must fail the suite, not skip it)

MAX_ITERS = 3
FIRST_ITER_RTOL = 1e-2

# Every rank appends its own loss per iteration to its own file outside the work dir (rank 0's log only
# holds rank 0's loss).
RECORDER = '''
import json
import os

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankLossRecorder(Hook):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        paths = [sample.img_path for sample in data_batch['data_samples']]
        weights = sum(float(p.detach().double().sum()) for p in runner.model.parameters())
        record = dict(iter=runner.iter + 1, loss=float(outputs['loss']), images=paths, weights=weights)
        with open(os.path.join(self.out_dir, f'rank{get_rank()}.jsonl'), 'a') as handle:
            handle.write(json.dumps(record) + '\\n')
'''
RECORDER_CONFIG = '''
custom_imports = dict(imports=['convnext_dense', 'rank_loss_recorder'], allow_failed_imports=False)
custom_hooks = [dict(type='convnext_dense.FiniteLossHook'), dict(type='RankLossRecorder', out_dir={out_dir!r})]
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def read_records(out_dir: Path, rank: int):
    lines = (out_dir / f'rank{rank}.jsonl').read_text().splitlines()
    return {record['iter']: record for record in map(json.loads, lines)}


def make_config(root: Path, name: str, data_root: Path, batch_size: int) -> Path:
    out_dir = root / f'{name}_losses'
    out_dir.mkdir()
    return write_config(root / f'{name}.py', data_root, max_iters=MAX_ITERS, batch_size=batch_size,
                        checkpoint_interval=MAX_ITERS, extra=RECORDER_CONFIG.format(out_dir=str(out_dir)))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Trains 2 processes x 1 image with tools/dist_train.sh and 1 process x 2 images."""
    root = tmp_path_factory.mktemp('ddp')
    data_root = make_data(root / 'shapes', num_train=8, num_val=2)
    (root / 'rank_loss_recorder.py').write_text(RECORDER)
    env = tool_env(extra_path=root)
    env.update(PORT=str(free_port()), PATH=os.pathsep.join([os.path.dirname(sys.executable), env['PATH']]))

    ddp_config = make_config(root, 'ddp', data_root, batch_size=1)
    ddp = subprocess.run(['bash', str(REPO_ROOT / 'tools' / 'dist_train.sh'), str(ddp_config), '2',
                          '--work-dir', str(root / 'ddp_work')], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    check_ok(ddp)
    single_config = make_config(root, 'single', data_root, batch_size=2)
    check_ok(run_tool([TRAIN, str(single_config), '--work-dir', str(root / 'single_work')], env=env))
    return root, ddp.stdout + ddp.stderr


def test_both_ranks_finish_on_their_own_images(runs):
    root, _ = runs
    rank0, rank1 = read_records(root / 'ddp_losses', 0), read_records(root / 'ddp_losses', 1)
    assert sorted(rank0) == sorted(rank1) == list(range(1, MAX_ITERS + 1))
    single = read_records(root / 'single_losses', 0)
    for i in range(1, MAX_ITERS + 1):
        assert single[i]['images'] == rank0[i]['images'] + rank1[i]['images']


def test_losses_of_2x1_equal_1x2(runs):
    root, _ = runs
    rank0, rank1 = read_records(root / 'ddp_losses', 0), read_records(root / 'ddp_losses', 1)
    single = read_records(root / 'single_losses', 0)
    ddp_mean = {i: (rank0[i]['loss'] + rank1[i]['loss']) / 2 for i in rank0}
    assert ddp_mean[1] == pytest.approx(single[1]['loss'], rel=FIRST_ITER_RTOL)
    for i in range(2, MAX_ITERS + 1):  # same images, slowly diverging weights: same ballpark only
        assert ddp_mean[i] == pytest.approx(single[i]['loss'], rel=0.15), i
    # Meaningful only if one image's loss alone would miss: with the ranks' losses more than 2 tolerances
    # apart, each lies more than one tolerance from their mean (which matched the 2-image run).
    assert abs(rank0[1]['loss'] - rank1[1]['loss']) > 2 * FIRST_ITER_RTOL * single[1]['loss']


def test_ranks_hold_identical_weights_after_every_step(runs):
    """DDP all-reduces the gradients: ranks that saw different images still take the very same step."""
    root, _ = runs
    rank0, rank1 = read_records(root / 'ddp_losses', 0), read_records(root / 'ddp_losses', 1)
    for i in range(1, MAX_ITERS + 1):
        assert rank0[i]['weights'] == rank1[i]['weights'], i
    assert rank0[1]['weights'] != rank0[MAX_ITERS]['weights']  # the weights did move


def test_only_rank0_writes_logs_and_checkpoints(runs):
    root, output = runs
    work_dir = root / 'ddp_work'
    timestamps = [p for p in work_dir.iterdir() if p.is_dir()]
    assert len(timestamps) == 1
    files = sorted(str(p.relative_to(work_dir)) for p in work_dir.rglob('*') if p.is_file())
    ts = timestamps[0].name
    assert files == sorted([f'{ts}/{ts}.log', f'{ts}/vis_data/{ts}.json', f'{ts}/vis_data/config.py',
                            f'{ts}/vis_data/scalars.json', 'ddp.py', f'iter_{MAX_ITERS}.pth', 'last_checkpoint'])
    log = (timestamps[0] / f'{ts}.log').read_text()
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert "'backend': 'gloo'" in log  # the CPU path of convnext_dense/cli/runner.py


def logged_metrics(work_dir: Path) -> dict:
    """The metrics a test run logged to ``work_dir/<timestamp>/<timestamp>.json``."""
    runs = sorted(work_dir.glob('*/[0-9]*.json'))
    assert runs, f'no metrics under {work_dir}'
    return json.loads(runs[-1].read_text())


def test_two_process_test_gives_the_metrics_of_one(runs):
    """``tools/dist_test.sh`` with 2 CPU processes: each rank evaluates its half, the results are gathered,
    and COCO mAP is that of a plain 1-process ``tools/test.py`` of the same checkpoint (which loads it: DDP
    saved it without its wrapper)."""
    root, _ = runs
    checkpoint = root / 'ddp_work' / f'iter_{MAX_ITERS}.pth'
    state_dict = safe_torch_load(str(checkpoint))['state_dict']
    assert not any(key.startswith('module.') for key in state_dict)  # saved without the DDP wrapper
    config = root / 'single.py'
    env = tool_env(extra_path=root)
    env.update(PORT=str(free_port()), PATH=os.pathsep.join([os.path.dirname(sys.executable), env['PATH']]))
    ddp = subprocess.run(['bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), str(config), str(checkpoint), '2',
                          '--work-dir', str(root / 'ddp_test')], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    output = check_ok(ddp)
    assert 'Distributed launcher: pytorch' in output or "'backend': 'gloo'" in output
    single = check_ok(run_tool([TEST, str(config), str(checkpoint), '--work-dir', str(root / 'single_test')],
                               env=env))
    assert 'coco/bbox_mAP:' in single and 'coco/segm_mAP:' in single
    two, one = logged_metrics(root / 'ddp_test'), logged_metrics(root / 'single_test')
    keys = [key for key in one if key.startswith('coco/')]
    assert 'coco/bbox_mAP' in keys and 'coco/segm_mAP' in keys
    assert {key: two[key] for key in keys} == pytest.approx({key: one[key] for key in keys}, abs=1e-6)
