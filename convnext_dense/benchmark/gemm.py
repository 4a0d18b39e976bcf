"""``gemm`` mode: the rate of the ConvNeXt block's linears on this CPU, by the GEMMs each runtime can call.

A ConvNeXt block spends most of a CPU inference step in its two pointwise linears (``benchmark profile``), so
the GEMM rate bounds how fast any implementation can be. For each stage's linears (rows = batch x the stage's
pixels, C -> 4C and 4C -> C), in interleaved rounds on the same operands:

- ``aten``: ``F.linear``, the GEMM ours, timm's and mmpretrain's ConvNeXt all run (MKL's sgemm on x86);
- ``mkl_packed``: MKL's sgemm with the weight packed once (``torch.ops.mkl._mkl_linear``), where available;
- ``ort``: ONNX Runtime's MatMul + Add (MLAS) in a one-node graph, where onnxruntime is installed.

Reported: GFLOP/s of each (median of rounds), and each alternative's speed over ``aten``'s.

    python tools/analysis/benchmark.py gemm --threads 1 --size 224 --batch 8
"""
import argparse
import statistics
import sys
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F

from convnext_dense.benchmark.backbones import arch_spec
from convnext_dense.benchmark.common import (Clock, add_common_arguments, add_shape_arguments, environment, parse_size,
                                             time_interleaved)


def _ort_linear(weight: torch.Tensor, bias: torch.Tensor, rows: int, threads: int) -> Callable:
    """An ONNX Runtime session of ``x @ weight.T + bias`` (MatMul + Add, as the exporter writes a linear)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node('MatMul', ['x', 'w'], ['t']), helper.make_node('Add', ['t', 'b'], ['y'])]
    graph = helper.make_graph(
        nodes, 'linear', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [rows, weight.shape[1]])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [rows, weight.shape[0]])],
        [numpy_helper.from_array(weight.t().contiguous().numpy(), 'w'), numpy_helper.from_array(bias.numpy(), 'b')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'x': np.asarray(x)})


def linear_calls(rows: int, in_features: int, out_features: int, threads: int) -> Tuple[Dict[str, Callable], dict]:
    """The available GEMM calls of one linear on random operands, and why any is missing.

    Args:
        rows: Rows of the input (batch x pixels).
        in_features: Input channels.
        out_features: Output channels.
        threads: Intra-op threads of ONNX Runtime (PyTorch's are set by the caller).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator) / in_features ** 0.5
    bias = torch.randn(out_features, generator=generator)
    calls, missing = {'aten': lambda: F.linear(x, weight, bias)}, {}
    try:
        packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)
        calls['mkl_packed'] = lambda: torch.ops.mkl._mkl_linear(x, packed, weight, bias, rows)
    except (AttributeError, RuntimeError) as err:  # a build without MKL
        missing['mkl_packed'] = str(err).splitlines()[0]
    try:
        session = _ort_linear(weight, bias, rows, threads)
        calls['ort'] = lambda: session(x)
    except ImportError as err:
        missing['ort'] = f'not importable: {err}'
    return calls, missing


def run(args: argparse.Namespace) -> dict:
    """Runs gemm mode; returns the JSON report (and prints one line per linear unless ``--json``)."""
    _, channels = arch_spec(args.arch)
    height, width = parse_size(args.size)
    clock = Clock(args.clock, torch.device('cpu'))
    threads = torch.get_num_threads()
    rows_out, missing = [], {}
    for stage, width_c in enumerate(channels):
        stride = 4 * 2 ** stage
        rows = args.batch * max(1, height // stride) * max(1, width // stride)
        for name, (k, n) in (('pwconv1', (width_c, 4 * width_c)), ('pwconv2', (4 * width_c, width_c))):
            calls, missing = linear_calls(rows, k, n, threads)
            times = time_interleaved(calls, args.rounds, args.iters, clock)
            flop = 2.0 * rows * k * n
            gflops = {impl: flop / statistics.median(t) / 1e9 for impl, t in times.items()}
            row = dict(stage=stage, linear=name, rows=rows, in_features=k, out_features=n, gflops=gflops,
                       vs_aten={impl: g / gflops['aten'] for impl, g in gflops.items() if impl != 'aten'})
            rows_out.append(row)
            if not args.json:
                rates = ' | '.join(f'{impl} {g:6.1f}' for impl, g in gflops.items())
                ratios = ' '.join(f'{impl}/aten x{r:.2f}' for impl, r in row['vs_aten'].items())
                print(f'stage {stage} {name} {rows}x{k}->{n}: GFLOP/s {rates} | {ratios}', flush=True)
    if not args.json:
        for impl, reason in missing.items():
            print(f'{impl}: {reason}')
    return dict(mode='gemm', arch=args.arch, size=args.size, batch=args.batch, clock=args.clock, env=environment(),
                command=' '.join(sys.argv), rows=rows_out, missing=missing)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``gemm`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    parser = subparsers.add_parser('gemm', help="the block linears' GEMM rate: PyTorch's, MKL packed, ONNX Runtime's")
    add_shape_arguments(parser)
    add_common_arguments(parser, iters=3, warmup=1, rounds=5)
    return parser
