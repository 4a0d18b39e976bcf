"""The package's exceptions: every error a user can cause derives from :class:`ConvNeXtDenseError`.

The command line prints any ``ConvNeXtDenseError`` as one ``error: ...`` line (its message names the file,
key or option and what fixes it) and shows a traceback for anything else, which is a bug. Each class also
derives from the built-in exception that describes it (``ValueError``, ``RuntimeError``, ...), so callers
that catch those keep working.
"""


class ConvNeXtDenseError(Exception):
    """Base of every user-facing error raised by ``convnext_dense``; the message is written for users."""


class ConfigError(ConvNeXtDenseError, ValueError):
    """A config value, constructor argument or command-line option that the toolkit cannot honour."""


class CheckpointError(ConvNeXtDenseError, RuntimeError):
    """A checkpoint file that cannot be read or is of no known layout."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model (shape mismatch, missing or foreign backbone keys)."""


class DeployError(ConvNeXtDenseError, ValueError):
    """A model, option or input that ONNX export or the ONNX Runtime predictor cannot handle."""
