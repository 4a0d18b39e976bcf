"""``backbone`` mode: ours, timm's and mmpretrain's ConvNeXt with the same weights, timed round by round.

Inference and forward+backward per input size, autocast dtype, memory format and eager / ``torch.compile``.
Each round runs every implementation, starting with the next one (the one timed first measured slower).
Throughput is the median over rounds; a ratio (ours / reference) is the median of the per-round ratios.
Peak memory (``--memory``): on CUDA the allocator's peak during a step in this process; on CPU the growth of
the peak resident set of a fresh process per case (:func:`memory_probe`), which includes allocator caching.
"""
import argparse
import json
import statistics
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from convnext_dense.benchmark.backbones import IMPLS, build_backbones, max_output_difference
from convnext_dense.benchmark.common import (DTYPES, MEMORY_FORMATS, Clock, add_common_arguments, autocast,
                                             environment, paired_ratio, parse_size, peak_rss_bytes, rotated,
                                             rss_bytes, run_probe)
from convnext_dense.ops import cpu_kernels_of


def _make_step(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype]) -> Callable:
    def step() -> None:
        with autocast(x.device, dtype):
            outs = model(x)
        if train:
            sum(o.float().mean() for o in outs).backward()

    def inference_step() -> None:
        with torch.inference_mode():
            step()
    return step if train else inference_step


def measure_backbone_case(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype],
                          iters: int, warmup: int, clock: Clock) -> float:
    """Seconds per step of one (model, input, mode, dtype), after ``warmup`` untimed steps."""
    model.train(train)
    if train:
        model.zero_grad(set_to_none=True)
    step = _make_step(model, x, train, dtype)
    for _ in range(warmup):
        step()
    start = clock()
    for _ in range(iters):
        step()
    return (clock() - start) / iters


def memory_of_step(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype]) -> int:
    """Peak bytes one step adds (see the module docstring for what is measured on CPU and CUDA)."""
    model.train(train)
    step = _make_step(model, x, train, dtype)
    if x.device.type == 'cuda':
        step()  # a first step allocates the lazy workspaces; the second is the steady state
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    step()  # one-time allocations (oneDNN primitives, thread pools) stay out of the figure
    model.zero_grad(set_to_none=True)
    before = rss_bytes()
    step()
    return max(0, peak_rss_bytes() - before)


def run(args: argparse.Namespace) -> dict:
    """Runs backbone mode; returns the JSON report (and prints a table row per case unless ``--json``)."""
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # the 7x7 depthwise convs' best algorithm differs per shape
    clock = Clock(args.clock, device)
    models, unavailable = build_backbones(args.arch, args.impls, with_cp=args.with_cp, cpu_kernels=args.cpu_kernels)
    diffs = max_output_difference(models)
    compiled: Dict[Tuple[str, str], nn.Module] = {}
    rows = []
    for size_text in args.sizes:
        height, width = parse_size(size_text)
        batch = args.batch if 'x' not in size_text else args.det_batch
        for mode in args.modes:
            for dtype_name in args.dtypes:
                for fmt in args.memory_formats:
                    for compile_mode in args.compile:
                        row = dict(size=f'{width}x{height}', batch=batch, mode=mode, dtype=dtype_name,
                                   memory_format=fmt, compile=compile_mode, results={})
                        x = torch.randn(batch, 3, height, width, device=device)
                        x = x.contiguous(memory_format=MEMORY_FORMATS[fmt])
                        times: Dict[str, List[float]] = {name: [] for name in models}
                        timed: Dict[str, nn.Module] = {}
                        errors: Dict[str, str] = dict(unavailable)
                        for rnd in range(args.rounds):
                            # Interleaved, every round runs every impl, and the order rotates: on this CPU
                            # the impl timed first in a round measured ~2% slower whichever it was.
                            for name in rotated(list(models), rnd):
                                base = models[name]
                                if name in errors:
                                    continue
                                try:
                                    model = base.to(device=device, memory_format=MEMORY_FORMATS[fmt])
                                    if compile_mode == 'on':
                                        key = (name, fmt)
                                        if key not in compiled:
                                            compiled[key] = torch.compile(model)
                                        model = compiled[key]
                                    warmup = args.warmup + (1 if compile_mode == 'on' else 0) if rnd == 0 else 0
                                    times[name].append(measure_backbone_case(
                                        model, x, mode == 'train', DTYPES[dtype_name], args.iters, warmup, clock))
                                    timed[name] = model
                                except Exception as err:  # an unsupported combination is a table entry
                                    errors[name] = f'{type(err).__name__}: {str(err).splitlines()[0][:120]}'
                        for name in list(models) + list(unavailable):
                            if name in errors:
                                row['results'][name] = dict(error=errors[name])
                            else:
                                seconds = statistics.median(times[name])
                                row['results'][name] = dict(img_per_s=batch / seconds, s_per_iter=seconds,
                                                            rounds=[batch / t for t in times[name]])
                        if args.memory:
                            for name in models:
                                if 'error' in row['results'][name]:
                                    continue
                                if device.type == 'cuda':  # the allocator's own peak: exact in one process
                                    peak = memory_of_step(timed[name], x, mode == 'train', DTYPES[dtype_name])
                                    row['results'][name]['peak_mem_mib'] = peak / 2 ** 20
                                else:
                                    row['results'][name]['peak_mem_mib'] = _memory_in_subprocess(
                                        args, name, height, width, batch, mode, dtype_name, fmt)
                        _add_ratios(row)
                        rows.append(row)
                        if not args.json:
                            print(format_backbone_row(row), flush=True)
    ours = models.get('ours')
    return dict(mode='backbone', arch=args.arch, clock=args.clock, env=environment(), max_abs_diff_vs_ours=diffs,
                cpu_kernels=list(cpu_kernels_of(ours)) if ours is not None else None, command=' '.join(sys.argv),
                rows=rows)


def _add_ratios(row: dict) -> None:
    ours = row['results'].get('ours', {}).get('rounds')
    for name, result in row['results'].items():
        if name != 'ours' and ours and result.get('rounds'):
            row[f'ours_vs_{name}'] = paired_ratio(ours, result['rounds'])


def _memory_in_subprocess(args: argparse.Namespace, impl: str, height: int, width: int, batch: int,
                          mode: str, dtype: str, fmt: str) -> Optional[float]:
    case = dict(arch=args.arch, impl=impl, height=height, width=width, batch=batch, mode=mode, dtype=dtype,
                memory_format=fmt, device=args.device, with_cp=args.with_cp, cpu_kernels=args.cpu_kernels)
    result, _ = run_probe('memory', case, timeout=1800)
    return result.get('peak_mem_mib') if result else None


def memory_probe(case_json: str) -> None:
    """Child process of ``--memory``: builds one backbone, runs one step, prints its peak memory."""
    case = json.loads(case_json)
    device = torch.device(case['device'])
    models, _ = build_backbones(case['arch'], (case['impl'],), with_cp=case['with_cp'],
                                cpu_kernels=case['cpu_kernels'])
    fmt = MEMORY_FORMATS[case['memory_format']]
    model = models[case['impl']].to(device=device, memory_format=fmt)
    x = torch.randn(case['batch'], 3, case['height'], case['width'], device=device).contiguous(memory_format=fmt)
    peak = memory_of_step(model, x, case['mode'] == 'train', DTYPES[case['dtype']])
    print(json.dumps(dict(peak_mem_mib=peak / 2 ** 20)))


def format_backbone_row(row: dict) -> str:
    cells = []
    for name, result in row['results'].items():
        if 'error' in result:
            cells.append(f'{name} n/a ({result["error"]})')
        else:
            mem = f' {result["peak_mem_mib"]:.0f}MiB' if result.get('peak_mem_mib') is not None else ''
            cells.append(f'{name} {result["img_per_s"]:8.2f}{mem}')
    ratios = ' '.join(f'{k[8:]}x{v:.2f}' for k, v in row.items() if k.startswith('ours_vs_'))
    return (f'{row["size"]:>9} b{row["batch"]:<3} {row["mode"]:<5} {row["dtype"]:<4} {row["memory_format"]:<13} '
            f'compile={row["compile"]:<3} | ' + ' | '.join(cells) + f' | ours/{ratios}')


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``backbone`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    cuda = torch.cuda.is_available()
    parser = subparsers.add_parser('backbone', help='ours vs timm vs mmpretrain, same weights, interleaved')
    add_common_arguments(parser, iters=10 if cuda else 1, warmup=3 if cuda else 1, rounds=5 if cuda else 3)
    parser.add_argument('--arch', default='tiny', help="arch name or 'depths:2,2,2,2;channels:8,16,32,64'")
    parser.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS)
    parser.add_argument('--sizes', nargs='+', default=['224', '1344x800'], help="'224' or WIDTHxHEIGHT")
    parser.add_argument('--batch', type=int, default=64 if cuda else 4, help='batch of square sizes (\'224\')')
    parser.add_argument('--det-batch', type=int, default=2 if cuda else 1, help='batch of WIDTHxHEIGHT sizes')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    parser.add_argument('--dtypes', nargs='+', default=list(DTYPES) if cuda else ['fp32'], choices=list(DTYPES))
    parser.add_argument('--memory-formats', nargs='+', default=list(MEMORY_FORMATS),
                        choices=list(MEMORY_FORMATS))
    parser.add_argument('--compile', nargs='+', default=['off', 'on'] if cuda else ['off'], choices=('off', 'on'))
    parser.add_argument('--with-cp', action='store_true', help='activation checkpointing in ours and mmpretrain')
    parser.add_argument('--cpu-kernels', metavar='SPEC',
                        help='our CPU kernels: auto (the machine\'s choice), 1, 0 or names separated by commas '
                             '(default: CONVNEXT_DENSE_CPU_KERNELS, else auto)')
    parser.add_argument('--memory', action=argparse.BooleanOptionalAction, default=cuda,
                        help='peak memory per case (default on CUDA; on CPU: one fresh process per case)')
    return parser
