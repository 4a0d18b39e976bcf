"""The package's exceptions: every error a user can cause derives from :class:`ConvNeXtDenseError`.

The command line prints any ``ConvNeXtDenseError`` as one ``error: ...`` line (its message names the file,
key or option and what fixes it) and shows a traceback for anything else, which is a bug. The exit status
follows the type, by one table (``convnext_dense.cli.errors.EXIT_STATUS``): 1 for a :class:`RunError` (the run
itself failed), 2 for every other error (something to change before running again). Each class also derives
from the built-in exception that describes it (``ValueError``, ``RuntimeError``, ...), so callers that catch
those keep working.
"""


class ConvNeXtDenseError(Exception):
    """Base of every user-facing error raised by ``convnext_dense``; the message is written for users."""


class ConfigError(ConvNeXtDenseError, ValueError):
    """A config value, constructor argument or command-line option that the toolkit cannot honour."""


class CheckpointError(ConvNeXtDenseError, RuntimeError):
    """A checkpoint file that cannot be read or is of no known layout."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model (shape mismatch, missing or foreign backbone keys)."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value or argument of the wrong kind (e.g. a model without the module a component needs)."""


class InputShapeError(ConvNeXtDenseError, ValueError):
    """A tensor the model cannot take (wrong rank, channels or size)."""


class CheckpointFormatError(CheckpointError, ValueError):
    """A checkpoint whose structure or key names match no supported layout."""


class CheckpointKeyError(CheckpointError, KeyError):
    """A key or prefix asked of a checkpoint that it does not hold."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class CheckpointAccessError(CheckpointError, PermissionError):
    """A checkpoint the user may not read yet: a gated or private Hub repository (the message says how)."""


class MissingDependencyError(ConvNeXtDenseError, ImportError):
    """An optional package that a feature needs is not installed; the message names the pip command."""


class UnknownCheckpointLayoutError(CheckpointFormatError):
    """A checkpoint whose keys match no known ConvNeXt layout (the message shows its first keys)."""


class DeployError(ConvNeXtDenseError, ValueError):
    """A model, option or input that ONNX export or the ONNX Runtime predictor cannot handle."""


class CliError(ConvNeXtDenseError, ValueError):
    """A command-line option, or a file or folder a config names, that cannot be used as given."""


class RunError(ConvNeXtDenseError):
    """A run that started and failed on what it met (e.g. a non-finite loss); exit status 1."""


class DownloadError(CheckpointError):
    """Released weights that could not be downloaded: the message names the URL, the reason (DNS, TLS, an HTTP
    status, a timeout, a connection closed mid-file, not a checkpoint) and the fallback.

    Args:
        message: The one-line message.
        url: The URL that was asked for (after the mirror rewrite).
        reason: Short machine-readable cause: ``'dns'``, ``'tls'``, ``'http'``, ``'timeout'``, ``'refused'``,
            ``'network'``, ``'incomplete'``, ``'not-a-checkpoint'`` or ``'hash'``.
    """

    def __init__(self, message: str, url: str = '', reason: str = '') -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class HashMismatchError(DownloadError):
    """A downloaded file whose SHA-256 is not the one its file name or the metafile gives; it is not kept."""


class ReportError(ConvNeXtDenseError, ValueError):
    """A work dir, results file or option that ``convnext-dense report`` cannot read or draw."""
