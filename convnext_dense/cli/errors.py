"""The command line's one error boundary: each exception type to its exit status and one line on stderr.

Subcommands only raise; :func:`run_guarded` (which :mod:`convnext_dense.cli.main` wraps around every
subcommand, and through it around every ``tools/*.py`` shim) turns a user error into
``error: <what is wrong and what fixes it>`` and an exit status from :data:`EXIT_STATUS`, so the same error
type exits with the same status from every subcommand. Without it, an unknown arch, a corrupt image or a
NaN loss would surface as a 60-line traceback through mmengine's Runner.

User errors are the package's :class:`~convnext_dense.errors.ConvNeXtDenseError` (anywhere in the exception's
chain: the DataLoader and mmengine's registry re-raise them), and two failures of other packages that the
data causes: an image mmcv cannot decode, and an annotation file mmdet's parser fails on (named by
re-checking the run's annotation files). Anything else is a bug and keeps its traceback. The traceback of a
user error is not lost: it goes to the run's log file (``work_dir/<timestamp>/<timestamp>.log``) when one
exists, and ``CONVNEXT_DENSE_DEBUG=1`` re-raises the exception so that it is printed as usual.
"""
import logging
import os
import re
import sys
from typing import Callable, Iterator, Optional, Sequence, Tuple, Type

from mmengine.config import Config
from mmengine.logging import MMLogger

from convnext_dense.cli.data_checks import check_annotations
from convnext_dense.errors import (CheckpointError, CliError, ConfigError, ConvNeXtDenseError, DeployError,
                                   InputShapeError, MissingDependencyError, RunError)

#: Set to 1 to get the full traceback on the console instead of the one-line message.
DEBUG_ENV = 'CONVNEXT_DENSE_DEBUG'
#: Exit status of an error to fix before running again (as argparse's usage errors).
USAGE_ERROR = 2
#: Exit status of a run that started and failed on what it met.
RUN_ERROR = 1

#: Exception type -> exit status; the first entry the error is an instance of decides (docs/robustness.md).
EXIT_STATUS: Tuple[Tuple[Type[BaseException], int], ...] = (
    (RunError, RUN_ERROR),                     # the run failed: a non-finite loss
    (CliError, USAGE_ERROR),                   # an option, or a data file or folder the config names
    (ConfigError, USAGE_ERROR),                # a config value or constructor argument (also ConfigTypeError)
    (CheckpointError, USAGE_ERROR),            # a checkpoint missing, unreadable, of no known layout, not fitting
    (InputShapeError, USAGE_ERROR),            # an input the model cannot take
    (DeployError, USAGE_ERROR),                # an option or model ONNX export cannot handle
    (MissingDependencyError, USAGE_ERROR),     # an optional package the command needs
    (ConvNeXtDenseError, USAGE_ERROR),         # any other user error of the package
)

# mmcv's LoadImageFromFile: ``assert img is not None, f'failed to load image: {filename}'``; inside a
# DataLoader worker the message is embedded in the re-raised exception's text with the worker traceback.
_IMAGE_FAILURE = re.compile(r'failed to load image: (\S+)')
# mmcv 1.x-style registry wrapping ("class `ConvNeXt` in convnext_dense/models/convnext.py: ValueError: ...").
_REGISTRY_WRAP = re.compile(r'^class `\w+` in \S+?: (?:\w+: )?')
# What a malformed annotation file raises inside mmdet's or pycocotools' parser.
_PARSER_FAILURES = (KeyError, AssertionError, TypeError, IndexError, ValueError)

_run_config: Optional[Config] = None


def set_run_config(cfg: Optional[Config]) -> None:
    """Tells the boundary the config of the run being built, to name its annotation files if they fail."""
    global _run_config
    _run_config = cfg


def exit_status(error: BaseException) -> int:
    """The exit status :data:`EXIT_STATUS` gives ``error``'s type (:data:`RUN_ERROR` for other types)."""
    return next((status for kind, status in EXIT_STATUS if isinstance(error, kind)), RUN_ERROR)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (KeyError's quotes removed, registry prefix dropped)."""
    text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    lines = [line.strip() for line in _REGISTRY_WRAP.sub('', text.strip()).splitlines() if line.strip()]
    folded = lines[0] if lines else type(error).__name__
    for line in lines[1:]:  # a sentence ends with its dot; other lines are joined like clauses
        folded += (' ' if folded.endswith('.') else '; ') + line
    return folded


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or while handling, outermost first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def describe(error: BaseException, cfg: Optional[Config] = None) -> Optional[Tuple[int, str]]:
    """``(exit status, one-line message)`` for a user error, or ``None`` for anything else (a bug).

    Args:
        error: The exception a subcommand raised.
        cfg: The run's config, used to find which annotation file is malformed.
    """
    for cause in _chain(error):
        if isinstance(cause, ConvNeXtDenseError):
            return exit_status(cause), one_line(cause)
        image = _IMAGE_FAILURE.search(str(cause))
        if image:
            return RUN_ERROR, (f'corrupt or unreadable image {image.group(1)}: it could not be decoded. Replace '
                               f'the file or remove its entry from the annotation file (training stops instead of '
                               f'skipping it).')
    if cfg is not None and isinstance(error, _PARSER_FAILURES):
        try:
            check_annotations(cfg, ('train', 'val', 'test'), upfront=False)
        except CliError as problem:
            return RUN_ERROR, one_line(problem)
    return None


def _log_traceback(error: BaseException) -> None:
    """Writes the traceback to the run's log file(s) only, so the console keeps the one line."""
    logger = MMLogger.get_current_instance()  # the Runner's logger, or mmengine's default without a file
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, 'the run stopped with:', (),
                               (type(error), error, error.__traceback__))
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def run_guarded(main: Callable[[Sequence[str]], Optional[int]], argv: Sequence[str]) -> int:
    """Runs a subcommand's ``main(argv)``; a user error it raises becomes one line and its exit status.

    Args:
        main: The subcommand's entry point.
        argv: Its arguments.

    Returns:
        The subcommand's own status, or the status :data:`EXIT_STATUS` gives the error it raised.
    """
    set_run_config(None)
    try:
        return int(main(list(argv)) or 0)
    except Exception as error:  # noqa: BLE001 - anything not recognised is re-raised below
        found = None if os.environ.get(DEBUG_ENV) == '1' else describe(error, _run_config)
        if found is None:
            raise
        try:
            _log_traceback(error)
        except Exception:  # noqa: BLE001 - the log is a convenience; never hide the message itself
            pass
        status, message = found
        print(f'error: {message}', file=sys.stderr)
        return status
    finally:
        set_run_config(None)
