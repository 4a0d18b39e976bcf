"""``profile`` mode: where a ConvNeXt inference step spends its time, block by block, ours beside timm's.

``torch.profiler`` records ``--iters`` inference steps of each implementation (the same weights, the same
input, after ``--warmup`` steps). A scope is opened around every block, so each operator's self time is
charged to its stage, and operators are grouped by what they do in the block:

- ``dwconv``: the 7x7 depthwise convolution;
- ``norm``: the LayerNorm;
- ``linear``: the two pointwise linears (GEMMs, oneDNN's fused linears);
- ``gelu``: the activation;
- ``scale+residual``: the layer scale and the residual addition;
- ``layout``: permutes and the copies they cost;
- ``kernels+python``: time in the block's own scope that no PyTorch operator claims: our C++ kernels (the
  tiled MLP tail and the GELU of ``convnext_dense/ops`` are not PyTorch operators) and Python;
- ``other``: anything else (e.g. GRN in V2 blocks).

Outside the blocks, the stem, the downsampling layers and the output norms are one row (``outside blocks``).
Each cell is milliseconds per step; the last column is timm's time over ours for the stage or group (above 1:
ours is faster). A profile is for finding where time goes, not for speed claims: the profiler adds its own
overhead per operator, so measure speed with ``backbone`` mode.

    python tools/analysis/benchmark.py profile --threads 1 --size 224 --batch 8
"""
import argparse
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from convnext_dense.benchmark.backbones import arch_spec, build_backbones
from convnext_dense.benchmark.common import add_shape_arguments, environment, parse_size
from convnext_dense.ops import cpu_capability, machine_kernels

#: Operator-name fragments -> group, tried in order (first match wins).
GROUPS = (
    ('conv', 'dwconv'),
    ('layer_norm', 'norm'),
    ('linear', 'linear'), ('addmm', 'linear'), ('matmul', 'linear'), ('aten::mm', 'linear'),
    ('aten::bmm', 'linear'),
    ('gelu', 'gelu'),
    ('aten::mul', 'scale+residual'), ('aten::add', 'scale+residual'),
    ('permute', 'layout'), ('contiguous', 'layout'), ('copy_', 'layout'), ('clone', 'layout'),
    ('empty', 'layout'), ('as_strided', 'layout'), ('view', 'layout'), ('reshape', 'layout'),
)
COLUMNS = ('dwconv', 'norm', 'linear', 'gelu', 'scale+residual', 'layout', 'kernels+python', 'other')
SCOPE_PREFIX = 'convnext_block/'


def group_of(op_name: str) -> str:
    """The block group (one of :data:`COLUMNS`) an operator's name belongs to."""
    for fragment, group in GROUPS:
        if fragment in op_name:
            return group
    return 'other'


def blocks_by_stage(name: str, model: nn.Module) -> List[List[nn.Module]]:
    """Each stage's blocks of one of the benchmark's implementations (``ours``, ``timm``, ``mmpretrain``)."""
    stages = model.body.stages if name == 'timm' else model.stages
    return [list(stage.blocks if name == 'timm' else stage) for stage in stages]


def _scope_hooks(blocks: List[List[nn.Module]]) -> list:
    """Forward hooks opening a profiler scope ``convnext_block/<stage>`` around every block."""
    handles = []
    for stage, stage_blocks in enumerate(blocks):
        for block in stage_blocks:
            def enter(module, args, stage=stage):
                module._profile_scope = torch.autograd.profiler.record_function(f'{SCOPE_PREFIX}{stage}')
                module._profile_scope.__enter__()

            def leave(module, args, output):
                module._profile_scope.__exit__(None, None, None)
                del module._profile_scope

            handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    return handles


def _stage_of(event) -> int:
    """The stage whose block scope encloses a profiler event, or -1 outside every block."""
    while event is not None:
        if event.name.startswith(SCOPE_PREFIX):
            return int(event.name[len(SCOPE_PREFIX):])
        event = event.cpu_parent
    return -1


def profile_model(name: str, model: nn.Module, x: torch.Tensor, warmup: int, iters: int
                  ) -> Dict[int, Dict[str, float]]:
    """Milliseconds per inference step by stage (-1: outside the blocks) and group.

    Args:
        name: The implementation's name (selects how its blocks are found).
        model: The backbone, in eval mode.
        x: The input batch.
        warmup: Unrecorded steps first.
        iters: Recorded steps.
    """
    handles = _scope_hooks(blocks_by_stage(name, model))
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(iters):
                    model(x)
    finally:
        for handle in handles:
            handle.remove()
    table: Dict[int, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in prof.events():
        milliseconds, stage = event.self_cpu_time_total / 1e3 / iters, _stage_of(event)
        if event.name.startswith(SCOPE_PREFIX):
            table[stage]['kernels+python'] += milliseconds
        elif stage >= 0:
            table[stage][group_of(event.name)] += milliseconds
        else:
            table[-1]['total'] += milliseconds
    return table


def _rows(tables: Dict[str, Dict[int, Dict[str, float]]], stages: int) -> List[dict]:
    rows = []
    for stage in list(range(stages)) + [-1]:
        for group in (COLUMNS if stage >= 0 else ('total',)):
            times = {name: table[stage][group] for name, table in tables.items()}
            if not any(times.values()):
                continue
            rows.append(dict(stage=stage, group=group, ms=times))
    totals = {name: sum(sum(groups.values()) for groups in table.values()) for name, table in tables.items()}
    rows.append(dict(stage=None, group='step', ms=totals))
    return rows


def run(args: argparse.Namespace) -> dict:
    """Runs profile mode; returns the JSON report (and prints the table unless ``--json``)."""
    depths, _ = arch_spec(args.arch)
    height, width = parse_size(args.size)
    models, missing = build_backbones(args.arch, args.impls)
    x = torch.randn(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    tables = {}
    for name, model in models.items():
        model.eval()  # not chained: mmpretrain's ConvNeXt.train() returns None
        tables[name] = profile_model(name, model, x, args.warmup, args.iters)
    rows = _rows(tables, len(depths))
    if not args.json:
        env = environment()
        print(f'{env["device"]}, {env["threads"]} threads; kernels: {", ".join(machine_kernels().names) or "none"}'
              f'; ms per step ({args.batch}x3x{height}x{width}, inference, profiler on)')
        names = list(tables)
        print(f'{"stage":<8}{"group":<16}' + ''.join(f'{n:>12}' for n in names)
              + (f'{"timm/ours":>11}' if {'ours', 'timm'} <= set(names) else ''))
        for row in rows:
            stage = '-' if row['stage'] is None else ('outside' if row['stage'] < 0 else str(row['stage']))
            line = f'{stage:<8}{row["group"]:<16}' + ''.join(f'{row["ms"][n]:>12.2f}' for n in names)
            if {'ours', 'timm'} <= set(names) and row['ms']['ours'] > 0:
                line += f'{row["ms"]["timm"] / row["ms"]["ours"]:>11.2f}'
            print(line)
        for name, reason in missing.items():
            print(f'{name}: {reason}')
    return dict(mode='profile', arch=args.arch, size=args.size, batch=args.batch, iters=args.iters,
                env=environment(), cpu_capability=cpu_capability(), machine_kernels=list(machine_kernels().names),
                command=' '.join(sys.argv), rows=rows, missing=missing)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``profile`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    parser = subparsers.add_parser('profile', help='torch.profiler: inference time by stage and block part')
    add_shape_arguments(parser)
    parser.add_argument('--impls', nargs='+', default=['ours', 'timm'], choices=('ours', 'timm', 'mmpretrain'))
    parser.add_argument('--warmup', type=int, default=1, help='unrecorded steps first')
    parser.add_argument('--iters', type=int, default=3, help='recorded steps (times are per step)')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--save-json', metavar='PATH', help='also write the JSON report to PATH (atomically)')
    return parser
