"""INT8 static quantization of an exported file for ONNX Runtime (QDQ format, calibrated on a folder of images).

:func:`quantize_onnx` runs ``onnxruntime.quantization.quantize_static`` on a file written by
``convnext-dense export`` (a backbone, a segmentor or a detector). The calibration images reach the graph as
inference images do: for a segmentor or detector through :meth:`~convnext_dense.deploy.predictor.OnnxPredictor.
inputs` (the stored test ``Resize``, the images top-left in the file's input shape, ``image_size`` beside), for
a backbone resized to the file's input shape and normalized with the stored mean / std.

Only the network's heavy operators are quantized: each ``Conv``, ``MatMul`` and ``Gemm`` whose weight is a
constant of the file (the backbone's, the neck's and the heads' layers). Every other operator computes in float:
the in-graph normalization and padding, UperNet's pooling matrices (computed from the input's size), box
decoding, NMS, Top-K and the mask probabilities the predictor pastes. A tensor that a quantized layer reads
reaches its other readers through the same quantize / dequantize pair (an FPN level on its way to ``RoiAlign``
and to the next convolution, say): they compute in float on its int8-rounded values. The output keeps the
input file's metadata, so the predictor and ``infer`` run it as they run the float file, and adds
``quantization`` (how it was made).
"""
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from convnext_dense.deploy.predictor import read_metadata, read_rgb
from convnext_dense.errors import DeployError

#: Image file endings read from a calibration folder.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm')
#: Operators quantized when their weight is a constant of the file.
QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')
CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
WEIGHT_TYPES = ('int8', 'uint8')


def calibration_images(calib_dir: Union[str, Path], limit: Optional[int] = None) -> List[Path]:
    """The image files of ``calib_dir`` in name order (at most ``limit``); a missing or empty folder is refused."""
    folder = Path(calib_dir)
    if not folder.is_dir():
        raise DeployError(f'calibration folder {folder}: no such folder; give a folder of calibration images '
                          f'(a few dozen photos like the ones the model will see)')
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DeployError(f'calibration folder {folder}: no images in it ({", ".join(IMAGE_SUFFIXES)}); put a '
                          f'few dozen photos like the ones the model will see there')
    return files[:limit] if limit else files


def file_metadata(model: Any, path: Union[str, Path]) -> Dict[str, Any]:
    """The JSON metadata of a file of ours (an ``onnx.ModelProto``); a file without it is refused."""
    meta = read_metadata({p.key: p.value for p in model.metadata_props}, path)
    task = meta['task']
    if task not in ('backbone', 'seg', 'det'):
        raise DeployError(f'{path}: unknown task {task!r} in its metadata; re-export it with convnext-dense export')
    if 'quantization' in meta:
        raise DeployError(f'{path} is already quantized; quantize the float file convnext-dense export wrote')
    return meta


def backbone_inputs(rgb_images: Sequence[np.ndarray], meta: Dict[str, Any], batch_size: int) -> Dict[str, Any]:
    """A backbone file's input for RGB images: each resized to the file's input shape, normalized as stored."""
    import mmcv
    height, width = meta.get('input_shape') or (224, 224)
    preprocess = meta.get('preprocess') or {}
    mean = np.array(preprocess.get('mean', (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.array(preprocess.get('std', (1.0, 1.0, 1.0)), dtype=np.float32)
    images = [mmcv.imresize(image, (width, height)).astype(np.float32) for image in rgb_images]
    images = [image[..., ::-1] if preprocess.get('to_bgr') else image for image in images]
    images += [images[0]] * (batch_size - len(images))
    batch = (np.stack(images) - mean) / std
    return {'input': np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)}


class FolderCalibration:
    """ONNX Runtime's ``CalibrationDataReader`` over a folder of images, fed as inference feeds the file.

    Args:
        path: The float file (its metadata decides the preprocessing).
        meta: Its metadata (:func:`file_metadata`).
        files: The calibration images.
    """

    def __init__(self, path: Union[str, Path], meta: Dict[str, Any], files: Sequence[Path]) -> None:
        self.path, self.meta, self.files = str(path), meta, list(files)
        self.batch_size = meta.get('batch_size') or 1
        self._feeds: Optional[Iterator[Dict[str, Any]]] = None

    def feeds(self) -> Iterator[Dict[str, Any]]:
        predictor = None
        if self.meta['task'] != 'backbone':
            from convnext_dense.deploy.predictor import OnnxPredictor
            predictor = OnnxPredictor(self.path, num_threads=1)
        for start in range(0, len(self.files), self.batch_size):
            images = [read_rgb(p) for p in self.files[start:start + self.batch_size]]
            if predictor is None:
                yield backbone_inputs(images, self.meta, self.batch_size)
            else:
                yield predictor.inputs(images)[0]

    def get_next(self) -> Optional[Dict[str, Any]]:
        if self._feeds is None:
            self._feeds = self.feeds()
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = None


def weight_nodes(model: Any, op_types: Sequence[str] = QUANTIZED_OPS) -> List[str]:
    """Names of the nodes of ``op_types`` (``Conv`` / ``MatMul`` / ``Gemm``) with a constant weight."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {output for node in model.graph.node if node.op_type == 'Constant' for output in node.output}
    return [node.name for node in model.graph.node
            if node.op_type in op_types and len(node.input) > 1 and node.input[1] in constants]


def quantize_onnx(model_path: Union[str, Path], out: Union[str, Path], calib_dir: Union[str, Path],
                  max_images: Optional[int] = 64, method: str = 'minmax', per_channel: bool = True,
                  reduce_range: bool = True, weight_type: str = 'int8',
                  op_types: Sequence[str] = QUANTIZED_OPS) -> Path:
    """Writes an INT8 (QDQ) copy of an exported file, calibrated on the images of ``calib_dir``.

    Activations are uint8 and weights int8 (ONNX Runtime's U8S8, its fastest x86 kernels). On x86 CPUs
    without VNNI (AVX2, AVX-512 before Cascade Lake) those kernels multiply with ``VPMADDUBSW``, whose 16-bit
    pair sums can saturate; ``reduce_range`` keeps weights to 7 bits so that they cannot, at the cost of one
    bit of weight precision. ONNX Runtime's quantization guide recommends exactly this for such CPUs; with
    VNNI it is not needed.

    Args:
        model_path: A float ``.onnx`` file written by ``convnext-dense export``.
        out: Path of the INT8 file.
        calib_dir: Folder of calibration images (the first ``max_images`` in name order are used).
        max_images: At most this many calibration images (None: all).
        method: Calibration of the activation ranges: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: One weight scale per output channel.
        reduce_range: 7-bit weights (see above).
        weight_type: ``'int8'`` (U8S8, the default) or ``'uint8'`` (U8U8: no saturation, other kernels).
        op_types: Which of :data:`QUANTIZED_OPS` to quantize (e.g. ``('MatMul',)``: the pointwise layers only).

    Returns:
        The written path.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from convnext_dense.deploy.export import write_onnx
    if method not in CALIBRATION_METHODS:
        raise DeployError(f'calibration method {method!r}: choose one of {", ".join(CALIBRATION_METHODS)}')
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DeployError(f'{model_path}: no such file; write it with convnext-dense export CONFIG CHECKPOINT '
                          f'--out {model_path}')
    try:
        model = onnx.load(str(model_path))
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file at all
        raise DeployError(f'{model_path}: not an ONNX file ({type(error).__name__}); give the file convnext-dense '
                          f'export wrote') from error
    meta = file_metadata(model, model_path)
    files = calibration_images(calib_dir, max_images)
    if weight_type not in WEIGHT_TYPES or not op_types or set(op_types) - set(QUANTIZED_OPS):
        raise DeployError(f'weight type {weight_type!r} / operators {list(op_types)}: choose the weights among '
                          f'{", ".join(WEIGHT_TYPES)} and the operators among {", ".join(QUANTIZED_OPS)}')
    nodes = weight_nodes(model, op_types)
    calibration = dict(method=method, images=len(files), folder=Path(calib_dir).name, format='QDQ',
                       activations='uint8', weights=weight_type, per_channel=per_channel, reduce_range=reduce_range,
                       quantized_nodes=len(nodes), operators=list(op_types))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # ONNX Runtime writes the file itself; it goes to a scratch folder beside ``out`` and reaches ``out``
    # atomically, with the float file's metadata.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix='.quantize-') as scratch:
        quantize_static(
            str(model_path), str(Path(scratch) / 'int8.onnx'), FolderCalibration(model_path, meta, files),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8 if weight_type == 'int8' else QuantType.QUInt8,
            per_channel=per_channel, reduce_range=reduce_range, nodes_to_quantize=nodes,
            op_types_to_quantize=list(op_types),
            calibrate_method={'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
                              'percentile': CalibrationMethod.Percentile}[method])
        quantized = onnx.load(str(Path(scratch) / 'int8.onnx'))
    # The quantizer adds entries of its own that are not JSON; every reader of ours parses each entry as JSON.
    del quantized.metadata_props[:]
    return write_onnx(quantized, out, dict(meta, quantization=calibration))
