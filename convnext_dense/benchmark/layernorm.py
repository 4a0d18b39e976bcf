"""``layernorm`` mode: the channels-first LayerNorm options (permute + ``F.layer_norm``, hand-written mean/var, a
channels-last copy first), forward and forward+backward, with their error against a float64 reference."""
import argparse
import statistics
import sys
from typing import Dict, List

import torch
import torch.nn.functional as F

from convnext_dense.benchmark.common import MEMORY_FORMATS, Clock, add_common_arguments, environment


def layernorm_permute(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.permute(0, 2, 3, 1), w.shape, w, b, eps).permute(0, 3, 1, 2)


def layernorm_manual(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * w[:, None, None] + b[:, None, None]


def layernorm_channels_last_copy(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return layernorm_permute(x.contiguous(memory_format=torch.channels_last), w, b, eps)


LAYERNORM_OPTIONS = {'permute_layer_norm': layernorm_permute, 'manual_mean_var': layernorm_manual,
                     'channels_last_copy': layernorm_channels_last_copy}


def run(args: argparse.Namespace) -> dict:
    """Runs layernorm mode; returns the JSON report."""
    device = torch.device(args.device)
    clock = Clock(args.clock, device)
    rows = []
    for shape_text in args.shapes:
        shape = tuple(int(v) for v in shape_text.split(','))
        weight = torch.randn(shape[1], device=device, requires_grad=True)
        bias = torch.randn(shape[1], device=device, requires_grad=True)
        for fmt in args.memory_formats:
            x = torch.randn(shape, device=device).contiguous(memory_format=MEMORY_FORMATS[fmt])
            ref = layernorm_permute(x.double(), weight.double(), bias.double(), 1e-6)
            for mode in args.modes:
                xx = x.detach().clone().requires_grad_(mode == 'train')
                times: Dict[str, List[float]] = {k: [] for k in LAYERNORM_OPTIONS}
                for _ in range(args.rounds):
                    for name, fn in LAYERNORM_OPTIONS.items():
                        def step() -> None:
                            y = fn(xx, weight, bias, 1e-6)
                            if mode == 'train':
                                y.sum().backward()
                        for _ in range(args.warmup):
                            step()
                        start = clock()
                        for _ in range(args.iters):
                            step()
                        times[name].append((clock() - start) / args.iters * 1e3)
                row = dict(shape=shape_text, memory_format=fmt, mode=mode, results={})
                for name, fn in LAYERNORM_OPTIONS.items():
                    with torch.no_grad():
                        err = (fn(x, weight, bias, 1e-6).double() - ref).abs().max().item()
                    row['results'][name] = dict(ms=statistics.median(times[name]), max_abs_err=err)
                rows.append(row)
                if not args.json:
                    print(f'{shape_text:>16} {fmt:<13} {mode:<5} | ' + ' | '.join(
                        f'{k} {v["ms"]:8.3f}ms (err {v["max_abs_err"]:.0e})' for k, v in row['results'].items()),
                        flush=True)
    return dict(mode='layernorm', clock=args.clock, env=environment(), command=' '.join(sys.argv), rows=rows)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``layernorm`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    parser = subparsers.add_parser('layernorm', help='channels-first LayerNorm options')
    add_common_arguments(parser, iters=5, warmup=1, rounds=3)
    parser.add_argument('--shapes', nargs='+', default=['2,96,200,336', '32,96,56,56', '2,768,25,42'])
    parser.add_argument('--memory-formats', nargs='+', default=list(MEMORY_FORMATS),
                        choices=list(MEMORY_FORMATS))
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    return parser
