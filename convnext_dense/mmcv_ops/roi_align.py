"""RoIAlign in mmcv's ``_ext`` calling convention, computed by torchvision's compiled ``roi_align``.

mmcv 2.1.0 and torchvision share the RoIAlign of Detectron2 (average pooling over a ``sampling_ratio`` grid
per bin, ``ceil(roi_size / output_size)`` samples where it is 0, bilinear samples clamped at the border and
zero beyond one pixel outside, ``aligned`` shifting boxes by half a pixel, RoIs narrower than one pixel widened
to one without ``aligned``), so torchvision's CPU and CUDA kernels give mmcv's numbers. Unlike mmcv 2.1.0's
kernels, torchvision's read channels-last feature maps correctly.
"""
import contextlib
from typing import Iterator

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

from convnext_dense.mmcv_ops.unavailable import raise_unavailable

AVERAGE_POOLING = 1  # mmcv's pool_mode code for 'avg' (0 is 'max')


def _check_pool_mode(pool_mode: int) -> None:
    if pool_mode != AVERAGE_POOLING:
        raise_unavailable("roi_align_forward with pool_mode='max'",
                          "RoIAlign(pool_mode='max'), which no convnext_dense config uses")


def _give_result(target: torch.Tensor, result: torch.Tensor) -> None:
    """Makes ``target`` (a fresh zero tensor mmcv allocated for the op to fill) hold ``result``.

    Re-pointing its storage instead of copying saves one pass over 50-150 MB per call at Mask R-CNN sizes.
    """
    if target.shape == result.shape and target.dtype == result.dtype and target.device == result.device:
        target.set_(result)
    else:
        target.copy_(result)


@contextlib.contextmanager
def _atomic_adds_allowed(grad: torch.Tensor) -> Iterator[None]:
    """Lets torchvision's CUDA backward (atomic adds) run under ``torch.use_deterministic_algorithms(True)``
    with a warning, as mmcv's compiled backward, also atomic adds, runs without one."""
    if grad.device.type != 'cuda' or not torch.are_deterministic_algorithms_enabled() \
            or torch.is_deterministic_algorithms_warn_only_enabled():
        yield
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=False)


def roi_align_forward(input: torch.Tensor, rois: torch.Tensor, output: torch.Tensor, argmax_y: torch.Tensor,
                      argmax_x: torch.Tensor, aligned_height: int = 7, aligned_width: int = 7,
                      spatial_scale: float = 1.0, sampling_ratio: int = 0, pool_mode: int = AVERAGE_POOLING,
                      aligned: bool = True) -> None:
    """Writes RoIAlign of ``input`` over ``rois`` into ``output``, as mmcv's compiled ``roi_align_forward``.

    Args:
        input: Feature maps, N x C x H x W.
        rois: K x 5 boxes ``(batch index, x1, y1, x2, y2)`` in input-image pixels.
        output: K x C x aligned_height x aligned_width tensor to fill.
        argmax_y: Unused by average pooling (mmcv's max pooling keeps sample positions there).
        argmax_x: Unused by average pooling.
        aligned_height: Output height.
        aligned_width: Output width.
        spatial_scale: Feature-map pixels per image pixel (1/4 ... 1/32 for FPN levels).
        sampling_ratio: Samples per bin side; 0 takes ``ceil(roi_size / output_size)``.
        pool_mode: 1 (average); 0 (max) raises :class:`MmcvOpUnavailableError`.
        aligned: Shift boxes by half a pixel (Detectron2's pixel model).
    """
    _check_pool_mode(pool_mode)
    result = torch.ops.torchvision.roi_align(input, rois, float(spatial_scale), int(aligned_height),
                                             int(aligned_width), int(sampling_ratio), bool(aligned))
    _give_result(output, result)


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, argmax_y: torch.Tensor,
                       argmax_x: torch.Tensor, grad_input: torch.Tensor, aligned_height: int = 7,
                       aligned_width: int = 7, spatial_scale: float = 1.0, sampling_ratio: int = 0,
                       pool_mode: int = AVERAGE_POOLING, aligned: bool = True) -> None:
    """Writes the gradient of :func:`roi_align_forward` w.r.t. its input into ``grad_input`` (zeros on entry).

    Args:
        grad_output: Gradient of the output, K x C x aligned_height x aligned_width.
        rois: The forward's boxes.
        argmax_y: Unused by average pooling.
        argmax_x: Unused by average pooling.
        grad_input: N x C x H x W zero tensor to fill.
        aligned_height: Output height.
        aligned_width: Output width.
        spatial_scale: The forward's scale.
        sampling_ratio: The forward's sampling ratio.
        pool_mode: 1 (average); 0 (max) raises :class:`MmcvOpUnavailableError`.
        aligned: The forward's ``aligned``.
    """
    _check_pool_mode(pool_mode)
    batch, channels, height, width = grad_input.shape
    with _atomic_adds_allowed(grad_output):
        result = torch.ops.torchvision._roi_align_backward(
            grad_output, rois, float(spatial_scale), int(aligned_height), int(aligned_width), batch, channels,
            height, width, int(sampling_ratio), bool(aligned))
    _give_result(grad_input, result)
