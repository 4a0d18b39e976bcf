"""Train a detector (mmdet 3.x) or a segmentor (mmseg 1.x) from a config; the config's default_scope decides.

Same flags and behaviour as mmdet 3.3's ``tools/train.py`` (``python tools/train.py`` runs the same); CONFIG is
a path or a shipped config's name:

    convnext-dense train configs/det/mask_rcnn_convnext_t_3x.py --work-dir work_dirs/mrcnn_t
    convnext-dense train CONFIG --resume                    # from work_dir/last_checkpoint
    convnext-dense train CONFIG --resume work_dirs/x/epoch_3.pth
    bash tools/dist_train.sh CONFIG 8                        # torchrun, 8 GPUs
"""
import argparse
import logging
import os.path as osp

from mmengine.config import Config
from mmengine.logging import print_log

from convnext_dense.checkpoint import check_local_checkpoint
from convnext_dense.cli.args import (add_config_arguments, add_dataset_arguments, add_launcher_arguments,
                                    parse_launcher_args, read_config)
from convnext_dense.cli.data_checks import check_annotations, check_data, check_num_classes
from convnext_dense.cli.runner import (build_runner, check_checkpoint_fits, nothing_to_resume, resume_checkpoint,
                                      setup_cpu_distributed)
from convnext_dense.errors import CliError
from convnext_dense.io import remove_stale_temporaries


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or a segmentor')
    add_config_arguments(parser, example='train_cfg.max_epochs=12 or key="[a,b]"')
    add_dataset_arguments(parser)
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (GPUs x images per GPU) / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest checkpoint in the work '
                             'directory if there is one (else it says so and starts from scratch)')
    add_launcher_arguments(parser)
    return parse_launcher_args(parser, argv)


def load_config(args: argparse.Namespace) -> Config:
    """Reads the config and applies the command-line settings, as mmdet's ``tools/train.py`` does."""
    cfg = read_config(args)

    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log(f'AMP training is already enabled in {args.config}.', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise CliError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size; add '
                           f'auto_scale_lr = dict(enable=False, base_batch_size=16)')
        cfg.auto_scale_lr.enable = True

    # An explicit checkpoint wins over auto-resume from work_dir/last_checkpoint.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_local_checkpoint(args.resume, '--resume')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args)
    check_data(cfg, ('train', 'val'))
    check_num_classes(cfg, ('train', 'val'))
    setup_cpu_distributed(cfg, args.launcher)
    check_annotations(cfg, ('train', 'val'))
    if cfg.get('resume') and osp.isdir(cfg.work_dir):
        remove_stale_temporaries(cfg.work_dir)  # left by a kill during a save; never resumed from
    fresh_start = nothing_to_resume(cfg)
    runner = build_runner(cfg)
    if fresh_start:
        runner.logger.warning(fresh_start)  # rank 0, console and log file
    if cfg.get('resume'):
        check_checkpoint_fits(runner.model, resume_checkpoint(cfg), '--resume')
    runner.train()
    return 0
