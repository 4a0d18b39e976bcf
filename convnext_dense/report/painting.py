"""Images painted as ``test --show-dir`` paints them: ground truth | prediction, by mmdet's / mmseg's own
visualizer of the config (its type and settings, the dataset's classes and palette, the visualization
hook's score threshold).
"""
import itertools

import numpy as np
from mmengine.config import Config

from convnext_dense.errors import ReportError
from convnext_dense.report.figures import Picture, picture_from_array

_names = itertools.count()
#: Painted pictures wider than this are scaled down; small ones (the shapes data's 128 px) are shown
#: enlarged to this height, pixels repeated.
MAX_WIDTH = 1024
MIN_HEIGHT = 256
#: Settings of the config's visualizer that would make it write files or reuse the test's instance.
_NOT_COPIED = ('type', 'name', 'vis_backends', 'save_dir')


def build_visualizer(cfg: Config, default_type: str, dataset_meta: dict):
    """A fresh instance of the config's visualizer (``default_type`` without one) that writes nothing."""
    from mmengine.registry import VISUALIZERS, init_default_scope

    scope = 'mmseg' if default_type.startswith('Seg') else 'mmdet'
    if scope == 'mmseg':
        import mmseg.visualization  # noqa: F401  registers SegLocalVisualizer
    else:
        import mmdet.visualization  # noqa: F401  registers DetLocalVisualizer
    init_default_scope(scope)
    settings = dict(cfg.get('visualizer') or {})
    visualizer_cfg = dict(type=settings.get('type', default_type), name=f'convnext_dense_report_{next(_names)}')
    visualizer_cfg.update({k: v for k, v in settings.items() if k not in _NOT_COPIED})
    visualizer = VISUALIZERS.build(visualizer_cfg)
    visualizer.dataset_meta = dataset_meta
    return visualizer


def score_threshold(cfg: Config, default: float = 0.3) -> float:
    """The score threshold ``test --show-dir`` paints detections above (the visualization hook's)."""
    hook = (cfg.get('default_hooks') or {}).get('visualization') or {}
    return float(hook.get('score_thr', default))


def read_rgb(path) -> np.ndarray:
    """An image file as RGB uint8, as the visualization hooks read it."""
    import mmcv
    image = mmcv.imread(str(path), channel_order='rgb')
    if image is None:
        raise ReportError(f'image {path} cannot be read; the painted examples need the test images')
    return image


def paint_detection(visualizer, image: np.ndarray, gt: dict, pred: dict, score_thr: float) -> np.ndarray:
    """Ground truth | prediction of one image.

    Args:
        visualizer: From :func:`build_visualizer`.
        image: RGB uint8.
        gt: ``bboxes`` (N, 4; x1 y1 x2 y2), ``labels`` and optionally ``masks`` (N, H, W bool).
        pred: ``bboxes``, ``scores``, ``labels`` and optionally ``masks`` (N, H, W bool).
        score_thr: Predictions at or below it are not painted (as the hook).
    """
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    height, width = image.shape[:2]
    gt_instances = InstanceData(bboxes=torch.as_tensor(gt['bboxes'], dtype=torch.float32).reshape(-1, 4),
                                labels=torch.as_tensor(gt['labels'], dtype=torch.int64))
    if gt.get('masks') is not None:
        gt_instances.masks = BitmapMasks(np.asarray(gt['masks'], dtype=np.uint8).reshape(-1, height, width),
                                         height, width)
    pred_instances = InstanceData(bboxes=torch.as_tensor(pred['bboxes'], dtype=torch.float32).reshape(-1, 4),
                                  scores=torch.as_tensor(pred['scores'], dtype=torch.float32),
                                  labels=torch.as_tensor(pred['labels'], dtype=torch.int64))
    if pred.get('masks') is not None:
        pred_instances.masks = torch.as_tensor(np.asarray(pred['masks'], dtype=bool).reshape(-1, height, width))
    sample = DetDataSample(gt_instances=gt_instances, pred_instances=pred_instances)
    visualizer.add_datasample('report', image, data_sample=sample, draw_gt=True, draw_pred=True,
                              pred_score_thr=score_thr)
    return visualizer.get_image()


def paint_segmentation(visualizer, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Ground truth | prediction of one image (class-index maps of the image's size; values outside the
    classes, such as the ignore index, are left unpainted by mmseg's visualizer)."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.as_tensor(label[None].astype(np.int64))),
                           pred_sem_seg=PixelData(data=torch.as_tensor(prediction[None].astype(np.int64))))
    visualizer.add_datasample('report', image, data_sample=sample, draw_gt=True, draw_pred=True)
    return visualizer.get_image()


def painted_picture(painted: np.ndarray, name: str, caption: str) -> Picture:
    """A painted image as a page picture (scaled to the page as :data:`MAX_WIDTH` and :data:`MIN_HEIGHT` say)."""
    return picture_from_array(painted, name, caption, MAX_WIDTH, MIN_HEIGHT)
