"""``benchmark onnx``: ONNX Runtime against PyTorch eager on the CPU, side by side, for the exported models.

Cases: the ConvNeXt-T backbone at 224x224 and 1344x800 (batch 1), UperNet-T at 512x512 and Mask R-CNN-T at
800x1333 (one image, whole-image inference as exported: preprocessing in the graph, logits / detections out).
Weights are random (timing needs none; nothing is downloaded). A random box classifier spreads each RoI's
softmax over all classes, below the 0.05 score threshold; its weights are scaled by
:data:`CLASSIFIER_GAIN` so that, as with a trained detector, a few classes per RoI pass the threshold and
NMS keeps the image's 100 best detections (the row reports how many boxes NMS got and how many it kept).

For each case the model is exported once (static shape, opset 17). Then each runtime runs in its own child
process, so that its peak memory is its own: the child loads the model, runs ``--warmup`` calls, then
``--rounds`` timed calls with ``--threads`` intra-op threads (PyTorch: ``torch.set_num_threads``; ONNX Runtime:
``intra_op_num_threads``, graph optimizations on). Both runtimes run the same module: the one that was exported
(``SegmentorGraph`` / ``DetectorGraph`` / the backbone), PyTorch in eager mode under ``torch.inference_mode``.
Reported per runtime: images/s (median call), ``peak_rss_mib`` (the child's peak resident set: runtime,
weights and activations) and ``step_mib`` (its growth over the resident set just before the first call).

Run: ``python -m convnext_dense.benchmark.onnx --threads 1 --out onnx_cpu.json`` (or ``convnext-dense
benchmark onnx ...``).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

CASES = ('backbone_224', 'backbone_1344x800', 'upernet_512', 'mask_rcnn_800x1333')
# (kind, config file name, H, W); the configs are found by name under configs/.
CASE_SPECS = {
    'backbone_224': ('backbone', None, 224, 224),
    'backbone_1344x800': ('backbone', None, 800, 1344),
    'upernet_512': ('seg', 'upernet_convnext_t_512_160k.py', 512, 512),
    'mask_rcnn_800x1333': ('det', 'mask_rcnn_convnext_t_3x.py', 800, 1333),
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``onnx`` on the benchmark's subcommand parsers."""
    parser = subparsers.add_parser('onnx', help='ONNX Runtime vs PyTorch eager on the CPU (exported models)',
                                   description=__doc__.split('\n\n')[0])
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--cases', nargs='+', choices=CASES, default=list(CASES))
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads of both runtimes (default 1)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=5,
                        help='timed calls per runtime, at least 1 (the median is reported)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--work-dir', help='keep the exported files here (default: a temporary folder)')


def find_config(name: str) -> Path:
    """A config file by name under the repository's (or the installed package's) ``configs/``."""
    for root in (REPO_ROOT / 'configs', Path(__file__).resolve().parents[1] / 'configs'):
        found = sorted(root.rglob(name)) if root.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError(f'config {name} not found under configs/')


#: Gain on the random box classifier's weights (see the module docstring).
CLASSIFIER_GAIN = 30.0


def _peak_classifier(detector: Any) -> None:
    import torch.nn as nn
    heads = detector.roi_head.bbox_head
    for head in (heads if isinstance(heads, nn.ModuleList) else [heads]):
        head.fc_cls.weight.data.mul_(CLASSIFIER_GAIN)


def build_case(case: str):
    """The PyTorch module of a case (random weights, eval mode) and its inputs by name."""
    import torch
    kind, config, height, width = CASE_SPECS[case]
    if kind == 'backbone':
        from convnext_dense.models import ConvNeXt
        return ConvNeXt(arch='tiny', layer_scale_init_value=1.0).eval(), dict(input=torch.randn(1, 3, height, width))
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import MODELS, init_default_scope

    import convnext_dense  # noqa: F401
    from convnext_dense.config import syncbn_to_bn
    from convnext_dense.deploy.det_graph import DetectorGraph
    from convnext_dense.deploy.export import example_images
    from convnext_dense.deploy.seg_graph import SegmentorGraph
    cfg = Config.fromfile(str(find_config(config)))
    init_default_scope(cfg.default_scope)
    model_cfg = syncbn_to_bn(cfg.model.to_dict())
    model_cfg['backbone']['init_cfg'] = None
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(model_cfg)).eval()
    if kind == 'det':
        _peak_classifier(model)
    graph = DetectorGraph(model) if kind == 'det' else SegmentorGraph(model, shape=(height, width))
    image, image_size = example_images(1, height, width)
    return graph.eval(), dict(image=image, image_size=image_size)


def _status_mib(field: str) -> float:
    # /proc/self/status, not getrusage: ru_maxrss survives execve, so a child would report its parent's peak.
    with open('/proc/self/status') as f:
        line = next(line for line in f if line.startswith(field + ':'))
    return int(line.split()[1]) / 1024  # kB


def _rss_mib() -> float:
    return _status_mib('VmRSS')


def _peak_rss_mib() -> float:
    return _status_mib('VmHWM')


def _time_calls(call: Callable[[], Any], warmup: int, rounds: int) -> Dict[str, float]:
    before = _rss_mib()
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        outputs = call()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    # Output shapes: for a detector, the first dimension is the number of detections kept.
    return dict(img_per_s=1.0 / median, median_s=median, peak_rss_mib=_peak_rss_mib(),
                step_mib=max(0.0, _peak_rss_mib() - before), output_shapes=[list(o.shape) for o in outputs])


def child(spec: Dict[str, Any]) -> Dict[str, float]:
    """One runtime on one case, in this (fresh) process."""
    if spec['runtime'] == 'onnxruntime':
        import numpy as np
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = spec['threads']
        options.inter_op_num_threads = 1
        runtime = onnxruntime.InferenceSession(spec['onnx'], options, providers=['CPUExecutionProvider'])
        feed = dict(np.load(spec['input']))
        return _time_calls(lambda: runtime.run(None, feed), spec['warmup'], spec['rounds'])
    import torch
    torch.set_num_threads(spec['threads'])
    module, inputs = build_case(spec['case'])
    module.load_state_dict(torch.load(spec['weights'], map_location='cpu', weights_only=True))
    with torch.inference_mode():
        return _time_calls(lambda: module(*inputs.values()), spec['warmup'], spec['rounds'])


# The child loads this file alone, so that the ONNX Runtime child imports neither torch nor the package (whose
# import loads torch): its memory is ONNX Runtime's own.
_CHILD = ('import importlib.util, sys; spec = importlib.util.spec_from_file_location("benchmark_onnx_child", {path!r}); '
          'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); '
          'sys.exit(module.main(sys.argv[1:]))')


def run_child(spec: Dict[str, Any]) -> Dict[str, float]:
    """Runs :func:`child` in a fresh Python process (see ``_CHILD``) and returns its measurement."""
    command = [sys.executable, '-c', _CHILD.format(path=str(Path(__file__).resolve())), '--child', json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f'{spec["runtime"]} on {spec["case"]} failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def export_case(case: str, work_dir: Path) -> Dict[str, Any]:
    """Exports one case (static shape, opset 17) into ``work_dir``.

    Returns:
        Paths of the ``onnx`` file, the module's ``weights`` and its example ``input`` (``.npz``), and the
        example's ``shape``.
    """
    import numpy as np
    import torch

    from convnext_dense.deploy import export as exporter
    module, example = build_case(case)
    onnx_file, weights, inputs = (work_dir / f'{case}.onnx', work_dir / f'{case}.pth', work_dir / f'{case}.npz')
    torch.save(module.state_dict(), weights)
    np.savez(inputs, **{name: value.numpy() for name, value in example.items()})
    kind, _, height, width = CASE_SPECS[case]
    if kind == 'backbone':
        exporter.export_backbone(module, onnx_file, (height, width))
    else:
        exporter.export_model(module.segmentor if kind == 'seg' else module.detector, onnx_file, (height, width))
    first = next(iter(example.values()))
    return dict(onnx=str(onnx_file), weights=str(weights), input=str(inputs), shape=list(first.shape))


def run_case(case: str, work_dir: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """Exports one case and measures both runtimes on it."""
    files = export_case(case, work_dir)
    row = dict(case=case, shape=files['shape'], threads=args.threads, results={})
    for runtime in ('pytorch_eager', 'onnxruntime'):
        spec = dict(case=case, runtime=runtime, threads=args.threads, warmup=args.warmup, rounds=args.rounds,
                    onnx=files['onnx'], weights=files['weights'], input=files['input'])
        row['results'][runtime] = run_child(spec)
    row['ort_speedup'] = row['results']['onnxruntime']['img_per_s'] / row['results']['pytorch_eager']['img_per_s']
    return row


def format_row(row: Dict[str, Any]) -> str:
    cells = [f'{row["case"]:<20}']
    for runtime in ('pytorch_eager', 'onnxruntime'):
        r = row['results'][runtime]
        cells.append(f'{runtime} {r["img_per_s"]:7.2f} img/s peak {r["peak_rss_mib"]:6.0f} MiB '
                     f'(step {r["step_mib"]:5.0f})')
    cells.append(f'ORT/eager {row["ort_speedup"]:.2f}x')
    return ' | '.join(cells)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Measures every case in ``args.cases``; prints one line per case and writes ``args.out``."""
    import onnxruntime
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(args.work_dir or tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for case in args.cases:
            rows.append(run_case(case, work_dir, args))
            print(format_row(rows[-1]), flush=True)
    report = dict(benchmark='onnx', torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                  threads=args.threads, warmup=args.warmup, rounds=args.rounds, rows=rows)
    if args.out:
        from convnext_dense.io import atomic_write
        atomic_write(json.dumps(report, indent=2), args.out)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m convnext_dense.benchmark.onnx', description=__doc__)
    _add_arguments(parser)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    run(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
