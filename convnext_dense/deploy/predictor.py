"""Runs an exported detector or segmentor with stock ONNX Runtime and returns mmdet / mmseg data samples.

:class:`OnnxPredictor` takes an RGB image as it is and returns what the PyTorch path returns, so ``infer``
writes the same pictures and JSON from either: a ``DetDataSample`` (``pred_instances`` with boxes in the
image's pixels, scores, labels, masks) or a ``SegDataSample`` (``pred_sem_seg``, ``seg_logits``).

Two steps run in Python around the graph, both with the OpenMMLab code the PyTorch path runs:

1. the test pipeline's ``Resize`` (stored in the file's metadata), with mmcv's ``Resize`` transform;
2. for detectors, :func:`paste_masks`: boxes back to the original image's pixels and each instance's
   M x M mask probabilities pasted into the image with mmdet's ``_do_paste_mask``, then thresholded at the
   model's ``mask_thr_binary``; for segmentors, the logits resized to the original size before the argmax.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from convnext_dense.errors import DeployError


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


class OnnxPredictor:
    """An exported detector or segmentor, run by ONNX Runtime.

    Args:
        path: The ``.onnx`` file written by ``convnext-dense export``.
        num_threads: ONNX Runtime's intra-op threads (None: its default, all cores).
        providers: ONNX Runtime execution providers (default: the CPU).

    Attributes:
        task: ``'det'`` or ``'seg'``.
        dataset_meta: ``classes`` and ``palette`` stored at export.
    """

    def __init__(self, path: Union[str, Path], num_threads: Optional[int] = None,
                 providers: Sequence[str] = ('CPUExecutionProvider',)) -> None:
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
        meta = self.runtime.get_modelmeta().custom_metadata_map
        try:
            meta = {key: json.loads(value) for key, value in meta.items()}
            self.task = meta['task']
        except (KeyError, ValueError) as error:
            raise DeployError(f'{self.path}: not written by convnext-dense export (no task in its metadata); '
                              f'export the model with convnext-dense export CONFIG CHECKPOINT') from error
        if self.task not in ('det', 'seg'):
            raise DeployError(f'{self.path} holds a {self.task}, which returns features, not predictions; export '
                              f'the whole model (--what model) to run it on images')
        self.dataset_meta = dict(classes=tuple(meta.get('classes') or ()),
                                 palette=[tuple(c) for c in meta.get('palette') or ()])
        self.preprocess: Dict[str, Any] = meta.get('preprocess') or {}
        self.postprocess: Dict[str, Any] = meta.get('postprocess') or {}
        self.input_shape: Optional[Sequence[int]] = meta.get('input_shape')
        self.output_names = [output.name for output in self.runtime.get_outputs()]

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, 'shape', type(image).__name__)
            raise DeployError(f'{self.path} takes an H x W x 3 RGB image (numpy uint8), got {shape}; load it with '
                              f'PIL.Image.open(path).convert("RGB")')
        if image.dtype != np.uint8:
            raise DeployError(f'{self.path} takes a uint8 RGB image, got {image.dtype}; convert it with '
                              f'np.clip(image, 0, 255).astype(np.uint8)')
        return np.ascontiguousarray(image)

    def _check_shape(self, shape: Tuple[int, int]) -> None:
        if self.input_shape is not None and tuple(shape) != tuple(self.input_shape):
            after = ' after the test Resize' if self.preprocess.get('resize') else ''
            raise DeployError(
                f'{self.path} was exported with a static shape for {self.input_shape[0]}x{self.input_shape[1]} '
                f'images, this one is {shape[0]}x{shape[1]}{after}; re-export with --dynamic-shape '
                f'(or --shape {shape[0]} {shape[1]})')

    def run(self, rgb_image: np.ndarray) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        """The graph's raw outputs by name and the image's meta (ori_shape, img_shape, scale_factor)."""
        image = self._check_image(rgb_image)
        resized, scale_factor = resize_image(image, self.preprocess.get('resize'))
        self._check_shape(resized.shape[:2])
        outputs = self.runtime.run(None, {'image': np.ascontiguousarray(resized)})
        meta = dict(ori_shape=tuple(image.shape[:2]), img_shape=tuple(resized.shape[:2]), scale_factor=scale_factor)
        return dict(zip(self.output_names, outputs)), meta

    def __call__(self, rgb_image: np.ndarray):
        """Predicts one H x W x 3 uint8 RGB image: a ``DetDataSample`` or a ``SegDataSample``."""
        outputs, meta = self.run(rgb_image)
        return self._detections(outputs, meta) if self.task == 'det' else self._segmentation(outputs, meta)

    def _detections(self, outputs: Dict[str, np.ndarray], meta: Dict[str, Any]):
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        boxes = torch.from_numpy(outputs['boxes']).float()
        # mmdet rescales in place: bboxes /= scale_factor (w, h, w, h)
        boxes = boxes / boxes.new_tensor(meta['scale_factor']).repeat((1, 2))
        instances = InstanceData(bboxes=boxes, scores=torch.from_numpy(outputs['scores']).float(),
                                 labels=torch.from_numpy(outputs['labels']).long())
        if 'mask_probs' in outputs:
            height, width = meta['ori_shape']
            instances.masks = paste_masks(torch.from_numpy(outputs['mask_probs']), boxes, height, width,
                                          self.postprocess.get('mask_thr_binary', 0.5))
        sample = DetDataSample(metainfo=meta)
        sample.pred_instances = instances
        return sample

    def _segmentation(self, outputs: Dict[str, np.ndarray], meta: Dict[str, Any]):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        logits = torch.from_numpy(outputs['seg_logits'])
        if meta['img_shape'] != meta['ori_shape']:
            logits = F.interpolate(logits, size=meta['ori_shape'], mode='bilinear',
                                   align_corners=self.postprocess.get('align_corners', False))
            label = _label_map(logits, self.postprocess.get('threshold'))
        else:
            label = torch.from_numpy(outputs['seg_label']).long()
        sample = SegDataSample(metainfo=meta)
        sample.seg_logits = PixelData(data=logits[0])
        sample.pred_sem_seg = PixelData(data=label)
        return sample


def _label_map(logits: torch.Tensor, threshold: Optional[float]) -> torch.Tensor:
    """1 x H x W labels from 1 x C x H x W logits: argmax, or ``sigmoid > threshold`` for one channel (mmseg)."""
    if logits.shape[1] == 1:
        return (logits.sigmoid() > threshold).long()[0]
    return logits.argmax(dim=1)
