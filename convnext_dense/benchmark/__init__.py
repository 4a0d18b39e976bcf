"""Speed and memory of our ConvNeXt next to timm's and mmpretrain's, and of whole detectors / segmentors.

Each mode is a module with ``add_parser(subparsers)`` and ``run(args) -> dict`` (the JSON report); each
prints a table, or one JSON object with ``--json``:

- ``backbone`` (:mod:`.backbone`): our ConvNeXt, timm's and mmpretrain's with the same weights, interleaved.
- ``model CONFIG`` (:mod:`.model`): a detector / segmentor config with our, mmpretrain's and a ``with_cp``
  backbone, each variant in a fresh process.
- ``kernels`` (:mod:`.kernels`): each CPU kernel of ``convnext_dense/ops`` against PyTorch's ops, per stage.
- ``profile`` (:mod:`.profile`): ``torch.profiler`` time of an inference step by stage and block part, ours
  beside timm's.
- ``gemm`` (:mod:`.gemm`): the block linears' GEMM rate: PyTorch's, MKL's with a packed weight, ONNX Runtime's.
- ``layernorm`` (:mod:`.layernorm`): the channels-first LayerNorm options.
- ``onnx`` (:mod:`.onnx`) and ``int8`` (:mod:`.int8`), where present and importable (onnxruntime).

On CUDA, ``cudnn.benchmark`` is on for every implementation (convolution algorithms are chosen per shape, as a
detector's training would), and TF32 stays at PyTorch's defaults (reported in the header).

Timing: ``--clock wall`` (default) is elapsed time (CUDA synchronized); ``--clock cpu`` is this process's CPU
time, which stays fair when other jobs share the cores (use it with ``--threads 1``). No number here is
asserted by the tests: the benchmark is the instrument.

    python tools/analysis/benchmark.py backbone
    python tools/analysis/benchmark.py backbone --sizes 224 --batch 32 --dtypes fp32 bf16 --compile on --json
    python tools/analysis/benchmark.py model configs/det/cascade_convnext_t_3x.py --size 800 1344 --batch 2
    python tools/analysis/benchmark.py kernels --threads 1 --clock cpu
    python tools/analysis/benchmark.py layernorm --threads 1 --clock cpu
    python tools/analysis/benchmark.py profile --threads 1 --size 224 --batch 8
"""
import argparse
import importlib
import json
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

#: Mode modules, in the order of ``--help``; optional ones are skipped where they cannot be imported.
MODES = ('backbone', 'kernels', 'profile', 'gemm', 'model', 'layernorm', 'mmcv_ops')
OPTIONAL_MODES = ('onnx', 'int8')


def _mode_modules():
    modules = [importlib.import_module(f'{__name__}.{name}') for name in MODES]
    for name in OPTIONAL_MODES:
        try:
            modules.append(importlib.import_module(f'{__name__}.{name}'))
        except ImportError:  # not part of this install, or its runtime (e.g. onnxruntime) is missing
            pass
    return modules


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, Callable[[argparse.Namespace], dict]]]:
    """The benchmark's parser with every available mode, and each mode's ``run`` by command name."""
    parser = argparse.ArgumentParser(prog='convnext-dense benchmark', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='command', required=True)
    runners = {}
    for module in _mode_modules():
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        runners.update({name: module.run for name in set(subparsers.choices) - before})
    return parser, runners


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses a benchmark command line (``backbone ...``, ``model CONFIG ...``, ...)."""
    return build_parser()[0].parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one benchmark mode and prints (and with ``--save-json`` writes) its report.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads ``sys.argv``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ('_memory_probe', '_model_probe'):  # child processes of backbone / model mode
        if argv[0] == '_memory_probe':
            from convnext_dense.benchmark.backbone import memory_probe as probe
        else:
            from convnext_dense.benchmark.model_probe import model_probe as probe
        probe(argv[1])
        return 0
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = runners[args.command](args)
    if getattr(args, 'json', False):  # the onnx and int8 modes print their own lines and have no --json
        print(json.dumps(report, indent=1))
    if getattr(args, 'save_json', None):
        from convnext_dense.io import atomic_write
        atomic_write(json.dumps(report, indent=1), args.save_json)
    return 0
