"""Up-front checks of ``train`` and ``test``: one-line errors instead of tracebacks.

A missing config, checkpoint or dataset otherwise surfaces deep inside mmengine's Runner, minutes later on
a cluster and as a long traceback. These checks run on the config alone (mmdet or mmseg datasets alike)
before the runner is built and before mmdet or mmseg are imported.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config

from convnext_dense.config_paths import load_config
from convnext_dense.errors import ConvNeXtDenseError

#: Exit status of a usage error, as argparse uses.
USAGE_ERROR = 2

REMOTE_PREFIXES = ('http://', 'https://', 's3://', 'petrel://', 'oss://', 'ftp://')
# data_prefix keys of mmdet (img, seg) and mmseg (img_path, seg_map_path) datasets that must be folders.
PREFIX_KEYS = ('img', 'img_path', 'seg', 'seg_map_path')


class CliError(ConvNeXtDenseError):
    """A problem the user fixes from the command line; the message is printed as one line."""


def fail(error: CliError) -> None:
    """Prints ``error: <message>`` to stderr and exits with :data:`USAGE_ERROR`."""
    print(f'error: {error}', file=sys.stderr)
    sys.exit(USAGE_ERROR)


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL or an object-store path that is not checked locally."""
    return str(path).startswith(REMOTE_PREFIXES)


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--launcher`` and ``--local-rank`` (torch >= 2.0's launcher passes the latter)."""
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launcher_args(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> argparse.Namespace:
    """Parses ``argv`` and exports ``--local-rank`` as ``LOCAL_RANK`` unless the launcher already set it.

    Args:
        parser: A parser that went through :func:`add_launcher_arguments`.
        argv: Command-line arguments, or None for ``sys.argv[1:]``.
    """
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def read_config(args) -> Config:
    """Reads ``args.config`` and applies ``--launcher``, ``--cfg-options`` and ``--work-dir`` as mmdet's tools do.

    Args:
        args: Parsed arguments of ``train`` or ``test``; ``args.config`` is a path or a config name.
    """
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir priority: CLI > config > config file name.
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(cfg.filename or args.config))[0])
    return cfg


def check_checkpoint(path: str, option: str) -> None:
    """Raises :class:`CliError` if a local checkpoint ``path`` given with ``option`` is not a file."""
    if is_remote(path) or osp.isfile(path):
        return
    if osp.isdir(path):
        pointer = osp.join(path, 'last_checkpoint')
        latest = open(pointer).read().strip() if osp.isfile(pointer) else None
        example = latest or osp.join(path, 'epoch_36.pth')
        raise CliError(f'checkpoint {path} ({option}) is a folder; pass a .pth file in it, e.g. {example}')
    raise CliError(f'checkpoint {path} ({option}) not found; pass an existing .pth file or URL')


def _datasets(dataset_cfg: dict, key: str) -> Iterator[Tuple[dict, str]]:
    """Yields ``(leaf dataset config, its config key)``, looking inside wrappers (Repeat, Concat, ...)."""
    if 'datasets' in dataset_cfg:
        for i, child in enumerate(dataset_cfg['datasets']):
            yield from _datasets(child, f'{key}.datasets.{i}')
    elif 'dataset' in dataset_cfg:
        yield from _datasets(dataset_cfg['dataset'], f'{key}.dataset')
    else:
        yield dataset_cfg, key


def _join(data_root: str, path: str) -> str:
    return path if not data_root or osp.isabs(path) or is_remote(path) else osp.join(data_root, path)


def _expected_paths(dataset_cfg: dict) -> List[Tuple[str, str, bool]]:
    """``(path, config key suffix, is_folder)`` of the annotation file and image / label folders."""
    data_root = dataset_cfg.get('data_root') or ''
    expected = []
    if dataset_cfg.get('ann_file'):
        expected.append((_join(data_root, dataset_cfg['ann_file']), 'ann_file', False))
    prefixes = dataset_cfg.get('data_prefix') or {}
    for name in PREFIX_KEYS:
        if prefixes.get(name):
            expected.append((_join(data_root, prefixes[name]), f'data_prefix.{name}', True))
    return expected


def _layout_name(dataset_type: str) -> str:
    for known in ('Coco', 'ADE'):
        if known.lower() in dataset_type.lower():
            return {'Coco': 'COCO layout', 'ADE': 'ADE20K layout'}[known]
    return f'{dataset_type} layout'


def check_dataset(dataset_cfg: dict, key: str) -> None:
    """Raises :class:`CliError` naming the missing data root or file and the layout the dataset expects.

    Args:
        dataset_cfg: A dataloader's ``dataset`` config (wrappers are searched for their datasets).
        key: Its config key, e.g. ``train_dataloader.dataset``, used in the suggested ``--cfg-options``.
    """
    for leaf, leaf_key in _datasets(dataset_cfg, key):
        data_root = leaf.get('data_root') or ''
        if is_remote(data_root) or leaf.get('backend_args'):
            continue
        expected = _expected_paths(leaf)
        layout = _layout_name(str(leaf.get('type', 'dataset')))
        wanted = ' and '.join(path + ('/' if is_dir and not path.endswith('/') else '')
                              for path, _, is_dir in expected)
        if data_root and not osp.isdir(data_root):
            raise CliError(f'data root {data_root} not found: expected {wanted} ({layout}); set '
                           f'--cfg-options {leaf_key}.data_root=PATH or link the data there')
        for path, suffix, is_dir in expected:
            if is_remote(path) or (osp.isdir(path) if is_dir else osp.isfile(path)):
                continue
            kind = 'folder' if is_dir else 'file'
            raise CliError(f'{kind} {path} ({leaf_key}.{suffix}) not found: expected {wanted} ({layout}); '
                           f'fix the data under {data_root or "."} or set --cfg-options {leaf_key}.{suffix}=...')


def check_evaluator(evaluator_cfg, key: str) -> None:
    """Raises :class:`CliError` if an evaluator's local ``ann_file`` (e.g. CocoMetric's) is missing."""
    for i, metric in enumerate(evaluator_cfg if isinstance(evaluator_cfg, (list, tuple)) else [evaluator_cfg]):
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
        if ann_file and not is_remote(ann_file) and not osp.isfile(ann_file):
            name = key if not isinstance(evaluator_cfg, (list, tuple)) else f'{key}.{i}'
            raise CliError(f'annotation file {ann_file} ({name}.ann_file) not found; set '
                           f'--cfg-options {name}.ann_file=PATH')


def check_data(cfg: Config, splits: Tuple[str, ...]) -> None:
    """Checks the datasets and evaluators of ``splits`` (``'train'``, ``'val'``, ``'test'``) in ``cfg``.

    A split whose dataloader or loop is ``None`` (e.g. ``val_cfg=None``) is not used and not checked.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split != 'train' and not cfg.get(f'{split}_cfg')):
            continue
        check_dataset(loader['dataset'], f'{split}_dataloader.dataset')
        if split != 'train' and cfg.get(f'{split}_evaluator'):
            check_evaluator(cfg[f'{split}_evaluator'], f'{split}_evaluator')


def resolve_scope(cfg: Config, config_path: str) -> str:
    """Returns the config's ``default_scope`` (``'mmdet'`` or ``'mmseg'``) or raises :class:`CliError`."""
    scope: Optional[str] = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise CliError(f"{config_path}: default_scope is {scope!r}; set default_scope='mmdet' "
                       f"(detection) or 'mmseg' (segmentation)")
    return scope
