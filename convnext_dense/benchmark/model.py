"""``model CONFIG`` mode: a detector / segmentor config with our backbone, mmpretrain's, and ours with ``with_cp``.

Inference FPS (score threshold 0 so that 100 detections are kept per image, as a trained detector gives) and
training s/iter (forward + backward of a synthetic batch). Each variant runs in a fresh process
(:mod:`convnext_dense.benchmark.model_probe`), so its peak memory is its own; rounds alternate the variants,
each starting with the next one.
"""
import argparse
import copy
import statistics
import sys
from typing import Dict, List

import torch

from convnext_dense.benchmark.common import DTYPES, add_common_arguments, environment, paired_ratio, rotated, run_probe


def _keep_100_detections(test_cfg) -> None:
    # Random weights score below any threshold: with none, every image keeps max_per_img=100 detections,
    # the load a trained detector puts on NMS and the mask head.
    if isinstance(test_cfg, dict):
        if 'score_thr' in test_cfg:
            test_cfg['score_thr'] = 0.0
        if 'max_per_img' in test_cfg and 'nms' in test_cfg and 'mask_thr_binary' in test_cfg:
            test_cfg['max_per_img'] = 100
        for value in test_cfg.values():
            _keep_100_detections(value)


def model_variant_cfg(model_cfg: dict, variant: str) -> dict:
    """The model config of a variant: ``ours``, ``ours_cp`` (``with_cp=True``) or ``mmpretrain``."""
    # The benchmark runs one process: SyncBN would need a process group, so it becomes BN (same cost per GPU).
    from convnext_dense.config import syncbn_to_bn
    cfg = syncbn_to_bn(copy.deepcopy(model_cfg))
    backbone = cfg['backbone']
    backbone['init_cfg'] = None  # timing needs no pretrained weights (and tests never download)
    _keep_100_detections(cfg.get('test_cfg'))
    if variant == 'ours_cp':
        backbone['with_cp'] = True
    elif variant == 'mmpretrain':
        cfg['backbone'] = dict(type='mmpretrain.ConvNeXt', arch=backbone.get('arch', 'tiny'),
                               out_indices=tuple(backbone.get('out_indices', (0, 1, 2, 3))),
                               drop_path_rate=backbone.get('drop_path_rate', 0.0),
                               layer_scale_init_value=backbone.get('layer_scale_init_value', 1e-6),
                               gap_before_final_norm=False, with_cp=backbone.get('with_cp', False))
    return cfg


def _add_model_ratios(rows: List[dict]) -> None:
    """Adds ``<figure>_vs_ours`` (per-round paired, see :func:`paired_ratio`) to each row beside ours.

    Args:
        rows: One dict per variant with its ``rounds`` (or an ``error``); without an ``ours`` row, no ratios.
    """
    ours = next((r for r in rows if r['variant'] == 'ours' and 'error' not in r), None)
    if ours is None:
        return
    for row in rows:
        if row is ours or 'error' in row:
            continue
        for key in ('train_s_per_iter', 'train_peak_mem_mib', 'infer_fps'):
            # a CPU step can grow the resident set by 0 MiB (memory cached from the warm-up): no ratio then
            if key in row and key in ours and all(r[key] for r in ours['rounds']):
                row[f'{key}_vs_ours'] = paired_ratio([r[key] for r in row['rounds']],
                                                     [r[key] for r in ours['rounds']])


def run(args: argparse.Namespace) -> dict:
    """Runs model mode; returns the JSON report (and prints a table unless ``--json``)."""
    height, width = args.size
    device = 'cuda' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'
    per_round: Dict[str, List[dict]] = {v: [] for v in args.variants}
    errors: Dict[str, str] = {}
    for rnd in range(args.rounds):
        for variant in rotated(list(args.variants), rnd):  # every round, each in a fresh process
            if variant in errors:
                continue
            case = dict(config=args.config, variant=variant, height=height, width=width, batch=args.batch,
                        iters=args.iters, warmup=args.warmup, modes=args.modes, dtype=args.dtype,
                        device=device, clock=args.clock, threads=args.threads or torch.get_num_threads())
            result, error = run_probe('model', case, timeout=3600)
            if result is None:
                errors[variant] = error
            else:
                per_round[variant].append(result)
    rows = []
    for variant in args.variants:
        if variant in errors:
            rows.append(dict(variant=variant, error=errors[variant]))
            continue
        runs = per_round[variant]
        row = dict(variant=variant, rounds=runs)  # each round's figures, in the order they were taken
        for key in ('train_s_per_iter', 'train_peak_mem_mib', 'infer_fps', 'detections_per_image'):
            values = [r[key] for r in runs if key in r]
            if values:
                row[key] = statistics.median(values)
        rows.append(row)
    _add_model_ratios(rows)
    report = dict(mode='model', config=args.config, size=f'{width}x{height}', batch=args.batch, dtype=args.dtype,
                  clock=args.clock, env=environment(), command=' '.join(sys.argv), rows=rows)
    if not args.json:
        print(f'{args.config} @ {width}x{height}, batch {args.batch}, {args.dtype}, {args.clock} clock')
        print(f'{"variant":<11}{"infer img/s":>12}{"dets/img":>9}{"train s/iter":>14}{"peak MiB":>10}'
              f'{"s/iter vs ours":>16}{"mem vs ours":>12}')
        for row in rows:
            if 'error' in row:
                print(f'{row["variant"]:<11} n/a ({row["error"]})')
                continue
            print(f'{row["variant"]:<11}{row.get("infer_fps", float("nan")):>12.3f}'
                  f'{row.get("detections_per_image", float("nan")):>9.0f}'
                  f'{row.get("train_s_per_iter", float("nan")):>14.2f}'
                  f'{row.get("train_peak_mem_mib", float("nan")):>10.0f}'
                  f'{row.get("train_s_per_iter_vs_ours", 1.0):>16.2f}'
                  f'{row.get("train_peak_mem_mib_vs_ours", 1.0):>12.2f}')
    return report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``model`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    cuda = torch.cuda.is_available()
    parser = subparsers.add_parser('model', help='a detector / segmentor config with our and mmpretrain\'s backbone')
    add_common_arguments(parser, iters=10 if cuda else 1, warmup=2 if cuda else 1, rounds=3 if cuda else 1)
    parser.add_argument('config')
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344) if cuda else (512, 800),
                        metavar=('H', 'W'), help='input height and width (CPU default is smaller: 512 800)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--dtype', default='fp32', choices=list(DTYPES), help='autocast dtype')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    parser.add_argument('--variants', nargs='+', default=['ours', 'mmpretrain', 'ours_cp'],
                        choices=('ours', 'mmpretrain', 'ours_cp'))
    return parser
