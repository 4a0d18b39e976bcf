"""ONNX export of ConvNeXt backbones, UperNet segmentors and Mask R-CNN / Cascade Mask R-CNN detectors.

Every file holds standard ONNX operators only, so stock ``onnxruntime`` runs it without a custom-op library.
The exporter is pinned: ``torch.onnx.export(..., dynamo=False)``, the TorchScript tracer. The detector's
inference path has outputs whose size depends on the data (proposals after NMS, detections above the score
threshold); the tracer records those as ``NonZero`` / ``NonMaxSuppression`` with dynamic shapes, and
torchvision registers its ``roi_align`` and ``nms`` translations for this exporter. The dynamo exporter needs
each data-dependent size declared to ``torch.export`` and a translation of each torchvision op, and adds an
``onnxscript`` dependency; one exporter for the three kinds of files keeps them alike.

What a file holds (inputs, outputs, metadata):

- ``backbone``: input ``input`` (N x 3 x H x W float32, an image normalized as the config's data
  preprocessor does); outputs ``out{i}`` per out index (the stage's normalized features).
- ``seg``: inputs ``image`` (N x H x W x 3 uint8 RGB, after the config's test ``Resize``, top-left in the
  array) and ``image_size`` (N x 2 int64: each image's height and width there); outputs ``seg_logits``
  (N x C x H x W) and ``seg_label`` (N x H x W int64) over the whole array (:mod:`.seg_graph`).
- ``det``: the same inputs; outputs ``boxes`` (D x 4 xyxy, input pixels), ``scores`` (D), ``labels``
  (D int64), with a mask head ``mask_probs`` (D x M x M), and ``image_index`` (D int64) (:mod:`.det_graph`).

A file of a static shape takes images of that size or smaller: :class:`~convnext_dense.deploy.predictor.
OnnxPredictor` applies the test pipeline's ``Resize`` (stored in the metadata; OpenCV's bilinear resize has no
bit-exact ONNX equivalent) and places the image in an array of the file's shape, and the graph pads it there
after normalization, as mmdet and mmseg pad a batch. Metadata (``metadata_props``, JSON values): ``task``,
``classes``, ``palette``, ``preprocess``, ``postprocess``, ``input_shape`` (``null`` when the file takes any
size), ``batch_size`` (``null`` when any) and ``producer``.
"""
import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from convnext_dense.deploy.det_graph import DetectorGraph, check_detector
from convnext_dense.deploy.preprocess import exportable_copy
from convnext_dense.deploy.seg_graph import SegmentorGraph
from convnext_dense.errors import DeployError
from convnext_dense.io import atomic_write
from convnext_dense.version import __version__

#: ``RoiAlign`` with ``coordinate_transformation_mode`` (mmcv's ``aligned=True``) exists from opset 16 on.
MIN_OPSET = 16
#: Newest opset the TorchScript exporter writes.
MAX_OPSET = 20
DEFAULT_OPSET = 17
#: The exporter tested here (see the module docstring).
DYNAMO = False
TASKS = ('backbone', 'seg', 'det')


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DeployError(f'--opset {opset}: RoiAlign with half_pixel coordinates (mmcv aligned=True) needs opset '
                          f'>= {MIN_OPSET} and the exporter writes up to {MAX_OPSET}; pass --opset '
                          f'{DEFAULT_OPSET}')


def check_shape(shape: Sequence[int], minimum: int = 32) -> Tuple[int, int]:
    if len(shape) != 2 or min(int(s) for s in shape) < minimum:
        raise DeployError(f'--shape {" ".join(str(s) for s in shape)}: give the input size as H W, each at '
                          f'least {minimum} (ConvNeXt downsamples 32x)')
    return int(shape[0]), int(shape[1])


def check_batch(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise DeployError(f'--batch {batch_size}: give the number of images per call, at least 1')
    return int(batch_size)


def _export(module: nn.Module, example: Tuple[torch.Tensor, ...], input_names: List[str], output_names: List[str],
            dynamic_axes: Optional[Dict[str, Dict[int, str]]], opset: int) -> bytes:
    """Runs the pinned exporter and returns the serialized model."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in mm* code (they are constant per model)
        # and about its own deprecation: the choice of exporter is deliberate (module docstring).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', category=UserWarning, module='torch.onnx')
        torch.onnx.export(module, example, buffer, dynamo=DYNAMO, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def write_onnx(model: Any, out: Union[str, Path], metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Sets ``metadata`` (each value as JSON) in an ONNX model's ``metadata_props``, checks it, writes it atomically.

    Args:
        model: An ``onnx.ModelProto`` or its serialized bytes.
        out: Path of the ``.onnx`` file.
        metadata: Entries to add or replace.
    """
    import onnx
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    entries = {p.key: p.value for p in model.metadata_props}
    entries.update({key: json.dumps(value) for key, value in (metadata or {}).items()})
    del model.metadata_props[:]
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    atomic_write(model.SerializeToString(), out)
    return Path(out)


def producer(opset: int) -> str:
    return f'convnext_dense {__version__}, torch {torch.__version__} TorchScript exporter (dynamo=False), opset {opset}'


def export_backbone(backbone: nn.Module, out: Union[str, Path], shape: Sequence[int] = (224, 224),
                    dynamic: bool = False, opset: int = DEFAULT_OPSET, batch_size: int = 1,
                    preprocess: Optional[Dict[str, Any]] = None) -> Path:
    """Exports a backbone: a normalized N x 3 x H x W image to its multi-scale features.

    Args:
        backbone: The backbone (e.g. :class:`convnext_dense.models.ConvNeXt`).
        out: Path of the ``.onnx`` file.
        shape: Input height and width (the input size of a static file).
        dynamic: Batch, height and width dynamic instead of fixed to the example's.
        opset: ONNX opset version.
        batch_size: Batch of a static file (and of the example).
        preprocess: How to normalize an image for this backbone (stored in the metadata).

    Returns:
        The written path.
    """
    check_opset(opset)
    height, width = check_shape(shape)
    module = exportable_copy(backbone)
    example = torch.randn(check_batch(batch_size), 3, height, width)
    with torch.no_grad():
        num_outputs = len(module(example))
    names = [f'out{i}' for i in range(num_outputs)]
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'} for name in names})
    model_bytes = _export(module, (example,), ['input'], names, axes, opset)
    return write_onnx(model_bytes, out, dict(
        task='backbone', preprocess=preprocess, postprocess=None, classes=None, palette=None,
        input_shape=None if dynamic else [height, width], batch_size=None if dynamic else batch_size,
        producer=producer(opset)))


def model_task(model: nn.Module) -> str:
    """``'seg'`` for an mmseg ``EncoderDecoder``, ``'det'`` for an exportable detector, else :class:`DeployError`."""
    name = type(model).__name__
    if name == 'EncoderDecoder':
        return 'seg'
    if hasattr(model, 'roi_head') or hasattr(model, 'bbox_head'):
        check_detector(model)
        return 'det'
    raise DeployError(f'cannot export {name}: the export writes mmseg EncoderDecoder (UperNet) segmentors and '
                      f'Mask R-CNN / Cascade Mask R-CNN detectors; export its backbone with --what backbone')


def example_images(batch_size: int, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A batch of random uint8 images filling the input, and their sizes: what the model graphs take."""
    images = torch.randint(0, 256, (batch_size, height, width, 3), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return images, torch.tensor([[height, width]] * batch_size, dtype=torch.int64)


def export_model(model: nn.Module, out: Union[str, Path], shape: Sequence[int], dynamic: bool = False,
                 opset: int = DEFAULT_OPSET, dataset_meta: Optional[Dict[str, Any]] = None,
                 resize: Optional[Dict[str, Any]] = None, batch_size: int = 1) -> Path:
    """Exports an mmseg ``EncoderDecoder`` or an mmdet Mask R-CNN / Cascade Mask R-CNN, images to predictions.

    Args:
        model: The trained model (any mode; a copy is exported in eval mode).
        out: Path of the ``.onnx`` file.
        shape: Input height and width: the largest image a static file takes (smaller ones are padded).
        dynamic: Height and width dynamic (and, for a segmentor, the batch size) instead of fixed.
        opset: ONNX opset version (at least :data:`MIN_OPSET`).
        dataset_meta: ``classes`` and ``palette`` (stored in the metadata).
        resize: Settings of the test pipeline's ``Resize`` (stored in the metadata, applied by the predictor).
        batch_size: Images per call (a detector's batch size is fixed even when ``dynamic``).

    Returns:
        The written path.
    """
    check_opset(opset)
    height, width = check_shape(shape)
    batch_size = check_batch(batch_size)
    task = model_task(model)
    module = exportable_copy(model)
    if task == 'det':
        graph = DetectorGraph(module)
        names = graph.output_names
        postprocess = dict(mask_thr_binary=float(module.test_cfg.rcnn.get('mask_thr_binary', 0.5)))
        axes = {name: {0: 'detections'} for name in names}
    else:
        graph = SegmentorGraph(module, shape=None if dynamic else (height, width))
        names = ['seg_logits', 'seg_label']
        postprocess = dict(align_corners=bool(graph.align_corners), threshold=graph.threshold)
        axes = {'seg_logits': {0: 'batch', 2: 'height', 3: 'width'}, 'seg_label': {0: 'batch', 1: 'height',
                                                                                 2: 'width'}}
    if dynamic:
        axes['image'] = {1: 'height', 2: 'width'} if task == 'det' else {0: 'batch', 1: 'height', 2: 'width'}
        if task == 'seg':
            axes['image_size'] = {0: 'batch'}
    else:
        axes = {name: value for name, value in axes.items() if task == 'det'}
    # Any image of the shape serves to trace: every data-dependent size is a graph op, not a constant.
    example = example_images(batch_size, height, width)
    model_bytes = _export(graph, example, ['image', 'image_size'], names, axes or None, opset)
    meta = dataset_meta or {}
    preprocess = dict(graph.preprocess.describe(), input='image: N x H x W x 3 uint8 RGB, image_size: N x 2 int64',
                      resize=resize)
    file_batch = None if dynamic and task == 'seg' else batch_size
    return write_onnx(model_bytes, out, dict(
        task=task, classes=list(meta.get('classes') or []),
        palette=[list(c) for c in (meta.get('palette') or [])], preprocess=preprocess, postprocess=postprocess,
        input_shape=None if dynamic else [height, width], batch_size=file_batch, producer=producer(opset)))
