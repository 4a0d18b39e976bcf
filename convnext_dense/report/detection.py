"""Detection results against their annotations, with pycocotools as mmdet's CocoMetric uses it: per-class
AP, precision-recall curves, a per-image score and a class confusion matrix, for boxes and masks.

The predictions are ``test --out``'s pickle; the ground truth is the annotation file of the config's
``test_evaluator`` (``CocoMetric``). Labels map to category ids as the test dataset mapped them: with our
``convnext_dense.CocoDataset`` label ``i`` is ``metainfo.classes[i]``; with mmdet's ``CocoDataset`` it is the
``i``-th category of the annotation file (in the file's order) whose name is among the dataset's classes,
and a class is named by that category, so a json whose category order differs from ``metainfo.classes``
is still named right.
"""
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config

from convnext_dense.datasets.class_order import category_ids, labels_follow_classes
from convnext_dense.errors import ReportError
from convnext_dense.report.results import ResultsSource, load_detections

IOU_TYPES = ('bbox', 'segm')
#: CocoMetric's ``proposal_nums``: COCOeval's maxDets there, the last one for AP.
PROPOSAL_NUMS = (100, 300, 1000)
#: Area ranges of COCOeval's precision array: all, small, medium, large.
AREAS = ('all', 'small', 'medium', 'large')
MATCH_IOU = 0.5


@dataclass
class DetectionSet:
    """Predictions and ground truth of one test.

    Attributes:
        coco: The ground truth (pycocotools ``COCO`` of the evaluator's annotation file).
        ann_file: That file.
        classes: Class names by label.
        cat_ids: Category id by label.
        palette: RGB colour by label (the dataset's), or None.
        images: Per predicted image: ``img_id``, ``img_path``, ``bboxes`` (N, 4; x1 y1 x2 y2), ``scores``,
            ``labels``, ``masks`` (COCO RLEs, or None) and ``mask_scores`` (or None).
        iou_types: ``('bbox',)`` or ``('bbox', 'segm')`` when masks were predicted.
    """
    coco: object
    ann_file: Path
    classes: Tuple[str, ...]
    cat_ids: Tuple[int, ...]
    palette: Optional[List[Tuple[int, int, int]]]
    images: List[dict]
    iou_types: Tuple[str, ...]


def _evaluator_cfg(cfg: Config) -> dict:
    evaluators = cfg.get('test_evaluator')
    for evaluator in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
        if isinstance(evaluator, dict) and evaluator.get('ann_file'):
            return evaluator
    raise ReportError('the config\'s test_evaluator names no ann_file (a CocoMetric with ann_file=...), so the '
                      'predictions cannot be scored; set test_evaluator.ann_file')


def dataset_meta(dataset_cfg: dict, scope: str) -> dict:
    """Classes and palette of a dataset config: its ``metainfo``, else its class's ``METAINFO``."""
    from mmengine.registry import DATASETS as ROOT_DATASETS
    registry = ROOT_DATASETS
    if scope == 'mmdet':
        from mmdet.registry import DATASETS as registry
    elif scope == 'mmseg':
        from mmseg.registry import DATASETS as registry
    while 'dataset' in dataset_cfg and 'type' in dataset_cfg and 'metainfo' not in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']  # wrappers (RepeatDataset, ...) keep the inner dataset's classes
    dataset_type = registry.get(dataset_cfg.get('type')) if isinstance(dataset_cfg.get('type'), str) else None
    meta = dict(getattr(dataset_type, 'METAINFO', {}) or {})
    meta.update(dataset_cfg.get('metainfo') or {})
    if 'classes' not in meta:
        raise ReportError(f'the test dataset ({dataset_cfg.get("type")}) declares no classes; set '
                          f'test_dataloader.dataset.metainfo.classes')
    return meta


def load_detection_set(source: ResultsSource) -> DetectionSet:
    """Reads the predictions and their ground truth, and checks that they belong together.

    Raises:
        ReportError: The annotation file is missing or lacks the dataset's classes, or the predictions are of
            other images or classes (another dataset's results).
    """
    from pycocotools.coco import COCO

    cfg = source.cfg
    ann_file = Path(_evaluator_cfg(cfg)['ann_file'])
    if not ann_file.is_file():
        raise ReportError(f'test_evaluator.ann_file {ann_file} (from {source.config_origin}) not found; run the '
                          f'report where the test ran, or fix data_root')
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    meta = dataset_meta(cfg.test_dataloader.dataset, 'mmdet')
    classes = tuple(meta['classes'])
    cat_ids = tuple(coco.getCatIds(catNms=list(classes)))
    if len(cat_ids) != len(classes):
        missing = sorted(set(classes) - {c['name'] for c in coco.loadCats(cat_ids)})
        raise ReportError(f'{ann_file} has no categories named {missing}; the dataset\'s classes and the '
                          f'annotation file disagree')
    if labels_follow_classes(cfg.test_dataloader.dataset):
        cat_ids = tuple(category_ids(coco.dataset['categories'], classes, str(ann_file)))
    names = tuple(coco.loadCats(c)[0]['name'] for c in cat_ids)
    images = []
    for record in load_detections(source.path):
        pred = record['pred_instances']
        masks = pred.get('masks')
        images.append(dict(img_id=int(record['img_id']), img_path=record.get('img_path'),
                           bboxes=np.asarray(pred['bboxes'], dtype=float).reshape(-1, 4),
                           scores=np.asarray(pred['scores'], dtype=float).reshape(-1),
                           labels=np.asarray(pred['labels'], dtype=int).reshape(-1),
                           masks=list(masks) if masks is not None else None,
                           mask_scores=pred.get('mask_scores')))
    _check_belongs(images, coco, ann_file, len(classes), source.path)
    has_masks = bool(images) and all(image['masks'] is not None for image in images)
    palette = meta.get('palette')
    # Names in label order from the annotation file; colours follow the dataset's classes.
    if palette is not None and names != classes:
        palette = [palette[classes.index(name)] for name in names]
    return DetectionSet(coco, ann_file, names, cat_ids, palette, images, IOU_TYPES if has_masks else ('bbox',))


def _check_belongs(images: List[dict], coco, ann_file: Path, num_classes: int, path: Path) -> None:
    if not images:
        raise ReportError(f'--results {path} holds no images; re-run test --out')
    known = set(coco.getImgIds())
    foreign = [image['img_id'] for image in images if image['img_id'] not in known]
    if foreign:
        raise ReportError(f'--results {path} holds predictions for {len(foreign)} image ids that {ann_file} does '
                          f'not have (e.g. {foreign[:3]}): they were made on another dataset; pass the results of '
                          f'a test on this one')
    top = max((int(image['labels'].max()) for image in images if image['labels'].size), default=-1)
    if top >= num_classes:
        raise ReportError(f'--results {path} predicts label {top} but the dataset has {num_classes} classes: '
                          f'they were made by a model of another dataset')


def coco_results(data: DetectionSet, iou_type: str) -> List[dict]:
    """The predictions as COCO result entries, as CocoMetric's ``results2json`` writes them (boxes
    ``[x, y, w, h]``; masks without a box, so that their area is the mask's)."""
    entries = []
    for image in data.images:
        scores = image['scores'] if iou_type == 'bbox' or image['mask_scores'] is None else image['mask_scores']
        for i, label in enumerate(image['labels']):
            entry = dict(image_id=image['img_id'], category_id=data.cat_ids[label], score=float(scores[i]))
            if iou_type == 'bbox':
                x1, y1, x2, y2 = (float(v) for v in image['bboxes'][i])
                entry['bbox'] = [x1, y1, x2 - x1, y2 - y1]
            else:
                rle = dict(image['masks'][i])
                rle['counts'] = rle['counts'].decode() if isinstance(rle['counts'], bytes) else rle['counts']
                entry['segmentation'] = rle
            entries.append(entry)
    return entries


def load_predictions(data: DetectionSet, iou_type: str):
    """The predictions as a pycocotools ``COCO`` result set (``coco.loadRes``), or None when there are none."""
    entries = coco_results(data, iou_type)
    if not entries:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        return data.coco.loadRes(entries)


def evaluate(data: DetectionSet, coco_dt, iou_type: str):
    """COCOeval with CocoMetric's settings (all images of the annotation file, its class order, maxDets
    100/300/1000), evaluated and accumulated."""
    from pycocotools.cocoeval import COCOeval

    evaluator = COCOeval(data.coco, coco_dt, iou_type)
    evaluator.params.catIds = list(data.cat_ids)
    evaluator.params.imgIds = data.coco.getImgIds()
    evaluator.params.maxDets = list(PROPOSAL_NUMS)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _class_axis(evaluator, cat_id: int) -> int:
    return list(evaluator.params.catIds).index(cat_id)  # evaluate() sorted the ids


def _mean_valid(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else float('nan')


def per_class_ap(data: DetectionSet, evaluator) -> Dict[str, np.ndarray]:
    """AP, AP50, AP75, APs, APm, APl per class (by label), as CocoMetric's ``classwise`` computes them: the
    mean of the valid entries of COCOeval's precision at the largest maxDets. NaN where undefined."""
    precision = evaluator.eval['precision']  # (iou, recall, class, area, maxDets)
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))
    table = {name: np.full(len(data.cat_ids), np.nan) for name in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')}
    for label, cat_id in enumerate(data.cat_ids):
        k = _class_axis(evaluator, cat_id)
        table['AP'][label] = _mean_valid(precision[:, :, k, 0, -1])
        table['AP50'][label] = _mean_valid(precision[iou_50, :, k, 0, -1])
        table['AP75'][label] = _mean_valid(precision[iou_75, :, k, 0, -1])
        for area, key in zip((1, 2, 3), ('APs', 'APm', 'APl')):
            table[key][label] = _mean_valid(precision[:, :, k, area, -1])
    return table


def overall_ap(evaluator) -> Dict[str, float]:
    """mAP, mAP_50, mAP_75 as COCOeval's ``summarize`` (and so CocoMetric) reports them."""
    precision = evaluator.eval['precision'][:, :, :, 0, -1]
    ious = evaluator.params.iouThrs
    return {'mAP': _mean_valid(precision),
            'mAP_50': _mean_valid(precision[int(np.argmin(np.abs(ious - 0.5)))]),
            'mAP_75': _mean_valid(precision[int(np.argmin(np.abs(ious - 0.75)))])}


def pr_curves(data: DetectionSet, evaluator, iou: float) -> Tuple[np.ndarray, np.ndarray]:
    """``(recall (101,), precision (class, 101))`` at IoU ``iou``, all areas, the largest maxDets; NaN where a
    class has no ground truth, 0 beyond the recall it reaches."""
    precision = evaluator.eval['precision']
    t = int(np.argmin(np.abs(evaluator.params.iouThrs - iou)))
    curves = np.stack([precision[t, :, _class_axis(evaluator, c), 0, -1] for c in data.cat_ids]).astype(float)
    no_gt = (curves == -1).all(axis=1)
    curves = np.maximum(curves, 0.0)
    curves[no_gt] = np.nan
    return np.asarray(evaluator.params.recThrs), curves


# ------------------------------------------------------------------------------- per-image matching

@dataclass
class ImageMatch:
    """One image's objects and kept detections, matched (see :func:`match_image`).

    Attributes:
        gt_labels: Labels of the ground-truth objects (crowd regions left out).
        det_labels: Labels of the detections scoring at least the threshold.
        same_class: ``(detection, object)`` pairs of the same class.
        confused: ``(detection, object)`` pairs of different classes, among what ``same_class`` left.
    """
    gt_labels: np.ndarray
    det_labels: np.ndarray
    same_class: List[Tuple[int, int]]
    confused: List[Tuple[int, int]]

    def f1(self) -> float:
        """F1 of the same-class matches (1.0 for an image without objects or detections)."""
        tp = len(self.same_class)
        denominator = len(self.gt_labels) + len(self.det_labels)
        return 1.0 if denominator == 0 else 2.0 * tp / denominator


def _greedy(ious: np.ndarray, order: Sequence[int], allowed, taken_dets: set, taken_gts: set
            ) -> List[Tuple[int, int]]:
    pairs = []
    for d in order:
        if d in taken_dets:
            continue
        best, best_iou = -1, MATCH_IOU
        for g in range(ious.shape[1]):
            if g not in taken_gts and allowed(d, g) and ious[d, g] >= best_iou:
                best, best_iou = g, ious[d, g]
        if best >= 0:
            pairs.append((d, best))
            taken_dets.add(d)
            taken_gts.add(best)
    return pairs


def match_image(data: DetectionSet, image: dict, iou_type: str, score_thr: float) -> ImageMatch:
    """Matches one image's detections (score >= ``score_thr``) to its objects at IoU >= 0.5.

    First each detection, highest score first, takes the unmatched object of its own class it overlaps most;
    then the detections left take unmatched objects of other classes (confusions).
    """
    from pycocotools import mask as mask_utils

    label_of = {cat_id: label for label, cat_id in enumerate(data.cat_ids)}
    anns = [a for a in data.coco.loadAnns(data.coco.getAnnIds(imgIds=[image['img_id']]))
            if not a.get('iscrowd', 0) and a['category_id'] in label_of]
    gt_labels = np.array([label_of[a['category_id']] for a in anns], dtype=int)
    scores = image['scores'] if iou_type == 'bbox' or image['mask_scores'] is None else image['mask_scores']
    keep = np.flatnonzero(np.asarray(scores) >= score_thr)
    keep = keep[np.argsort(-np.asarray(scores)[keep], kind='stable')]
    det_labels = image['labels'][keep]
    if not len(anns) or not len(keep):
        return ImageMatch(gt_labels, det_labels, [], [])
    if iou_type == 'bbox':
        dets = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in image['bboxes'][keep].tolist()]
        gts = [a['bbox'] for a in anns]
    else:
        dets = [image['masks'][i] for i in keep]
        gts = [data.coco.annToRLE(a) for a in anns]
    ious = np.asarray(mask_utils.iou(dets, gts, [0] * len(gts))).reshape(len(dets), len(gts))
    taken_dets: set = set()
    taken_gts: set = set()
    order = range(len(keep))
    same = _greedy(ious, order, lambda d, g: det_labels[d] == gt_labels[g], taken_dets, taken_gts)
    confused = _greedy(ious, order, lambda d, g: True, taken_dets, taken_gts)
    return ImageMatch(gt_labels, det_labels, same, confused)


def confusion_matrix(matches: Sequence[ImageMatch], num_classes: int) -> np.ndarray:
    """Counts ``(class + 1, class + 1)``: rows the ground truth, columns the prediction; the last row holds
    detections on background (false positives), the last column the missed objects."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for match in matches:
        matched_dets, matched_gts = set(), set()
        for d, g in (*match.same_class, *match.confused):
            matrix[match.gt_labels[g], match.det_labels[d]] += 1
            matched_dets.add(d)
            matched_gts.add(g)
        for d, label in enumerate(match.det_labels):
            if d not in matched_dets:
                matrix[num_classes, label] += 1
        for g, label in enumerate(match.gt_labels):
            if g not in matched_gts:
                matrix[label, num_classes] += 1
    return matrix
