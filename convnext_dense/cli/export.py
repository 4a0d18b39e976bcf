"""``convnext-dense export CONFIG CHECKPOINT --out model.onnx``: a trained model to an ONNX file.

The file runs on stock ONNX Runtime (standard operators only) and takes RGB images as they are; ``convnext-dense
infer model.onnx IMAGE...`` runs it. See :mod:`convnext_dense.deploy.export` for what the file holds.
"""
import argparse
import sys
from typing import Optional, Sequence

from convnext_dense.cli.weights import add_weights_mirror_argument, resolve_model
from convnext_dense.errors import MissingDependencyError


def build_parser() -> argparse.ArgumentParser:
    from convnext_dense.deploy.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
    parser = argparse.ArgumentParser(
        prog='convnext-dense export',
        description='Export a detector (Mask R-CNN, Cascade Mask R-CNN), a segmentor (UperNet) or its backbone '
                    'to ONNX, runnable by stock onnxruntime.')
    parser.add_argument('config', help='detector or segmentor config file, or a model name (convnext-dense zoo)')
    parser.add_argument('checkpoint', nargs='?',
                        help='whole-model checkpoint (file or URL) trained with the config (a model name: its '
                             'released file)')
    parser.add_argument('--out', required=True, help='path of the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width: a file without --dynamic-shape takes images up to this size '
                             'after the test Resize, padded (default: the test Resize scale, padded to the size '
                             'divisor; 224 224 for --what backbone)')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='accept any input height and width (and batch size for a segmentor or backbone)')
    parser.add_argument('--batch', type=int, default=1, metavar='N',
                        help='images per call (default 1; infer --batch-size N uses it)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})')
    parser.add_argument('--what', choices=('model', 'backbone'), default='model',
                        help='model: images to predictions (default); backbone: normalized images to features')
    add_weights_mirror_argument(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError as error:
        raise MissingDependencyError('export needs onnx: pip install "convnext_dense[deploy]"') from error
    from convnext_dense.deploy.from_config import export_from_config
    resolved = resolve_model(args.config, args.checkpoint, args.weights_mirror)
    path = export_from_config(resolved.config, resolved.checkpoint, args.out, shape=args.shape,
                              dynamic=args.dynamic_shape, opset=args.opset, what=args.what, batch_size=args.batch)
    shape = 'any input size' if args.dynamic_shape else 'static shape'
    print(f'wrote {path} ({args.what}, opset {args.opset}, {shape}, batch {args.batch})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
