"""Runs an exported detector or segmentor with stock ONNX Runtime and returns mmdet / mmseg data samples.

:class:`OnnxPredictor` takes RGB images as they are and returns what the PyTorch path returns, so ``infer``
writes the same pictures and JSON from either: a ``DetDataSample`` (``pred_instances`` with boxes in the
image's pixels, scores, labels, masks) or a ``SegDataSample`` (``pred_sem_seg``, ``seg_logits``).

Around the graph, with the OpenMMLab code the PyTorch path runs:

1. the test pipeline's ``Resize`` (stored in the file's metadata), with mmcv's ``Resize`` transform;
2. batching: the resized images top-left in one array of the file's input shape (a static file) or of the
   batch's largest image (a file of any size), their sizes beside; the graph normalizes them and pads each
   beyond its size, as mmdet's and mmseg's data preprocessors pad a batch. An image larger than a static
   file's shape is refused with the fix (another ``--shape`` or ``--dynamic-shape``);
3. for detectors, :func:`paste_masks`: boxes back to the original image's pixels and each instance's
   M x M mask probabilities pasted into the image with mmdet's ``_do_paste_mask``, thresholded at the
   model's ``mask_thr_binary``; for segmentors, each image's logits cropped from the batch and resized to
   its original size before the label map is taken, as mmseg's ``postprocess_result`` does.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from convnext_dense.errors import DeployError


def read_rgb(path: Union[str, Path]) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, read as the test pipeline's ``LoadImageFromFile`` reads it."""
    import mmcv
    image = mmcv.imread(str(path), flag='color')
    if image is None:
        raise DeployError(f'{path} is not a readable image; convert it to PNG or JPEG, or remove it')
    return np.ascontiguousarray(image[..., ::-1])


def read_metadata(entries: Dict[str, str], path: Union[str, Path]) -> Dict[str, Any]:
    """The metadata ``convnext-dense export`` stored in a file, each entry parsed from JSON.

    Args:
        entries: The file's metadata as stored, key -> JSON text (onnx's ``metadata_props`` or ONNX Runtime's
            ``custom_metadata_map``).
        path: The file, named in the error.

    Raises:
        DeployError: The file has no ``task`` entry or an entry is not JSON: it is not one of ours.
    """
    try:
        meta = {key: json.loads(value) for key, value in entries.items()}
        meta['task']
    except (KeyError, ValueError) as error:
        raise DeployError(f'{path}: not written by convnext-dense export (no task in its metadata); export the '
                          f'model with convnext-dense export CONFIG CHECKPOINT') from error
    return meta


def resize_image(image: np.ndarray, resize: Optional[Dict[str, Any]]) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Applies the test pipeline's ``Resize`` settings with mmcv's transform.

    Args:
        image: H x W x 3 image.
        resize: The ``Resize`` arguments stored at export (``scale``, ``keep_ratio``, ...), or None.

    Returns:
        The resized image and mmdet's ``scale_factor`` (w_scale, h_scale).
    """
    if not resize:
        return image, (1.0, 1.0)
    from mmcv.transforms import Resize
    arguments = {key: tuple(value) if isinstance(value, list) else value for key, value in resize.items()}
    results = Resize(**arguments)(dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2]))
    return results['img'], tuple(float(s) for s in results['scale_factor'])


def paste_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                threshold: float = 0.5) -> torch.Tensor:
    """Pastes each instance's mask probabilities into an image-sized mask, as mmdet's ``FCNMaskHead`` does.

    Args:
        mask_probs: N x M x M probabilities of each instance's class inside its box.
        boxes: N x 4 xyxy boxes in the target image's pixels.
        height: Target image height.
        width: Target image width.
        threshold: ``mask_thr_binary``: masks are ``prob >= threshold`` (bool); a negative value keeps
            the probabilities as uint8 (``prob * 255``), as mmdet does.

    Returns:
        N x height x width masks.
    """
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    dtype = torch.bool if threshold >= 0 else torch.uint8
    masks = torch.zeros(len(mask_probs), height, width, dtype=dtype)
    # One instance at a time with skip_empty: mmdet's CPU path, which pastes into each box's extent only.
    for i in range(len(mask_probs)):
        index = torch.tensor([i])
        pasted, spatial = _do_paste_mask(mask_probs[index][:, None], boxes[index], height, width, skip_empty=True)
        masks[(index,) + spatial] = (pasted >= threshold) if threshold >= 0 else (pasted * 255).to(torch.uint8)
    return masks


def _label_map(logits: torch.Tensor, threshold: Optional[float]) -> torch.Tensor:
    """1 x H x W labels from 1 x C x H x W logits: argmax, or ``sigmoid > threshold`` for one channel (mmseg)."""
    if logits.shape[1] == 1:
        return (logits.sigmoid() > threshold).long()[0]
    return logits.argmax(dim=1)


class OnnxPredictor:
    """An exported detector or segmentor, run by ONNX Runtime.

    Args:
        path: The ``.onnx`` file written by ``convnext-dense export``.
        num_threads: ONNX Runtime's intra-op threads (None: its default, all cores).
        providers: ONNX Runtime execution providers (default: the CPU).
        batch_size: Images per call: a file of a fixed batch size takes exactly its own (None: the file's);
            a file of any batch size takes any (None: 1).

    Attributes:
        task: ``'det'`` or ``'seg'``.
        dataset_meta: ``classes`` and ``palette`` stored at export.
        batch_size: Images per ONNX Runtime call.
    """

    def __init__(self, path: Union[str, Path], num_threads: Optional[int] = None,
                 providers: Sequence[str] = ('CPUExecutionProvider',), batch_size: Optional[int] = None) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise DeployError(f'{self.path}: no such file; write one with convnext-dense export CONFIG CHECKPOINT '
                              f'--out {self.path}')
        try:
            import onnxruntime
        except ImportError as error:
            raise DeployError('running an .onnx file needs onnxruntime: pip install convnext_dense[deploy]') from error
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.runtime = onnxruntime.InferenceSession(self.path, options, providers=list(providers))
        meta = read_metadata(self.runtime.get_modelmeta().custom_metadata_map, self.path)
        self.task = meta['task']
        if self.task not in ('det', 'seg'):
            raise DeployError(f'{self.path} holds a {self.task}, which returns features, not predictions; export '
                              f'the whole model (--what model) to run it on images')
        self.dataset_meta = dict(classes=tuple(meta.get('classes') or ()),
                                 palette=[tuple(c) for c in meta.get('palette') or ()])
        self.preprocess: Dict[str, Any] = meta.get('preprocess') or {}
        self.postprocess: Dict[str, Any] = meta.get('postprocess') or {}
        self.input_shape: Optional[Sequence[int]] = meta.get('input_shape')
        self.file_batch_size: Optional[int] = meta.get('batch_size', 1)
        self.batch_size = self._batch_size(batch_size)
        self.output_names = [output.name for output in self.runtime.get_outputs()]

    def _batch_size(self, requested: Optional[int]) -> int:
        if self.file_batch_size is None:
            return int(requested or 1)
        if requested not in (None, self.file_batch_size):
            raise DeployError(f'{self.path} takes batches of {self.file_batch_size} images (exported with --batch '
                              f'{self.file_batch_size}); pass --batch-size {self.file_batch_size}, or re-export '
                              f'with --batch {requested}')
        return self.file_batch_size

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, 'shape', type(image).__name__)
            raise DeployError(f'{self.path} takes an H x W x 3 RGB image (numpy uint8), got {shape}; load it with '
                              f'PIL.Image.open(path).convert("RGB")')
        if image.dtype != np.uint8:
            raise DeployError(f'{self.path} takes a uint8 RGB image, got {image.dtype}; convert it with '
                              f'np.clip(image, 0, 255).astype(np.uint8)')
        return np.ascontiguousarray(image)

    def _check_fits(self, shape: Tuple[int, int]) -> None:
        if self.input_shape is not None and (shape[0] > self.input_shape[0] or shape[1] > self.input_shape[1]):
            after = ' after the test Resize' if self.preprocess.get('resize') else ''
            height, width = self.input_shape
            raise DeployError(
                f'{self.path} takes images up to {height}x{width} (exported with a static shape), this one is '
                f'{shape[0]}x{shape[1]}{after}; re-export with --shape {max(height, shape[0])} '
                f'{max(width, shape[1])} or --dynamic-shape')

    def _batch(self, images: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """The images top-left in one array of the input shape, their sizes (a fixed batch filled up with
        blanks of the first image's size, which leave the batch's padded extent as it is)."""
        count = max(len(images), self.file_batch_size or 0)
        height, width = self.input_shape or [max(image.shape[i] for image in images) for i in (0, 1)]
        batch = np.zeros((count, height, width, 3), dtype=np.uint8)
        sizes = np.tile(np.array(images[0].shape[:2], dtype=np.int64), (count, 1))
        for i, image in enumerate(images):
            batch[i, :image.shape[0], :image.shape[1]] = image
            sizes[i] = image.shape[:2]
        return batch, sizes

    def run(self, rgb_images: Sequence[np.ndarray]) -> Tuple[Dict[str, np.ndarray], List[Dict[str, Any]]]:
        """One call of the graph on up to ``batch_size`` images: its raw outputs by name and each image's meta."""
        feed, metas = self.inputs(rgb_images)
        outputs = self.runtime.run(None, feed)
        return dict(zip(self.output_names, outputs)), metas

    def inputs(self, rgb_images: Sequence[np.ndarray]) -> Tuple[Dict[str, np.ndarray], List[Dict[str, Any]]]:
        """The graph's inputs for up to ``batch_size`` images (resized, batched) and each image's meta."""
        if not 0 < len(rgb_images) <= self.batch_size:
            raise DeployError(f'{self.path}: give 1 to {self.batch_size} images per call, got {len(rgb_images)}')
        resized, metas = [], []
        for image in rgb_images:
            image = self._check_image(image)
            small, scale_factor = resize_image(image, self.preprocess.get('resize'))
            self._check_fits(small.shape[:2])
            resized.append(small)
            metas.append(dict(ori_shape=tuple(image.shape[:2]), img_shape=tuple(small.shape[:2]),
                              scale_factor=scale_factor))
        batch, sizes = self._batch(resized)
        return {'image': batch, 'image_size': sizes}, metas

    def _calls(self, rgb_images: Sequence[np.ndarray]) -> List[Sequence[np.ndarray]]:
        """The images of each graph call: ``batch_size`` at a time; for a segmentor, of one size only, because
        mmseg's test mode runs a batch unpadded and refuses mixed sizes (padding would change the logits)."""
        runs: List[List[np.ndarray]] = []
        for image in rgb_images:
            joins = runs and len(runs[-1]) < self.batch_size and (
                self.task == 'det' or getattr(runs[-1][-1], 'shape', None) == getattr(image, 'shape', None))
            if joins:
                runs[-1].append(image)
            else:
                runs.append([image])
        return runs

    def predict(self, rgb_images: Sequence[np.ndarray]) -> list:
        """Predicts H x W x 3 uint8 RGB images, ``batch_size`` per call: ``DetDataSample``s or ``SegDataSample``s."""
        samples = []
        convert = self._detections if self.task == 'det' else self._segmentation
        for images in self._calls(rgb_images):
            outputs, metas = self.run(images)
            samples += [convert(outputs, meta, i) for i, meta in enumerate(metas)]
        return samples

    def __call__(self, rgb_image: np.ndarray):
        """Predicts one H x W x 3 uint8 RGB image: a ``DetDataSample`` or a ``SegDataSample``."""
        return self.predict([rgb_image])[0]

    def _detections(self, outputs: Dict[str, np.ndarray], meta: Dict[str, Any], image: int):
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        mine = outputs['image_index'] == image
        boxes = torch.from_numpy(outputs['boxes'][mine]).float()
        # mmdet rescales in place: bboxes /= scale_factor (w, h, w, h)
        boxes = boxes / boxes.new_tensor(meta['scale_factor']).repeat((1, 2))
        instances = InstanceData(bboxes=boxes, scores=torch.from_numpy(outputs['scores'][mine]).float(),
                                 labels=torch.from_numpy(outputs['labels'][mine]).long())
        if 'mask_probs' in outputs:
            height, width = meta['ori_shape']
            instances.masks = paste_masks(torch.from_numpy(outputs['mask_probs'][mine]), boxes, height, width,
                                          self.postprocess.get('mask_thr_binary', 0.5))
        sample = DetDataSample(metainfo=meta)
        sample.pred_instances = instances
        return sample

    def _segmentation(self, outputs: Dict[str, np.ndarray], meta: Dict[str, Any], image: int):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        height, width = meta['img_shape']
        logits = torch.from_numpy(outputs['seg_logits'][image:image + 1, :, :height, :width])
        if meta['img_shape'] != meta['ori_shape']:
            logits = F.interpolate(logits, size=meta['ori_shape'], mode='bilinear',
                                   align_corners=self.postprocess.get('align_corners', False))
            label = _label_map(logits, self.postprocess.get('threshold'))
        else:
            label = torch.from_numpy(outputs['seg_label'][image:image + 1, :height, :width]).long()
        sample = SegDataSample(metainfo=meta)
        sample.seg_logits = PixelData(data=logits[0])
        sample.pred_sem_seg = PixelData(data=label)
        return sample
