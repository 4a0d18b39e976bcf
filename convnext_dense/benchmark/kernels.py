"""``kernels`` mode: each CPU kernel of ``convnext_dense/ops`` against PyTorch's own ops, block by block.

For every stage of the architecture (a block of its width at its feature-map size), each kernel runs with and
without, in interleaved rounds on the same block and input: ``gelu`` (the block's activation, forward, and
forward + backward), ``mlp_onednn`` and ``mlp_tiled`` (the block's inference forward), ``dwconv_weight_grad``
and ``fold_layer_scale`` (the block's training forward + backward). A ratio above 1 means the kernel is faster;
``total`` weighs the stages by their depth, as a forward pass does. The report names the CPU, the instruction
set PyTorch uses and the kernels :func:`convnext_dense.ops.machine_kernels` picks for it: the table
``ops.BY_CPU_CAPABILITY`` is built from these runs.

    python tools/analysis/benchmark.py kernels --threads 1 --clock cpu --rounds 7
"""
import argparse
import copy
import statistics
import sys
from typing import Callable, Dict, List

import torch

from convnext_dense.benchmark.backbones import arch_spec
from convnext_dense.benchmark.common import (Clock, add_common_arguments, add_shape_arguments, environment,
                                             paired_ratio, parse_size, time_interleaved)
from convnext_dense.ops import KERNEL_NAMES, NO_KERNELS, CpuKernels, cpu_capability, machine_kernels

#: kernel -> (what is timed, the CpuKernels that turns it on)
CASES = {
    'gelu': ('activation forward', CpuKernels(gelu=True)),
    'gelu_train': ('activation forward + backward', CpuKernels(gelu=True)),
    'mlp_onednn': ('block inference', CpuKernels(mlp='onednn')),
    'mlp_tiled': ('block inference', CpuKernels(mlp='tiled')),
    'dwconv_weight_grad': ('block forward + backward', CpuKernels(dwconv_weight_grad=True)),
    'fold_layer_scale': ('block forward + backward', CpuKernels(fold_layer_scale=True)),
}


def _step(case: str, block: torch.nn.Module, x: torch.Tensor, hidden: torch.Tensor) -> Callable[[], None]:
    if case == 'gelu':
        def run() -> None:
            with torch.inference_mode():
                block.act(hidden)
    elif case == 'gelu_train':
        def run() -> None:
            block.act(hidden).backward(hidden)
    elif case.startswith('mlp_'):
        def run() -> None:
            with torch.inference_mode():
                block(x)
    else:
        def run() -> None:
            block(x).backward(x)
    return run


def measure_stage(case: str, channels: int, height: int, width: int, batch: int, rounds: int, iters: int,
                  clock: Clock) -> Dict[str, List[float]]:
    """Seconds per step of one ConvNeXt block of ``channels`` with and without the kernel of ``case``."""
    from convnext_dense.models.convnext import Block
    from convnext_dense.ops import set_cpu_kernels
    torch.manual_seed(0)
    reference = Block(channels, layer_scale_init_value=1.0, cpu_kernels=NO_KERNELS)
    train = case in ('dwconv_weight_grad', 'fold_layer_scale')
    reference.train(train)
    fast = set_cpu_kernels(copy.deepcopy(reference), CASES[case][1])
    x = torch.randn(batch, channels, height, width).contiguous(memory_format=torch.channels_last)
    hidden = torch.randn(batch, height, width, 4 * channels, requires_grad=case == 'gelu_train')
    steps = {'without': _step(case, reference, x.requires_grad_(train), hidden),
             'with': _step(case, fast, x, hidden)}
    return time_interleaved(steps, rounds, iters, clock)


def run(args: argparse.Namespace) -> dict:
    """Runs kernels mode; returns the JSON report (and prints one line per kernel unless ``--json``)."""
    depths, channels = arch_spec(args.arch)
    height, width = parse_size(args.size)
    clock = Clock(args.clock, torch.device('cpu'))
    rows = []
    for case in args.kernels:
        stages, with_total, without_total = [], [0.0] * args.rounds, [0.0] * args.rounds
        for stage, (depth, width_c) in enumerate(zip(depths, channels)):
            stride = 4 * 2 ** stage
            times = measure_stage(case, width_c, max(1, height // stride), max(1, width // stride), args.batch,
                                  args.rounds, args.iters, clock)
            for rnd in range(args.rounds):
                with_total[rnd] += depth * times['with'][rnd]
                without_total[rnd] += depth * times['without'][rnd]
            stages.append(dict(stage=stage, channels=width_c, with_s=statistics.median(times['with']),
                               without_s=statistics.median(times['without']),
                               speedup=paired_ratio(times['without'], times['with'])))
        row = dict(kernel=case, timed=CASES[case][0], stages=stages,
                   speedup=paired_ratio(without_total, with_total))
        rows.append(row)
        if not args.json:
            per_stage = ' '.join(f'{s["speedup"]:.2f}' for s in stages)
            print(f'{case:<20} {row["timed"]:<30} per stage {per_stage} | total {row["speedup"]:.2f}x', flush=True)
    chosen = machine_kernels()
    if not args.json:
        print(f'CPU capability {cpu_capability()}: machine_kernels() = {", ".join(chosen.names) or "none"}')
    return dict(mode='kernels', arch=args.arch, size=args.size, batch=args.batch, clock=args.clock,
                env=environment(), cpu_capability=cpu_capability(), machine_kernels=list(chosen.names),
                command=' '.join(sys.argv), rows=rows)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kernels`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    parser = subparsers.add_parser('kernels', help='each CPU kernel against PyTorch\'s ops, block by block')
    add_common_arguments(parser, iters=1, warmup=1, rounds=5)
    add_shape_arguments(parser)
    parser.add_argument('--kernels', nargs='+', default=list(CASES), choices=list(CASES),
                        help=f'kernels to time (of {", ".join(KERNEL_NAMES)}; gelu_train: with the backward)')
    return parser
