"""Arguments and config reading shared by the subcommands that run mmengine (``train``, ``test``).

They take the same launcher flags as mmdet's and mmseg's tools, and read the config as those do:
``--cfg-options`` merged in, ``--work-dir`` over the config's ``work_dir`` over ``./work_dirs/<config name>``.
"""
import argparse
import logging
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from convnext_dense.cli.errors import set_run_config
from convnext_dense.config import load_config, task_of
from convnext_dense.config_edits import move_data_root, set_num_classes


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """Adds ``CONFIG``, ``--work-dir`` and ``--cfg-options`` (``example`` shows a ``key=value``)."""
    parser.add_argument('config', help='config file path or name (e.g. det/mask_rcnn_convnext_t_3x)')
    parser.add_argument('--work-dir', help='the folder for logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help=f'override settings of the config, key=value (e.g. {example})')


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--data-root`` and ``--num-classes``, applied by :func:`read_config` before ``--cfg-options``."""
    parser.add_argument('--data-root', metavar='DIR',
                        help="the folder of the config's data layout: moves every split's dataset and the "
                             "evaluators' annotation files at once")
    parser.add_argument('--num-classes', type=int, metavar='N',
                        help="sets num_classes of every classifying head (each of a Cascade's box heads, the mask "
                             "head, UperNet's decode and auxiliary heads); metainfo.classes must list N classes")


def apply_dataset_arguments(cfg: Config, args: argparse.Namespace) -> None:
    """Applies ``--data-root`` and ``--num-classes`` (see :mod:`convnext_dense.config_edits`)."""
    if getattr(args, 'data_root', None):
        for kept in move_data_root(cfg, args.data_root):
            print_log(f'--data-root: kept {kept}, which is outside the data root', logger='current',
                      level=logging.WARNING)
    if getattr(args, 'num_classes', None) is not None:
        set_num_classes(cfg, args.num_classes)


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--launcher`` and ``--local-rank`` (torch >= 2.0's launcher passes the latter)."""
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launcher_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parses ``argv`` and exports ``--local-rank`` as ``LOCAL_RANK`` unless the launcher already set it.

    Args:
        parser: A parser that went through :func:`add_launcher_arguments`.
        argv: Command-line arguments, or None for ``sys.argv[1:]``.
    """
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def read_config(args: argparse.Namespace) -> Config:
    """Reads ``args.config`` and applies ``--launcher``, ``--cfg-options`` and ``--work-dir`` as mmdet's tools do,
    and our ``--data-root`` and ``--num-classes`` where the subcommand has them.

    The config's task is checked (``default_scope`` mmdet or mmseg), and the command line's error boundary is
    told the config, to name a malformed annotation file if mmdet's parser fails on one.

    Args:
        args: Parsed arguments of ``train`` or ``test``; ``args.config`` is a path or a config name.
    """
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    apply_dataset_arguments(cfg, args)  # before --cfg-options, whose single keys then win
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir priority: CLI > config > config file name.
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(cfg.filename or args.config))[0])
    task_of(cfg)
    set_run_config(cfg)
    return cfg
