"""mmdet's ``CocoDataset`` and ``CocoMetric`` with label ``i`` meaning ``metainfo.classes[i]``.

Registered as ``convnext_dense.CocoDataset`` and ``convnext_dense.CocoMetric``; our detection configs use them,
so a run of ``convnext-dense train``, mmdet's ``tools/train.py`` or a plain mmengine Runner on them trains,
evaluates and paints with the labels in the order the config lists its classes (see
:mod:`convnext_dense.datasets.class_order` for why mmdet's own classes do not). Everything else is mmdet's:
where the orders agree (COCO itself, a json listing its categories in the order of ``classes``), the labels,
the metrics and the checkpoints are the same as with mmdet's classes.

This module imports mmdet; the registries import it when a config names one of its classes.
"""
from typing import Dict, List, Optional, Sequence

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric as MMDetCocoMetric

from convnext_dense.datasets.class_order import category_ids
from convnext_dense.registry import DATASETS, METRICS


class ClassOrderCOCO(COCO):
    """mmdet's COCO api whose ``get_cat_ids(cat_names=...)`` answers in the order of the names asked.

    Args:
        annotation_file: The COCO json (named in error messages).
    """

    def __init__(self, annotation_file: Optional[str] = None) -> None:
        self.annotation_file = annotation_file
        super().__init__(annotation_file)

    def get_cat_ids(self, cat_names: Sequence[str] = (), sup_names: Sequence[str] = (),
                    cat_ids: Sequence[int] = ()) -> List[int]:
        if isinstance(cat_names, str):
            cat_names = [cat_names]
        if cat_names and not sup_names and not cat_ids:
            return category_ids(self.dataset['categories'], list(cat_names), str(self.annotation_file))
        return super().get_cat_ids(list(cat_names), list(sup_names), list(cat_ids))


@DATASETS.register_module()
class CocoDataset(MMDetCocoDataset):
    """mmdet's ``CocoDataset`` with labels in the order of ``metainfo.classes``; the same arguments."""

    COCOAPI = ClassOrderCOCO


@METRICS.register_module()
class CocoMetric(MMDetCocoMetric):
    """mmdet's ``CocoMetric`` that reads label ``i`` as ``dataset_meta['classes'][i]``; the same arguments.

    It must go with :class:`CocoDataset`: predictions are written with the json category id of the class their
    label names, so the metric agrees with the dataset the model was trained on.

    Args:
        ann_file: The COCO json, as mmdet's; None converts the ground truth of the evaluated data.
        **kwargs: mmdet's ``CocoMetric`` arguments.
    """

    def __init__(self, ann_file: Optional[str] = None, **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        self.ann_file = ann_file

    def compute_metrics(self, results: list) -> Dict[str, float]:
        # Without an ann_file mmdet writes the ground truth with ids in the order of classes: nothing to do.
        if self.cat_ids is None and self._coco_api is not None:
            self.cat_ids = category_ids(self._coco_api.dataset['categories'], self.dataset_meta['classes'],
                                        str(self.ann_file))
        return super().compute_metrics(results)
