"""Every subcommand exits with the status its error's type has (docs/robustness.md), after one line naming
the problem: a representative bad input per error type and subcommand, through ``convnext-dense`` as users
run it (in this process; the demo's failing child run in a subprocess)."""
from pathlib import Path

import pytest
import torch

from convnext_dense.cli.main import main as cli_main
from convnext_dense.models import ConvNeXt

DEMO_DET = 'demo/mask_rcnn_convnext_shapes'


def run(argv, capsys):
    """``convnext-dense ARGV``: (exit status, last stderr line)."""
    try:
        status = cli_main([str(arg) for arg in argv])
    except SystemExit as exited:  # argparse's usage errors
        status = exited.code
    err = capsys.readouterr().err.strip()
    assert 'Traceback' not in err
    return status, err.splitlines()[-1] if err else ''


@pytest.fixture(scope='module')
def atto_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('exit_status') / 'atto.pth'
    torch.save({'state_dict': ConvNeXt('atto').state_dict()}, path)
    return path


def cases(tmp: Path, atto: Path):
    """(subcommand arguments, exit status, start of the error line)."""
    missing = tmp / 'missing.pth'
    return [
        # argparse's usage errors (every subcommand parses its arguments with argparse)
        (['train'], 2, 'convnext-dense train: error: the following arguments are required: config'),
        (['benchmark', 'nonsense'], 2, 'convnext-dense benchmark: error: argument command: invalid choice'),
        (['make-shapes'], 2, 'convnext-dense make-shapes: error: the following arguments are required: --out'),
        (['env', '--nonsense'], 2, 'convnext-dense env: error: unrecognized arguments: --nonsense'),
        (['demo', '--threads', '0'], 2, "convnext-dense demo: error: argument --threads: must be at least 1"),
        (['export', DEMO_DET], 2, 'convnext-dense export: error: the following arguments are required'),
        # ConfigError
        (['train', tmp / 'nope.py'], 2, f'error: config {tmp / "nope.py"} not found'),
        (['test', DEMO_DET + 'x', atto], 2, f'error: config {DEMO_DET}x not found'),
        (['flops', 'det/nope'], 2, 'error: config det/nope not found'),
        (['config-path', 'det/nope'], 2, 'error: config det/nope not found'),
        (['infer', DEMO_DET, atto, tmp / 'nope.png'], 2, f'error: input {tmp / "nope.png"} not found'),
        # CheckpointError
        (['test', DEMO_DET, missing], 2, f'error: checkpoint {missing} (CHECKPOINT) not found'),
        (['train', DEMO_DET, '--resume', missing], 2, f'error: checkpoint {missing} (--resume) not found'),
        (['infer', DEMO_DET, tmp, atto], 2, f'error: checkpoint {tmp} is a folder'),
        (['convert', missing, tmp / 'out.pth'], 2, f'error: checkpoint {missing} (SRC) not found'),
        (['convert', atto, tmp / 'out.pth', '--arch', 'tiny'], 2, f'error: checkpoint {atto} (SRC) does not fit --arch'),
        # CliError
        (['convert', atto, atto], 2, f'error: DST {atto} is the source file'),
        (['train', DEMO_DET], 2, 'error: data root data/shapes/ not found'),
        (['test', DEMO_DET, atto, '--out', tmp / 'preds.json'], 2, f'error: --out {tmp / "preds.json"}: detection'),
        # MissingDependencyError: a subcommand whose module cannot be imported (see test_cli_main.py)
    ]


def test_each_subcommand_exits_by_error_type(atto_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.chdir(tmp_path)  # relative data roots of the demo configs point nowhere
    for argv, status, line in cases(tmp_path, atto_checkpoint):
        got_status, got_line = run(argv, capsys)
        assert (got_status, got_line[:len(line)]) == (status, line), argv


def test_a_failed_run_of_the_demo_is_a_run_error(tmp_path, capsys):
    """RunError: the demo's training child fails (its data has no images), so the demo stops with status 1."""
    data = tmp_path / 'shapes'
    (data / 'annotations').mkdir(parents=True)
    (data / 'annotations' / 'instances_val.json').write_text('{}')
    (data / 'labels' / 'val').mkdir(parents=True)
    status, line = run(['demo', '--data', data, '--out', tmp_path / 'out', '--tasks', 'seg', '--threads', '1'],
                       capsys)
    assert status == 1
    assert line.startswith('error: seg train failed (exit status 2): ') and line.endswith('seg_train.log')
