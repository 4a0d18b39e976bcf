"""Segmentation results against their label maps: the pixel confusion matrix, per-class IoU and accuracy as
mmseg's IoUMetric computes them, the top confusions and a per-image mIoU.

The predictions are the label-map PNGs ``test --out`` wrote (mmseg's IoUMetric ``output_dir``: one file per
image, named after it, holding ``label + 1`` when the dataset reduces the zero label). The ground truth is
read as mmseg's ``LoadAnnotations`` reads it, from the data list of the config's test dataset: zero label
reduced to 255 and the rest shifted down when ``reduce_zero_label``, ``label_map`` applied, pixels equal to
the evaluator's ``ignore_index`` left out.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from convnext_dense.errors import ReportError
from convnext_dense.report.results import ResultsSource

IGNORE_INDEX = 255


@dataclass
class SegmentationPair:
    """One image: its prediction file, label map and picture."""
    name: str
    prediction: Path
    label_map: Path
    image: Path


@dataclass
class SegmentationSet:
    """Attributes:
        classes: Class names by index.
        palette: RGB colour by index, or None.
        pairs: The images with a prediction, in the dataset's order.
        reduce_zero_label: Label maps hold ``label + 1`` (0 is ignored).
        label_map: The dataset's class remapping (``{old: new}``), or None.
        ignore_index: Ground-truth value left out of every count.
        unmatched: Prediction files that no image of the dataset explains.
    """
    classes: Tuple[str, ...]
    palette: Optional[List[Tuple[int, int, int]]]
    pairs: List[SegmentationPair]
    reduce_zero_label: bool
    label_map: Optional[dict]
    ignore_index: int
    unmatched: List[str]


def _test_dataset(cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    dataset_cfg = dict(cfg.test_dataloader.dataset)
    dataset_cfg['pipeline'] = []  # only the data list is read
    try:
        return DATASETS.build(dataset_cfg)
    except (FileNotFoundError, OSError) as error:
        raise ReportError(f'the test dataset of the config cannot be listed ({error}); run the report where the '
                          f'test ran, or fix data_root') from error


def _ignore_index(cfg) -> int:
    evaluators = cfg.get('test_evaluator')
    for evaluator in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
        if isinstance(evaluator, dict) and 'ignore_index' in evaluator:
            return int(evaluator['ignore_index'])
    return IGNORE_INDEX


def load_segmentation_set(source: ResultsSource) -> SegmentationSet:
    """Pairs each prediction PNG with the label map and image of the test dataset.

    Raises:
        ReportError: No prediction file belongs to an image of the test dataset (another dataset's results).
    """
    dataset = _test_dataset(source.cfg)
    predictions = {p.stem: p for p in source.path.glob('*.png')}
    pairs = []
    reduce_zero_label, label_map = False, None
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        stem = Path(info['img_path']).stem
        if stem in predictions:
            pairs.append(SegmentationPair(stem, predictions.pop(stem), Path(info['seg_map_path']),
                                          Path(info['img_path'])))
            reduce_zero_label = bool(info.get('reduce_zero_label', False))
            label_map = info.get('label_map')
    if not pairs:
        raise ReportError(f'--results {source.path}: none of its {len(predictions)} label maps is named after an '
                          f'image of the test dataset ({len(dataset)} images): they were made on another dataset; '
                          f'pass the results of a test on this one')
    meta = dataset.metainfo
    return SegmentationSet(tuple(meta['classes']), meta.get('palette'), pairs, reduce_zero_label, label_map,
                           _ignore_index(source.cfg), sorted(predictions))


def read_ground_truth(data: SegmentationSet, path: Path) -> np.ndarray:
    """A label map as mmseg's ``LoadAnnotations`` yields it (label map applied, zero label reduced)."""
    label = np.array(Image.open(path))
    if label.ndim == 3:
        raise ReportError(f'{path} is an RGB image, not a label map of class indices')
    label = label.astype(np.int64)
    if data.label_map:
        original = label.copy()
        for old, new in data.label_map.items():
            label[original == old] = new
    if data.reduce_zero_label:
        label[label == 0] = 255
        label = label - 1
        label[label == 254] = 255
    return label


def read_prediction(data: SegmentationSet, path: Path) -> np.ndarray:
    """A prediction PNG as class indices (IoUMetric writes ``label + 1`` when the zero label is reduced)."""
    prediction = np.array(Image.open(path)).astype(np.int64)
    return prediction - 1 if data.reduce_zero_label else prediction


def image_confusion(prediction: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int,
                    where: str = '') -> np.ndarray:
    """Pixel counts ``(num_classes + 1, num_classes + 1)``: rows the ground truth, columns the prediction.

    Pixels whose ground truth is ``ignore_index`` are left out. Index ``num_classes`` collects values outside
    the classes (on either side): IoUMetric's histograms leave them out of that side's areas only, and so
    do :func:`class_scores`.
    """
    if prediction.shape != label.shape:
        raise ReportError(f'{where}: the prediction is {prediction.shape[1]}x{prediction.shape[0]} pixels but its '
                          f'label map {label.shape[1]}x{label.shape[0]}: the results were made on other images')
    kept = label != ignore_index
    truth = np.where((label >= 0) & (label < num_classes), label, num_classes)[kept]
    predicted = np.where((prediction >= 0) & (prediction < num_classes), prediction, num_classes)[kept]
    size = num_classes + 1
    return np.bincount(truth * size + predicted, minlength=size ** 2).reshape(size, size)


def class_scores(confusion: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(IoU, Acc)`` per class from an :func:`image_confusion` matrix, as IoUMetric: intersection / union
    and intersection / ground-truth pixels; NaN where the denominator is 0."""
    num_classes = confusion.shape[0] - 1
    intersection = np.diag(confusion)[:num_classes].astype(float)
    label_area = confusion.sum(axis=1)[:num_classes].astype(float)
    union = label_area + confusion.sum(axis=0)[:num_classes] - intersection
    with np.errstate(divide='ignore', invalid='ignore'):
        return intersection / union, intersection / label_area


def image_miou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the image's ground truth or prediction."""
    iou, _ = class_scores(confusion)
    num_classes = confusion.shape[0] - 1
    present = (confusion.sum(axis=0) + confusion.sum(axis=1))[:num_classes] > 0
    return float(np.mean(iou[present])) if present.any() else 1.0


def top_confusions(confusion: np.ndarray, classes: Sequence[str], count: int = 10
                   ) -> List[Tuple[str, str, float, int]]:
    """The largest off-diagonal cells of an :func:`image_confusion` matrix: ``(true class, predicted class,
    share of the true class's pixels, pixels)``, largest share first."""
    label_area = confusion.sum(axis=1)
    cells = []
    for true in range(len(classes)):
        for predicted in range(len(classes)):
            pixels = int(confusion[true, predicted])
            if true != predicted and pixels:
                cells.append((classes[true], classes[predicted], pixels / label_area[true], pixels))
    return sorted(cells, key=lambda cell: (-cell[2], -cell[3]))[:count]


def evaluate(data: SegmentationSet) -> Tuple[np.ndarray, List[Tuple[SegmentationPair, float]]]:
    """The dataset's pixel confusion matrix (see :func:`image_confusion`) and each image's mIoU."""
    num_classes = len(data.classes)
    total = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    scores = []
    for pair in data.pairs:
        confusion = image_confusion(read_prediction(data, pair.prediction), read_ground_truth(data, pair.label_map),
                                    num_classes, data.ignore_index, where=str(pair.prediction))
        total += confusion
        scores.append((pair, image_miou(confusion)))
    return total, scores
