"""Crash safety: a training run killed with SIGKILL resumes with ``--resume`` at its last saved
iteration and then logs exactly the losses of an uninterrupted run; a kill in the middle of a save never
leaves a truncated checkpoint that resume or test would pick.

The shapes config of :mod:`shapes_run` draws no random numbers after the model's initialisation (no flip,
RoI sampling takes every candidate), which is what makes the losses after a resume repeat exactly:
mmengine restores weights, optimizer, schedulers and the data position, but not the RNG state.
"""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from convnext_dense import runtime  # noqa: F401  (the in-process resume below loads a training checkpoint)
from convnext_dense.io import safe_torch_load
from shapes_run import REPO_ROOT, TRAIN, check_ok, logged_losses, make_data, run_tool, tool_env, write_config

MAX_ITERS = 6


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('crash')
    data_root = make_data(root / 'shapes', num_train=8, num_val=2)
    config = write_config(root / 'tiny.py', data_root, max_iters=MAX_ITERS, checkpoint_interval=2)
    return root, config


@pytest.fixture(scope='module')
def uninterrupted(setup):
    """Losses of a run straight to MAX_ITERS, and its work dir."""
    root, config = setup
    work_dir = root / 'straight'
    check_ok(run_tool([TRAIN, str(config), '--work-dir', str(work_dir)]))
    losses = logged_losses(work_dir)
    assert sorted(losses) == list(range(1, MAX_ITERS + 1))
    return losses, work_dir


def kill_after_first_checkpoint(config: Path, work_dir: Path) -> None:
    """Starts a (longer) training run and SIGKILLs it as soon as ``last_checkpoint`` exists."""
    process = subprocess.Popen([sys.executable, TRAIN, str(config), '--work-dir', str(work_dir), '--cfg-options',
                                'train_cfg.max_iters=1000'], cwd=REPO_ROOT, env=tool_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (work_dir / 'last_checkpoint').exists():
            assert process.poll() is None, 'training ended before its first checkpoint'
            assert time.monotonic() < deadline, 'no checkpoint within 300 s'
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_then_resume_continues_with_identical_losses(setup, uninterrupted):
    root, config = setup
    straight, _ = uninterrupted
    work_dir = root / 'killed'
    kill_after_first_checkpoint(config, work_dir)
    saved = Path((work_dir / 'last_checkpoint').read_text().strip())
    saved_iter = int(saved.stem.split('_')[1])
    assert 2 <= saved_iter < MAX_ITERS and saved.is_file()

    output = check_ok(run_tool([TRAIN, str(config), '--work-dir', str(work_dir), '--resume']))
    assert f'resumed epoch: 0, iter: {saved_iter}' in output
    resumed = {i: loss for i, loss in logged_losses(work_dir).items() if i > saved_iter}
    assert sorted(resumed) == list(range(saved_iter + 1, MAX_ITERS + 1))
    for iteration, loss in resumed.items():
        assert loss == pytest.approx(straight[iteration], rel=1e-6, abs=1e-7), iteration
    assert safe_torch_load(str(work_dir / f'iter_{MAX_ITERS}.pth'))['meta']['iter'] == MAX_ITERS


def test_completed_run_leaves_no_temporary_files(uninterrupted):
    _, work_dir = uninterrupted
    assert not [p for p in work_dir.rglob('*') if p.name.endswith('.tmp')]
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']
    for checkpoint in work_dir.glob('*.pth'):
        assert safe_torch_load(str(checkpoint))['meta']['iter'] == int(checkpoint.stem.split('_')[1])


# A toy mmengine run whose process SIGKILLs itself inside the save of iter_4.pth: after the bytes were
# written to the temporary file, just before the rename that publishes them.
KILL_DURING_SAVE = textwrap.dedent('''
    import os, signal
    import convnext_dense.runtime  # noqa: F401  (installs the atomic file backend)
    from toy_runner import toy_runner

    real_replace = os.replace

    def replace_then_die(src, dst):
        if str(dst).endswith('iter_4.pth'):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = replace_then_die
    toy_runner({work_dir!r}, max_iters=6).train()
''')


def test_kill_during_a_save_leaves_the_previous_checkpoint_in_charge(tmp_path):
    work_dir = tmp_path / 'toy'
    script = KILL_DURING_SAVE.format(work_dir=str(work_dir))
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=tool_env(Path(__file__).parents[1]),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]

    assert not (work_dir / 'iter_4.pth').exists()  # never a truncated file under the real name
    leftovers = [p.name for p in work_dir.iterdir() if p.name.endswith('.tmp')]
    assert len(leftovers) == 1 and leftovers[0].startswith('.iter_4.pth.')  # hidden; nothing picks it
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    assert safe_torch_load(str(work_dir / 'iter_2.pth'))['meta']['iter'] == 2

    from toy_runner import toy_runner
    resumed = toy_runner(work_dir, max_iters=6, resume=True)
    resumed.train()
    assert resumed.iter == 6 and (work_dir / 'iter_4.pth').is_file()
    assert not [p.name for p in work_dir.iterdir() if p.name.endswith('.tmp')]  # the next save removed it


def test_resume_through_the_cli_removes_a_temporary_file_left_by_a_kill(setup, uninterrupted, tmp_path):
    root, config = setup
    work_dir = tmp_path / 'work'
    shutil.copytree(uninterrupted[1], work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_6.pth'))
    leftover = work_dir / '.iter_8.pth.k2j8s1x0.tmp'
    leftover.write_bytes(b'half a checkpoint')
    check_ok(run_tool([TRAIN, str(config), '--work-dir', str(work_dir), '--resume']))  # already at max_iters
    assert not leftover.exists()
    assert (work_dir / 'iter_6.pth').is_file()
