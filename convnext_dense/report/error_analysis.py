"""The COCO error breakdown (Hoiem et al.; the ``analyze`` function of the COCO API): how much AP each kind
of error costs, computed with pycocotools' COCOeval.

Seven precision-recall curves per class, each with one more kind of error forgiven than the one before
(maxDets 100, all areas):

- **C75**, **C50**: PR at IoU 0.75 and 0.5;
- **Loc**: PR at IoU 0.1: localisation errors forgiven (duplicate detections still count);
- **Sim**: also forgiven, detections on an object of another class of the same supercategory (those objects
  become ignored regions of this class);
- **Oth**: also forgiven, detections on an object of any other class;
- **BG**: also forgiven, every false positive on background: precision 1 up to the recall reached;
- **FN**: also forgiven, the missed objects: precision 1 at every recall.

The AP of each curve is its mean precision over COCO's 101 recall thresholds (missing precision, beyond the
recall reached, counts 0). Each curve lies above the one before, so the AP gaps C50 - C75, Loc - C50, ...,
FN - BG are the shares of the kinds of error and they sum, with C75, to FN = 1. Over all classes the curves
are averaged across the classes that have ground truth.
"""
import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

#: The curves, in order; each forgives one more kind of error than the one before.
ERROR_TYPES: Tuple[str, ...] = ('C75', 'C50', 'Loc', 'Sim', 'Oth', 'BG', 'FN')
#: What the gap below each curve (from the previous one) is caused by, for the page.
ERROR_MEANINGS: Dict[str, str] = {
    'C75': 'AP at IoU 0.75',
    'C50': 'precise localisation (IoU 0.5 to 0.75)',
    'Loc': 'localisation errors (IoU 0.1 to 0.5)',
    'Sim': 'confusion with a class of the same supercategory',
    'Oth': 'confusion with a class of another supercategory',
    'BG': 'false positives on background',
    'FN': 'missed objects (false negatives)',
}
MAX_DETS = 100


@dataclass
class ErrorBreakdown:
    """Attributes:
        recall: COCO's recall thresholds (101,).
        curves: Precision ``(7, recall, class)`` of the curves in :data:`ERROR_TYPES` order.
        has_gt: Per class, whether it has ground truth (classes without are left out of the means).
        supercategories: Per class, its supercategory.
    """
    recall: np.ndarray
    curves: np.ndarray
    has_gt: np.ndarray
    supercategories: Tuple[str, ...]

    def ap(self) -> np.ndarray:
        """AP of each curve over the classes with ground truth, ``(7,)``."""
        kept = self.curves[:, :, self.has_gt]
        return kept.mean(axis=(1, 2)) if kept.size else np.zeros(len(ERROR_TYPES))

    def class_ap(self) -> np.ndarray:
        """AP of each curve per class, ``(7, class)``."""
        return self.curves.mean(axis=1)

    def mean_curves(self) -> np.ndarray:
        """The curves averaged over the classes with ground truth, ``(7, recall)``."""
        kept = self.curves[:, :, self.has_gt]
        return kept.mean(axis=2) if kept.size else np.zeros(self.curves.shape[:2])


def _precision(coco_gt, coco_dt, iou_type: str, cat_ids: Sequence[int], iou_thrs: Sequence[float]) -> np.ndarray:
    """COCOeval precision ``(iou, recall, class)`` at all areas and :data:`MAX_DETS`; -1 becomes 0."""
    from pycocotools.cocoeval import COCOeval

    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.imgIds = sorted(coco_gt.getImgIds())
    evaluator.params.catIds = list(cat_ids)
    evaluator.params.iouThrs = np.asarray(iou_thrs, dtype=float)
    evaluator.params.maxDets = [MAX_DETS]
    evaluator.params.areaRng = [[0.0, 1e10]]
    evaluator.params.areaRngLbl = ['all']
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval['precision'][:, :, :, 0, 0]
    order = [list(evaluator.params.catIds).index(c) for c in cat_ids]  # evaluate() sorts the ids
    return np.maximum(precision[:, :, order], 0.0)


def _forgiving_gt(coco_gt, cat_id: int, forgiven: Sequence[int]):
    """A copy of the ground truth in which the objects of the ``forgiven`` classes are ignored regions of
    class ``cat_id`` (crowd, so that detections on them are neither true nor false positives)."""
    from pycocotools.coco import COCO

    dataset = {key: value for key, value in coco_gt.dataset.items() if key != 'annotations'}
    annotations = []
    forgiven = set(forgiven)
    for ann in coco_gt.dataset['annotations']:
        if ann['category_id'] == cat_id:
            annotations.append(ann)
        elif ann['category_id'] in forgiven:
            ann = copy.copy(ann)
            ann.update(category_id=cat_id, iscrowd=1, ignore=1)
            annotations.append(ann)
    dataset['annotations'] = annotations
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def error_breakdown(coco_gt, coco_dt, iou_type: str, cat_ids: Sequence[int]) -> ErrorBreakdown:
    """The seven curves of every class in ``cat_ids`` (see the module docstring).

    Args:
        coco_gt: The ground truth (pycocotools ``COCO``).
        coco_dt: The detections (``coco_gt.loadRes(...)``).
        iou_type: ``'bbox'`` or ``'segm'``.
        cat_ids: Category ids, in the order the result's class axis takes.
    """
    base = _precision(coco_gt, coco_dt, iou_type, cat_ids, (0.75, 0.5, 0.1))
    num_recall = base.shape[1]
    curves = np.zeros((len(ERROR_TYPES), num_recall, len(cat_ids)))
    curves[:3] = base
    supercategories = tuple(coco_gt.loadCats(c)[0].get('supercategory') or '' for c in cat_ids)
    all_ids = coco_gt.getCatIds()
    for k, cat_id in enumerate(cat_ids):
        same_super = [c for c in all_ids if c != cat_id
                      and (coco_gt.loadCats(c)[0].get('supercategory') or '') == supercategories[k]]
        others = [c for c in all_ids if c != cat_id]
        for row, forgiven in ((3, same_super), (4, others)):
            gt = _forgiving_gt(coco_gt, cat_id, forgiven)
            curves[row, :, k] = _precision(gt, coco_dt, iou_type, [cat_id], (0.1,))[0, :, 0]
    curves[5] = curves[4] > 0
    curves[6] = 1.0
    has_gt = np.array([len(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) > 0 for c in cat_ids])
    from pycocotools.cocoeval import Params
    recall = np.asarray(Params(iouType=iou_type).recThrs)
    return ErrorBreakdown(recall, curves, has_gt, supercategories)


def supercategory_note(supercategories: Sequence[str]) -> str:
    """One sentence on what the Sim curve can show for these classes."""
    unique = set(supercategories)
    if len(unique) == 1:
        return (f'Every class belongs to the supercategory {next(iter(unique)) or "(none)"!r}, so Sim forgives '
                f'every class confusion and equals Oth.')
    if len(unique) == len(supercategories):
        return 'Every class has a supercategory of its own, so Sim forgives nothing more than Loc.'
    return f'{len(unique)} supercategories over {len(supercategories)} classes (the annotation file\'s field).'


def error_rows(breakdown: ErrorBreakdown, class_names: Sequence[str]) -> List[Tuple[str, List[float]]]:
    """``(name, [AP of each curve])`` for all classes, then each class with ground truth."""
    rows = [('all classes', [float(v) for v in breakdown.ap()])]
    per_class = breakdown.class_ap()
    for k, name in enumerate(class_names):
        if breakdown.has_gt[k]:
            rows.append((name, [float(v) for v in per_class[:, k]]))
    return rows
