"""NMS and soft-NMS in mmcv's ``_ext`` calling convention, on any device.

``nms`` is torchvision's compiled ``nms`` (mmcv 2.1.0's greedy NMS: boxes in descending score order, a box
suppressed when its IoU with a kept one exceeds the threshold), fed in mmcv's order of tied scores. ``softnms`` is mmcv's CPU soft-NMS (Bodla et
al., ICCV 2017) in array code, one vectorised step per pick: the same picks, scores and order, including
mmcv's tie-breaking, which follows the positions its loop swaps boxes into.
"""
import numpy as np
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

NAIVE, LINEAR, GAUSSIAN = 0, 1, 2  # mmcv's soft-NMS method codes


def _shifted(boxes: torch.Tensor, offset: int) -> torch.Tensor:
    """Boxes whose plain widths and heights are mmcv's ``x2 - x1 + offset``: intersections and areas then match."""
    return boxes if offset == 0 else boxes + boxes.new_tensor((0.0, 0.0, float(offset), float(offset)))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5, offset: int = 0) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, highest score first, as mmcv's compiled ``nms``.

    Boxes are visited in the order of mmcv's ``scores.sort(descending=True)``, whose order among tied scores
    (frequent in early RPN training) differs from torchvision's stable sort: torchvision's ``nms`` gets the
    boxes already in that order, with strictly decreasing stand-in scores.

    Args:
        boxes: N x 4 boxes ``(x1, y1, x2, y2)``.
        scores: N scores.
        iou_threshold: A box is dropped when its IoU with a kept box exceeds this.
        offset: 0, or 1 for the legacy ``x2 - x1 + 1`` box width.
    """
    order = scores.sort(0, descending=True)[1]
    ranks = torch.arange(order.numel(), 0, -1, dtype=torch.float32, device=scores.device)
    keep = torch.ops.torchvision.nms(_shifted(boxes, int(offset))[order], ranks, float(iou_threshold))
    return order[keep]


def _ious(box: np.ndarray, boxes: np.ndarray, area: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``boxes`` (offset already applied), in mmcv's order of float operations."""
    width = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    height = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = width * height
    return inter / (area + areas - inter)


def _decay(ious: np.ndarray, iou_threshold: float, sigma: float, method: int) -> np.ndarray:
    """The factor each remaining score is multiplied by."""
    one = ious.dtype.type(1)
    if method == NAIVE:
        return (ious < iou_threshold).astype(ious.dtype)
    if method == LINEAR:
        return np.where(ious >= iou_threshold, one - ious, one)
    if method == GAUSSIAN:
        return np.exp(-(ious * ious) / ious.dtype.type(sigma))
    return np.ones_like(ious)  # mmcv leaves scores unchanged for any other code


def _close_gaps(order: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``order`` without its dropped entries, arranged as mmcv's loop leaves them: each dropped entry's place is
    taken by the last remaining entry of the array, so the first ``len(kept)`` places keep their kept entries
    and their gaps fill with the kept entries beyond, last first."""
    count = int(keep.sum())
    head = order[:count].copy()
    head[~keep[:count]] = order[count:][keep[count:]][::-1]
    return head


def softnms(boxes: torch.Tensor, scores: torch.Tensor, dets: torch.Tensor, iou_threshold: float = 0.3,
            sigma: float = 0.5, min_score: float = 1e-3, method: int = LINEAR, offset: int = 0) -> torch.Tensor:
    """Soft-NMS as mmcv's compiled ``softnms``: returns the indices of the kept boxes in the order they were
    picked, and writes ``(x1, y1, x2, y2, score)`` of each pick, with its decayed score, into ``dets``' rows.

    Each step picks the highest remaining score, multiplies every other remaining score by a decay of its
    IoU with the pick and drops those below ``min_score``. The steps are sequential, one per pick, so they run
    in NumPy on the CPU (as mmcv's do, on a copy of CUDA inputs): on arrays of a few hundred boxes a NumPy
    operation costs a fifth of a torch one.

    Args:
        boxes: N x 4 boxes ``(x1, y1, x2, y2)``.
        scores: N scores.
        dets: N x 5 tensor whose first rows receive the picks.
        iou_threshold: IoU from which ``naive`` zeroes and ``linear`` decays (by ``1 - IoU``) a score.
        sigma: ``gaussian`` multiplies scores by ``exp(-IoU**2 / sigma)``.
        min_score: Scores below this are dropped.
        method: 0 naive, 1 linear, 2 gaussian.
        offset: 0, or 1 for the legacy ``x2 - x1 + 1`` box width.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    shifted = _shifted(boxes, int(offset)).detach().cpu().numpy()
    areas = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    scores_np = scores.detach().cpu().numpy().copy()
    order = np.arange(len(scores_np))  # box index at each position of mmcv's array
    step = 0
    while step < len(order):
        # the first maximum in array order, as mmcv's strict "<" scan finds it
        best = step + int(scores_np[order[step:]].argmax())
        order[step], order[best] = order[best], order[step]
        pick, rest = order[step], order[step + 1:]
        scores_np[rest] *= _decay(_ious(shifted[pick], shifted[rest], areas[pick], areas[rest]), iou_threshold,
                                  sigma, method)
        keep = scores_np[rest] >= min_score
        if not keep.all():
            order = np.concatenate((order[:step + 1], _close_gaps(rest, keep)))
        step += 1
    kept = torch.from_numpy(order).to(boxes.device)
    dets[:len(order), :4] = boxes[kept]
    dets[:len(order), 4] = torch.from_numpy(scores_np[order]).to(dets)
    return kept
