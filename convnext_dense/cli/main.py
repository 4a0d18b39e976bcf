"""``convnext-dense SUBCOMMAND ARGS``: one entry point over the subcommand modules (also ``python -m convnext_dense``).

Every subcommand runs inside the one error boundary (:func:`convnext_dense.cli.errors.run_guarded`): a user
error becomes one ``error: ...`` line and the exit status its type has in ``EXIT_STATUS``, whichever
subcommand raised it. ``tools/*.py`` are shims over :func:`main`, so they run inside it too. Running a
subcommand installs our mmengine patches (:mod:`convnext_dense.runtime`). Each subcommand module is imported
only when it runs, so a subcommand whose optional dependencies are missing does not break the others.
"""
import difflib
import importlib
import sys
from typing import Dict, Optional, Sequence, Tuple

from convnext_dense import runtime
from convnext_dense.cli.errors import USAGE_ERROR, run_guarded
from convnext_dense.errors import MissingDependencyError
from convnext_dense.version import __version__

#: name -> (module with ``main(argv)``, one-line description).
SUBCOMMANDS: Dict[str, Tuple[str, str]] = {
    'train': ('convnext_dense.cli.train', 'train a detector or a segmentor from a config'),
    'test': ('convnext_dense.cli.test', 'evaluate a checkpoint (COCO mAP, mIoU)'),
    'infer': ('convnext_dense.cli.infer', 'predict on your images, folders, globs or a video'),
    'flops': ('convnext_dense.cli.flops', "params and FLOPs of a config, beside the paper's"),
    'report': ('convnext_dense.cli.report', 'one page of training curves, per-class results and errors'),
    'benchmark': ('convnext_dense.benchmark', 'speed and memory of the backbone and models'),
    'convert': ('convnext_dense.cli.convert', 'convert a checkpoint to our layout'),
    'export': ('convnext_dense.cli.export', 'export a model to ONNX'),
    'demo': ('convnext_dense.cli.demo', 'train and evaluate the synthetic shapes demo'),
    'make-shapes': ('convnext_dense.cli.make_shapes', 'write the synthetic shapes dataset'),
    'config-path': ('convnext_dense.cli.config_path', 'print where a shipped config lies (to inherit it)'),
    'env': ('convnext_dense.cli.env', 'print the software stack (for bug reports)'),
    'zoo': ('convnext_dense.cli.zoo', 'list the models: published results, trained weights'),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    rows = '\n'.join(f'  {name:<{width}}  {text}' for name, (_, text) in SUBCOMMANDS.items())
    return (f'usage: convnext-dense SUBCOMMAND [ARGS ...]   (convnext_dense {__version__})\n\n'
            f'ConvNeXt for COCO detection and ADE20K segmentation on mmdet / mmseg.\n\nsubcommands:\n{rows}\n\n'
            f'convnext-dense SUBCOMMAND --help shows its options. Config arguments take a path or a shipped '
            f'config name, e.g. det/mask_rcnn_convnext_t_3x.')


def load_subcommand(name: str):
    """Imports the module of subcommand ``name``.

    Raises:
        MissingDependencyError: The module, or a package it needs, is not installed.
    """
    module_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise MissingDependencyError(f'convnext-dense {name} is not part of this installation (no module '
                                         f'{module_name})') from error
        raise MissingDependencyError(f'convnext-dense {name} needs the Python package {error.name!r}; install it, '
                                     f'e.g. pip install "convnext_dense[all]"') from error


def run_subcommand(name: str, argv: Sequence[str]) -> Optional[int]:
    """Imports subcommand ``name`` and runs its ``main(argv)`` (raising what it raises)."""
    return load_subcommand(name).main(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``convnext-dense ARGV``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0 if argv else USAGE_ERROR
    if argv[0] in ('-V', '--version'):
        print(f'convnext_dense {__version__}')
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f'did you mean {close[0]}?' if close else f'choose one of {", ".join(SUBCOMMANDS)}'
        print(f'error: unknown subcommand {name!r}; {hint}', file=sys.stderr)
        return USAGE_ERROR
    runtime.install()
    sys.argv[0] = f'convnext-dense {name}'  # argparse's usage lines name the subcommand
    return run_guarded(lambda args: run_subcommand(name, args), argv[1:])


if __name__ == '__main__':
    sys.exit(main())
