"""How the commands that take a model (``infer``, ``test``, ``export``, ``convert``) name it: a model name of the
zoo or a config with a checkpoint file or URL, resolved by :func:`convnext_dense.zoo.resolve`, and the
``--weights-mirror`` option, which means what ``$CONVNEXT_DENSE_WEIGHTS_MIRROR`` means.

    convnext-dense test cascade_convnext_t_3x                   # config + released weights, downloaded once
    convnext-dense test det/cascade_convnext_t_3x my_run.pth    # a config + a local file or a URL
"""
import argparse
from typing import Dict, Optional

from convnext_dense import zoo
from convnext_dense.errors import CliError

#: Suffixes of checkpoint files, to tell ``infer NAME weights.pth photo.jpg`` from ``infer NAME photo.jpg``.
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin', '.safetensors', '.pkl')


def add_weights_mirror_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--weights-mirror URL``."""
    parser.add_argument('--weights-mirror', metavar='URL',
                        help='download released weights from this host or folder instead (BASE_URL, HOST=BASE_URL '
                             'or a folder; as $CONVNEXT_DENSE_WEIGHTS_MIRROR, which it overrides)')


def is_checkpoint_source(text: str) -> bool:
    """Whether a positional argument names weights (a URL or a checkpoint file) rather than an input image."""
    return '://' in str(text) or str(text).lower().endswith(CHECKPOINT_SUFFIXES)


def resolve_model(model: str, checkpoint: Optional[str], mirror: Optional[str],
                  argument: str = 'CHECKPOINT') -> zoo.ResolvedModel:
    """The config and local checkpoint of a command's model arguments; weights are required.

    Args:
        model: A model name, or a config path or name.
        checkpoint: The checkpoint argument (path or URL), None when not given.
        mirror: ``--weights-mirror``.
        argument: The checkpoint argument's name, for the message.

    Raises:
        CliError: A config without a checkpoint.
    """
    resolved = zoo.resolve(model, checkpoint, mirror=mirror)
    if resolved.checkpoint is None:
        raise CliError(f'{argument} missing: {model} is a config; give the checkpoint (a file or URL) after it, or '
                       f'a model name with released weights (list them with: convnext-dense zoo)')
    return resolved


def weights_of(source: str, mirror: Optional[str]) -> str:
    """A local checkpoint for ``source``: a model name's released file, a URL's download, or the path itself."""
    if zoo.is_model_name(source):
        return zoo.resolve(source, mirror=mirror).checkpoint
    return zoo.resolve_weights(source, mirror=mirror)


def print_published(metrics: Dict[str, float], resolved: zoo.ResolvedModel) -> None:
    """Prints the measured metrics beside the numbers the released file was published with (rank 0 only)."""
    from mmengine.dist import is_main_process
    if resolved.released is None or not is_main_process():
        return
    lines = zoo.beside_published(metrics or {}, resolved.released)
    if lines:
        print(f'{resolved.name}, measured beside published ({resolved.released.source}):')
        for line in lines:
            print(f'  {line}')
