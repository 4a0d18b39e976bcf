"""``benchmark int8``: INT8 (QDQ, :func:`~convnext_dense.deploy.quantize.quantize_onnx`) against fp32 ONNX Runtime.

Cases:

- the ConvNeXt-T graphs of ``benchmark onnx`` (:data:`convnext_dense.benchmark.onnx.CASES`: backbone 224 and
  1344x800, UperNet-T 512, Mask R-CNN-T 800x1333), random weights, for speed only;
- trained models given as ``--seg CONFIG CHECKPOINT`` and ``--det CONFIG CHECKPOINT`` (e.g. the demo's), for
  speed and for the metric of each file on the config's test split (:func:`~convnext_dense.deploy.evaluate.
  evaluate_onnx`: mIoU; bbox and segm mAP), and the change in points.

Each case is exported once (static shape), quantized with the images of ``--calib`` (default: synthetic shapes
scenes), and each file is timed in its own child process as ``benchmark onnx`` times ONNX Runtime: ``--warmup``
calls, then the median of ``--rounds`` calls with ``--threads`` intra-op threads. A trained model's timed input
is its first test image, resized and padded as the predictor feeds it.

The verdict applies the rule for shipping the INT8 path: at least :data:`MIN_SPEEDUP` times fp32's speed and at
most :data:`MAX_POINTS_LOST` points of each metric lost, on every trained model.

After ``make demo`` (checkpoints under ``demo_output/work_dirs``)::

    convnext-dense benchmark int8 --threads 1 --calib data/shapes/images/train \\
        --seg demo_output/work_dirs/seg/upernet_convnext_shapes.py demo_output/work_dirs/seg/iter_1700.pth \\
        --det demo_output/work_dirs/det/det_from_checkpoint.py demo_output/work_dirs/det/iter_300.pth
"""
import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from convnext_dense.benchmark.onnx import CASES, export_case, run_child
from convnext_dense.deploy.quantize import QUANTIZED_OPS, WEIGHT_TYPES, quantize_onnx

#: The rule for shipping the INT8 path: this speed-up over fp32 ONNX Runtime ...
MIN_SPEEDUP = 1.3
#: ... at no more than this many points of any metric lost.
MAX_POINTS_LOST = 1.0
#: The metric of each kind of trained model, and its factor to points.
METRICS = {'seg': (('mIoU', 1.0),), 'det': (('coco/bbox_mAP', 100.0), ('coco/segm_mAP', 100.0))}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``int8`` on the benchmark's subcommand parsers."""
    parser = subparsers.add_parser('int8', help='INT8 (QDQ) vs fp32 ONNX Runtime: speed and metric',
                                   description=__doc__.split('\n\n')[0])
    parser.add_argument('--cases', nargs='*', choices=CASES, default=list(CASES),
                        help='ConvNeXt-T graphs with random weights (speed only); none: --cases')
    parser.add_argument('--seg', nargs=2, metavar=('CONFIG', 'CHECKPOINT'), help='a trained segmentor')
    parser.add_argument('--det', nargs=2, metavar=('CONFIG', 'CHECKPOINT'), help='a trained detector')
    parser.add_argument('--data-root', help='where the trained models\' test data lies, if not where the configs say')
    parser.add_argument('--calib', help='folder of calibration images (default: synthetic shapes scenes)')
    parser.add_argument('--calib-images', type=int, default=16, help='calibration images per case (default 16)')
    parser.add_argument('--weights', choices=WEIGHT_TYPES, default='int8', help='weight type (default int8)')
    parser.add_argument('--reduce-range', action=argparse.BooleanOptionalAction, default=True,
                        help='7-bit weights (default on: no VPMADDUBSW saturation without VNNI)')
    parser.add_argument('--ops', nargs='+', choices=QUANTIZED_OPS, default=list(QUANTIZED_OPS),
                        help='operators to quantize (default all three)')
    parser.add_argument('--eval-images', type=int,
                        help='evaluate on the first N test images only (default: all; a COCO metric counts the '
                             'other images of its annotation file as missed)')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads (default 1)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=3, help='timed calls per file (the median is reported)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--work-dir', help='keep the exported files here (default: a temporary folder)')
    parser.set_defaults(func=run)
    return parser


def synthetic_calibration(folder: Path, count: int, seed: int = 12345) -> Path:
    """``count`` shapes scenes (128x128 PNGs) in ``folder``: calibration images when none are given."""
    import numpy as np
    from PIL import Image

    from convnext_dense.datasets.shapes import make_scene
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(make_scene(rng)[0]).save(folder / f'{i:04d}.png')
    return folder


def export_trained(kind: str, config: str, checkpoint: str, work_dir: Path, data_root: Optional[str]
                   ) -> Dict[str, Any]:
    """Exports a trained model (default static shape) and stores its first test image's graph input."""
    import numpy as np

    from convnext_dense.deploy.evaluate import load_test_split
    from convnext_dense.deploy.from_config import export_from_config
    from convnext_dense.deploy.predictor import OnnxPredictor, read_rgb
    onnx_file, inputs = work_dir / f'trained_{kind}.onnx', work_dir / f'trained_{kind}.npz'
    export_from_config(config, checkpoint, onnx_file)
    dataset = load_test_split(config, data_root)[1]
    feed = OnnxPredictor(onnx_file).inputs([read_rgb(dataset[0]['data_samples'].img_path)])[0]
    np.savez(inputs, **feed)
    return dict(onnx=str(onnx_file), input=str(inputs), shape=list(feed['image'].shape))


def points(kind: str, metrics: Dict[str, Any]) -> Dict[str, float]:
    """The case's metrics in points (mIoU in %, mAP x 100)."""
    return {name: round(float(metrics[name]) * factor, 2) for name, factor in METRICS[kind]}


def measure(case: str, files: Dict[str, Any], calib: Path, args: argparse.Namespace,
            evaluate: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Quantizes one exported case, times both files and (for a trained model) evaluates both."""
    int8_file = str(Path(files['onnx']).with_name(Path(files['onnx']).stem + '_int8.onnx'))
    quantize_onnx(files['onnx'], int8_file, calib, max_images=args.calib_images, reduce_range=args.reduce_range,
                  weight_type=args.weights, op_types=args.ops)
    row = dict(case=case, shape=files['shape'], threads=args.threads, results={})
    for precision, path in (('fp32', files['onnx']), ('int8', int8_file)):
        spec = dict(case=case, runtime='onnxruntime', threads=args.threads, warmup=args.warmup, rounds=args.rounds,
                    onnx=path, input=files['input'])
        row['results'][precision] = run_child(spec)
    row['int8_speedup'] = row['results']['int8']['img_per_s'] / row['results']['fp32']['img_per_s']
    if evaluate:
        from convnext_dense.deploy.evaluate import evaluate_onnx
        kind = evaluate['kind']
        row['metrics'] = {precision: points(kind, evaluate_onnx(
            evaluate['config'], path, data_root=args.data_root, max_images=args.eval_images,
            num_threads=args.threads)) for precision, path in (('fp32', files['onnx']), ('int8', int8_file))}
        row['points_lost'] = {name: round(row['metrics']['fp32'][name] - row['metrics']['int8'][name], 2)
                              for name in row['metrics']['fp32']}
    return row


def verdict(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Whether every trained model passes the shipping rule (None without one)."""
    trained = [row for row in rows if 'metrics' in row]
    passes = [row['int8_speedup'] >= MIN_SPEEDUP and max(row['points_lost'].values()) <= MAX_POINTS_LOST
              for row in trained]
    return dict(rule=f'int8 >= {MIN_SPEEDUP}x fp32 img/s and <= {MAX_POINTS_LOST} point lost, every trained model',
                passes=all(passes) if trained else None, cases={row['case']: ok for row, ok in zip(trained, passes)})


def format_row(row: Dict[str, Any]) -> str:
    cells = [f'{row["case"]:<20}'] + [f'{p} {row["results"][p]["img_per_s"]:8.3f} img/s' for p in ('fp32', 'int8')]
    cells.append(f'int8/fp32 {row["int8_speedup"]:.2f}x')
    for name, lost in row.get('points_lost', {}).items():
        cells.append(f'{name} {row["metrics"]["fp32"][name]:.2f} -> {row["metrics"]["int8"][name]:.2f} '
                     f'({-lost:+.2f})')
    return ' | '.join(cells)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Measures every case; prints one line per case and writes ``args.out``."""
    import onnxruntime

    from convnext_dense.benchmark.common import environment
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(args.work_dir or tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        calib = Path(args.calib) if args.calib else synthetic_calibration(work_dir / 'calib', args.calib_images)
        rows = []
        # The trained models first: they decide the verdict.
        for kind, given in (('seg', args.seg), ('det', args.det)):
            if given:
                config, checkpoint = given
                files = export_trained(kind, config, checkpoint, work_dir, args.data_root)
                rows.append(measure(f'trained_{kind}', files, calib, args,
                                    evaluate=dict(kind=kind, config=config)))
                rows[-1].update(config=config, checkpoint=checkpoint)
                print(format_row(rows[-1]), flush=True)
        for case in args.cases:
            rows.append(measure(case, export_case(case, work_dir), calib, args))
            print(format_row(rows[-1]), flush=True)
    report = dict(benchmark='int8', environment=environment(), onnxruntime=onnxruntime.__version__,
                  threads=args.threads, warmup=args.warmup, rounds=args.rounds, calib=args.calib or 'synthetic',
                  calib_images=args.calib_images, weights=args.weights, reduce_range=args.reduce_range, ops=args.ops,
                  rows=rows, verdict=verdict(rows))
    print(f'verdict: {report["verdict"]}')
    if args.out:
        from convnext_dense.io import atomic_write
        atomic_write(json.dumps(report, indent=2), args.out)
    return report
