"""One-line errors for the command line: a known user mistake that only shows up while the run is built or
running becomes ``error: <what is wrong and what fixes it>`` on stderr.

Without this, an unknown arch, a corrupt image or a NaN loss surfaces as a 60-line traceback through
mmengine's Runner. The traceback is not lost: it is written to the run's log file
(``work_dir/<timestamp>/<timestamp>.log``) when one exists, and ``CONVNEXT_DENSE_DEBUG=1`` re-raises the
exception so that it is printed as usual. User errors are the package's
:class:`~convnext_dense.errors.ConvNeXtDenseError` (anywhere in the exception's chain), a corrupt image and a
malformed COCO annotation file; anything else is a bug and is re-raised with its traceback.

Exit status: 2 for usage errors found by the up-front checks (:class:`CliError`), 1 for errors found while
the run is built or running.
"""
import contextlib
import logging
import os
import re
import sys
from typing import Iterator, Optional

from convnext_dense.cli.checks import USAGE_ERROR, CliError
from convnext_dense.errors import ConvNeXtDenseError

#: Set to 1 to get the full traceback on the console instead of the one-line message.
DEBUG_ENV = 'CONVNEXT_DENSE_DEBUG'
#: Exit status of an error found while the run is built or running.
RUN_ERROR = 1

# mmcv's LoadImageFromFile: ``assert img is not None, f'failed to load image: {filename}'``; inside a
# DataLoader worker the message is embedded in the re-raised exception's text with the worker traceback.
_IMAGE_FAILURE = re.compile(r'failed to load image: (\S+)')
# mmcv 1.x-style registry wrapping ("class `ConvNeXt` in convnext_dense/models/convnext.py: ValueError: ...").
_REGISTRY_WRAP = re.compile(r'^class `\w+` in \S+?: (?:\w+: )?')


def _text(error: BaseException) -> str:
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


def describe(error: BaseException, cfg=None) -> Optional[str]:
    """Returns the one-line message for a known user error, or ``None`` for anything else (a bug).

    Args:
        error: The exception the run raised.
        cfg: The run's config, used to find which annotation file is malformed.
    """
    for cause in _chain(error):
        if isinstance(cause, ConvNeXtDenseError):
            return _text(cause)
        image = _IMAGE_FAILURE.search(str(cause))
        if image:
            return (f'corrupt or unreadable image {image.group(1)}: it could not be decoded. Replace the file '
                    f'or remove its entry from the annotation file (training stops instead of skipping it).')
    if cfg is not None and isinstance(error, (KeyError, AssertionError, TypeError, IndexError, ValueError)):
        # Malformed annotations fail deep inside pycocotools or the dataset's parser: name file and field.
        from convnext_dense.cli.run_checks import check_annotations
        try:
            check_annotations(cfg, ('train', 'val', 'test'), upfront=False)
        except CliError as problem:
            return str(problem)
    return None


def _log_traceback(error: BaseException) -> None:
    """Writes the traceback to the run's log file(s) only, so the console keeps the one line."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()  # the Runner's logger, or mmengine's default without a file
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, 'the run stopped with:', (),
                               (type(error), error, error.__traceback__))
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextlib.contextmanager
def one_line_errors(cfg=None) -> Iterator[None]:
    """Turns known user errors raised in the ``with`` body into ``error: ...`` and a non-zero exit.

    Args:
        cfg: The run's config (optional), used to name a malformed annotation file.
    """
    try:
        yield
    except CliError as error:
        print(f'error: {_text(error)}', file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except Exception as error:  # noqa: BLE001 - unknown errors are re-raised below
        message = None if os.environ.get(DEBUG_ENV) == '1' else describe(error, cfg)
        if message is None:
            raise
        try:
            _log_traceback(error)
        except Exception:  # noqa: BLE001 - the log is a convenience; never hide the message itself
            pass
        print(f'error: {message}', file=sys.stderr)
        sys.exit(RUN_ERROR)
