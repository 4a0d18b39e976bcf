"""The command line's one error boundary: exit status by exception type, one line, the traceback where it
belongs (convnext_dense/cli/errors.py)."""
import logging
import re
from pathlib import Path

import pytest
from mmengine.logging import MMLogger

from convnext_dense import errors
from convnext_dense.cli import errors as boundary
from convnext_dense.engine import NonFiniteLossError

ROBUSTNESS = Path(__file__).resolve().parents[2] / 'docs' / 'robustness.md'


def raising(error: BaseException):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize('error, status', [
    (errors.ConfigError('x'), 2), (errors.ConfigTypeError('x'), 2), (errors.CliError('x'), 2),
    (errors.CheckpointNotFoundError('x'), 2), (errors.CheckpointMismatchError('x'), 2),
    (errors.CheckpointAccessError('x'), 2),
    (errors.UnknownCheckpointLayoutError('x'), 2), (errors.InputShapeError('x'), 2), (errors.DeployError('x'), 2),
    (errors.MissingDependencyError('x'), 2), (errors.RunError('x'), 1), (NonFiniteLossError('x'), 1),
])
def test_exit_status_follows_the_type(error, status, capsys):
    assert boundary.run_guarded(raising(error), []) == status
    assert capsys.readouterr().err == 'error: x\n'


def test_the_table_in_the_docs_is_the_one_in_the_code():
    text = ROBUSTNESS.read_text(encoding='utf-8')
    table = text[text.index('| error type'):].split('\n\n')[0]
    documented = {name: int(status) for name, status in re.findall(r'^\| `(\w+)` \|[^|]*\| (\d) \|$', table, re.M)}
    assert documented == {kind.__name__: status for kind, status in boundary.EXIT_STATUS}


def test_an_error_inside_another_is_found_and_folded_to_one_line(capsys):
    try:
        try:
            raise errors.ConfigError('ConvNeXt: unknown arch.\n  Pick another')
        except errors.ConfigError as inner:
            raise RuntimeError('DataLoader worker failed') from inner
    except RuntimeError as outer:
        error = outer
    assert boundary.run_guarded(raising(error), []) == 2
    assert capsys.readouterr().err == 'error: ConvNeXt: unknown arch. Pick another\n'


def test_an_undecodable_image_is_a_run_error():
    status, message = boundary.describe(AssertionError('failed to load image: data/x.png'))
    assert status == 1 and message.startswith('corrupt or unreadable image data/x.png: it could not be decoded.')


def test_a_bug_keeps_its_traceback_and_debug_shows_every_traceback(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        boundary.run_guarded(raising(ZeroDivisionError('bug')), [])
    monkeypatch.setenv(boundary.DEBUG_ENV, '1')
    with pytest.raises(errors.ConfigError):
        boundary.run_guarded(raising(errors.ConfigError('x')), [])


def test_the_traceback_goes_to_the_run_log_file_only(tmp_path, capsys):
    log_file = tmp_path / 'run.log'
    MMLogger.get_instance('run', log_file=str(log_file))
    assert boundary.run_guarded(raising(errors.RunError('loss is nan')), []) == 1
    for handler in MMLogger.get_current_instance().handlers:
        handler.flush()
    assert capsys.readouterr().err.strip() == 'error: loss is nan'
    logged = log_file.read_text()
    assert 'the run stopped with:' in logged and 'Traceback' in logged and 'RunError: loss is nan' in logged
    for handler in list(MMLogger.get_current_instance().handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()


def test_a_subcommand_status_passes_through():
    assert boundary.run_guarded(lambda argv: len(argv), ['a', 'b', 'c']) == 3
    assert boundary.run_guarded(lambda argv: None, []) == 0
