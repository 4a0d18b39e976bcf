"""The one writer of predictions: painted pictures and machine-readable files from data samples.

It takes what every predictor returns (the PyTorch models through :mod:`convnext_dense.apis.inference` and
the ONNX Runtime predictor alike):

- detection: an mmdet ``DetDataSample`` whose ``pred_instances`` hold ``bboxes`` (N x 4, x1 y1 x2 y2 in the
  original image's pixels), ``scores`` (N), ``labels`` (N) and optionally ``masks`` (N x H x W, bool);
- segmentation: an mmseg ``SegDataSample`` whose ``pred_sem_seg.data`` is a 1 x H x W label map.

Layout under the output folder, per image ``NAME``:

- ``preds/NAME.json`` (detection): ``{image, height, width, boxes, scores, labels, class_names, masks}``,
  masks as COCO RLE (``{size: [H, W], counts: str}``, pycocotools' encoding), instances above the score
  threshold only;
- ``preds/NAME.png`` (segmentation): the label map, one class index per pixel (8 bit, 16 bit above 256 classes);
- ``vis/NAME.png``: the image painted with the predictions, same size as the image.

Class names and colours come from ``dataset_meta`` (``classes``, ``palette``); without a palette, fixed
colours are drawn from a seeded generator, never another dataset's.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from convnext_dense.errors import ConfigError, RunError
from convnext_dense.io import atomic_write

#: Default score threshold of the painted and written instances (mmdet's demo default).
DEFAULT_SCORE_THR = 0.3


def seeded_palette(num_classes: int, seed: int = 42) -> List[tuple]:
    """``num_classes`` fixed RGB colours (the same for every run), for metadata without a palette."""
    rng = np.random.RandomState(seed)
    return [tuple(int(c) for c in rng.randint(0, 256, 3)) for _ in range(num_classes)]


def complete_meta(dataset_meta: Optional[Dict[str, Any]], num_classes: Optional[int] = None) -> Dict[str, Any]:
    """``dataset_meta`` with lower-case keys, ``classes`` (``class_i`` when unknown) and a ``palette``."""
    meta = {str(k).lower(): v for k, v in (dataset_meta or {}).items()}
    classes = list(meta.get('classes') or [f'class_{i}' for i in range(num_classes or 0)])
    palette = meta.get('palette')
    if not isinstance(palette, (list, tuple)) or len(palette) < len(classes):
        palette = seeded_palette(len(classes))
    return dict(meta, classes=tuple(classes), palette=[tuple(int(c) for c in colour) for colour in palette])


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """COCO RLE of a binary ``H x W`` mask, with ``counts`` as text (JSON-ready)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)


def detection_record(data_sample, classes: Sequence[str], image: str, height: int, width: int,
                     score_thr: float = DEFAULT_SCORE_THR) -> Dict[str, Any]:
    """The JSON record of one detection result (instances with ``score >= score_thr``).

    Args:
        data_sample: A ``DetDataSample`` with ``pred_instances``.
        classes: Class names, indexed by label.
        image: The input's name or path, stored as given.
        height: Image height in pixels.
        width: Image width in pixels.
        score_thr: Lowest score kept.
    """
    instances = data_sample.pred_instances
    scores = _numpy(instances.scores).astype(float)
    keep = scores >= score_thr
    labels = _numpy(instances.labels).astype(int)[keep]
    record = {
        'image': image, 'height': int(height), 'width': int(width),
        'boxes': [[round(float(v), 2) for v in box] for box in _numpy(instances.bboxes)[keep]],
        'scores': [round(float(s), 5) for s in scores[keep]],
        'labels': [int(label) for label in labels],
        'class_names': [classes[label] if 0 <= label < len(classes) else str(label) for label in labels],
    }
    if 'masks' in instances:
        record['masks'] = [encode_mask(mask) for mask in _numpy(instances.masks)[keep]]
    return record


def label_map_png(label_map: np.ndarray) -> bytes:
    """PNG bytes of a label map: 8-bit when every value fits, else 16-bit."""
    dtype = np.uint8 if label_map.max(initial=0) < 256 else np.uint16
    ok, encoded = cv2.imencode('.png', label_map.astype(dtype))
    if not ok:
        raise RunError('cv2 could not encode the label map as PNG')
    return encoded.tobytes()


def image_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image."""
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise RunError('cv2 could not encode the painted image as PNG')
    return encoded.tobytes()


class PredictionWriter:
    """Paints and writes predictions of one task under ``out_dir`` (see the module docstring).

    Args:
        task: ``'det'`` or ``'seg'``.
        dataset_meta: ``classes`` and ``palette`` of the model (the checkpoint's, else the config's).
        out_dir: Output folder; ``preds/`` and ``vis/`` are created inside.
        score_thr: Lowest detection score written and painted.
        num_classes: Number of classes when ``dataset_meta`` names none.
    """

    def __init__(self, task: str, dataset_meta: Optional[Dict[str, Any]], out_dir: Union[str, Path],
                 score_thr: float = DEFAULT_SCORE_THR, num_classes: Optional[int] = None) -> None:
        if task not in ('det', 'seg'):
            raise ConfigError(f"task must be 'det' or 'seg', got {task!r}")
        self.task = task
        self.meta = complete_meta(dataset_meta, num_classes)
        self.out_dir = Path(out_dir)
        self.score_thr = score_thr
        self._names: set = set()
        self._visualizer = None

    @property
    def visualizer(self):
        """mmdet's ``DetLocalVisualizer`` or mmseg's ``SegLocalVisualizer``, told our classes and colours."""
        if self._visualizer is None:
            name = f'convnext_dense_writer_{id(self)}'
            if self.task == 'det':
                from mmdet.visualization import DetLocalVisualizer
                self._visualizer = DetLocalVisualizer(name=name)
                self._visualizer.dataset_meta = dict(self.meta)
            else:
                from mmseg.visualization import SegLocalVisualizer
                self._visualizer = SegLocalVisualizer(name=name, alpha=0.5)
                # Without both, mmseg paints with Cityscapes' classes and colours.
                self._visualizer.set_dataset_meta(classes=self.meta['classes'], palette=self.meta['palette'])
        return self._visualizer

    def unique_name(self, stem: str) -> str:
        """``stem``, or ``stem_1``, ``stem_2``, ... when an earlier input had the same file name."""
        name, index = stem, 0
        while name in self._names:
            index += 1
            name = f'{stem}_{index}'
        self._names.add(name)
        return name

    def paint(self, rgb: np.ndarray, data_sample) -> np.ndarray:
        """The RGB image with ``data_sample``'s predictions drawn on it (same size)."""
        visualizer = self.visualizer
        kwargs = dict(pred_score_thr=self.score_thr) if self.task == 'det' else dict(with_labels=True)
        visualizer.add_datasample('prediction', rgb, data_sample, draw_gt=False, show=False, **kwargs)
        return visualizer.get_image()

    def record(self, data_sample, image: str, height: int, width: int) -> Dict[str, Any]:
        """The detection JSON record of ``data_sample`` (see :func:`detection_record`)."""
        return detection_record(data_sample, self.meta['classes'], image, height, width, self.score_thr)

    def write(self, image: str, rgb: np.ndarray, data_sample) -> Dict[str, Path]:
        """Writes the prediction files of one image; returns ``{kind: path}`` of what was written.

        Args:
            image: The input's path (its file name names the outputs) or any label.
            rgb: The image, H x W x 3 RGB uint8.
            data_sample: The model's ``DetDataSample`` / ``SegDataSample`` for it.
        """
        name = self.unique_name(Path(image).stem or 'image')
        height, width = rgb.shape[:2]
        written = {}
        pred = self.out_dir / 'preds'
        if self.task == 'det':
            written['json'] = pred / f'{name}.json'
            atomic_write(json.dumps(self.record(data_sample, image, height, width)), written['json'], fsync=False)
        else:
            written['label_map'] = pred / f'{name}.png'
            label_map = _numpy(data_sample.pred_sem_seg.data)[0]
            atomic_write(label_map_png(label_map), written['label_map'], fsync=False)
        written['painted'] = self.out_dir / 'vis' / f'{name}.png'
        atomic_write(image_png(self.paint(rgb, data_sample)), written['painted'], fsync=False)
        return written
