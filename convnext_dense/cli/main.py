"""``convnext-dense SUBCOMMAND ARGS``: one entry point over the subcommand modules (also ``python -m convnext_dense``).

Each subcommand is imported only when it runs, so ``convnext-dense --help`` is instant and a subcommand whose
optional dependencies are missing does not break the others.
"""
import difflib
import importlib
import sys
from typing import Dict, Optional, Sequence, Tuple

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
}
USAGE_ERROR = 2


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    rows = '\n'.join(f'  {name:<{width}}  {text}' for name, (_, text) in SUBCOMMANDS.items())
    return (f'usage: convnext-dense SUBCOMMAND [ARGS ...]   (convnext_dense {__version__})\n\n'
            f'ConvNeXt for COCO detection and ADE20K segmentation on mmdet / mmseg.\n\nsubcommands:\n{rows}\n\n'
            f'convnext-dense SUBCOMMAND --help shows its options. Config arguments take a path or a shipped '
            f'config name, e.g. det/mask_rcnn_convnext_t_3x.')


def load_subcommand(name: str):
    """Imports the module of subcommand ``name``; returns it, or None after printing why it is unavailable."""
    module_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            print(f'error: convnext-dense {name} is not part of this installation (no module {module_name})',
                  file=sys.stderr)
        else:
            print(f'error: convnext-dense {name} needs the Python package {error.name!r}; install it, e.g. '
                  f'pip install "convnext_dense[all]"', file=sys.stderr)
        return None


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
    module = load_subcommand(name)
    if module is None:
        return USAGE_ERROR
    sys.argv[0] = f'convnext-dense {name}'  # argparse's usage lines name the subcommand
    status = module.main(argv[1:])
    return int(status or 0)


if __name__ == '__main__':
    sys.exit(main())
