"""The graphs' first steps: uint8 RGB images to the model's input, and modules the exporter cannot write as they are.

:class:`ImagePreprocess` does in the graph what mmdet's ``DetDataPreprocessor`` and mmseg's
``SegDataPreProcessor`` do to a test batch: channel order, mean / std, and padding after normalization with the
preprocessor's pad value, to each image's own size inside the batch and to the size divisor. A batch is the
images top-left in one N x H x W x 3 array (the predictor pads them there), with each image's height and width
in ``image_size``, so a file of a static shape takes any image that fits in it, padded exactly as mmdet pads an
image next to a larger one.
"""
import copy
from typing import Any, Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


class ImagePreprocess(nn.Module):
    """A batch of uint8 RGB images (N x H x W x 3) and their sizes to the N x 3 x H' x W' float model input.

    Args:
        mean: Per-channel mean, in the model's channel order.
        std: Per-channel standard deviation, in the model's channel order.
        to_bgr: The model takes BGR (its data preprocessor did not convert BGR to RGB).
        pad_size_divisor: Pad bottom and right to a multiple of this (1: no padding).
        pad_value: Value of the padded pixels, after normalization (as mmengine pads).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_bgr: bool = False,
                 pad_size_divisor: int = 1, pad_value: float = 0.0) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.to_bgr = to_bgr
        self.pad_size_divisor = int(pad_size_divisor)
        self.pad_value = float(pad_value)

    def forward(self, images: torch.Tensor, image_size: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """Normalizes ``images`` and pads each beyond its ``image_size`` (N x 2: height, width).

        Args:
            images: N x H x W x 3 uint8, each image top-left.
            image_size: N x 2 int64, each image's height and width.
            crop: Keep only the batch's largest image, rounded up to the size divisor (mmdet's and mmseg's
                batch); False keeps the whole array (mmseg's ``test_cfg.size`` padding).
        """
        x = images.permute(0, 3, 1, 2)
        rows = torch.ones_like(x[0, 0, :, 0], dtype=torch.int64).cumsum(0) - 1  # 0..H-1, H read from the data
        cols = torch.ones_like(x[0, 0, 0, :], dtype=torch.int64).cumsum(0) - 1
        if crop:
            # Index lists, not slices: a traced slice would record its bound as a constant.
            divisor = max(self.pad_size_divisor, 1)
            height = torch.div(image_size[:, 0].max() + divisor - 1, divisor, rounding_mode='floor') * divisor
            width = torch.div(image_size[:, 1].max() + divisor - 1, divisor, rounding_mode='floor') * divisor
            rows, cols = rows[rows < height], cols[cols < width]
            x = x.index_select(2, rows).index_select(3, cols)
        x = x.float()
        if self.to_bgr:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        inside = ((rows[None, :, None] < image_size[:, 0, None, None])
                  & (cols[None, None, :] < image_size[:, 1, None, None]))
        x = torch.where(inside[:, None], x, torch.full_like(x[:1, :1, :1, :1], self.pad_value))
        if self.pad_size_divisor > 1:
            divisor = self.pad_size_divisor
            pad_h = (divisor - x.shape[2] % divisor) % divisor
            pad_w = (divisor - x.shape[3] % divisor) % divisor
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x

    def describe(self) -> Dict[str, Any]:
        return dict(mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist(), to_bgr=self.to_bgr,
                    pad_size_divisor=self.pad_size_divisor, pad_value=self.pad_value)


def preprocess_from(data_preprocessor: nn.Module, pad_size_divisor: int, pad_value: float) -> ImagePreprocess:
    """The :class:`ImagePreprocess` of an mmdet / mmseg data preprocessor (RGB images in)."""
    mean = data_preprocessor.mean.flatten().tolist() if data_preprocessor._enable_normalize else [0.0] * 3
    std = data_preprocessor.std.flatten().tolist() if data_preprocessor._enable_normalize else [1.0] * 3
    # The pipeline loads BGR; channel_conversion flips it to RGB. Fed RGB, the graph flips only when the
    # model was trained on BGR (no conversion).
    to_bgr = not bool(getattr(data_preprocessor, '_channel_conversion',
                              getattr(data_preprocessor, 'channel_conversion', False)))
    return ImagePreprocess(mean, std, to_bgr, pad_size_divisor, pad_value)


class AdaptiveAvgPool2dExport(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matrices, so it exports for any input size.

    The TorchScript exporter writes adaptive pooling as a fixed ``AveragePool`` sized for the traced input,
    and refuses output sizes that do not divide it (UperNet's pool scales 3 and 6). Bin ``i`` of ``n`` over
    a length ``L`` averages ``[floor(i L / n), ceil((i + 1) L / n))``, as PyTorch does.

    Args:
        output_size: The pooled size (int or (h, w)).
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _averaging_matrix(line: torch.Tensor, bins: int) -> torch.Tensor:
        """(bins x L) averaging weights along ``line`` (a 1-D tensor of length L)."""
        index = torch.ones_like(line, dtype=torch.int64).cumsum(0) - 1  # 0..L-1, L read from the data
        length = index[-1:] + 1
        bin_index = torch.arange(bins, dtype=torch.int64, device=line.device)[:, None]
        start = torch.div(bin_index * length, bins, rounding_mode='floor')
        end = torch.div((bin_index + 1) * length + bins - 1, bins, rounding_mode='floor')
        inside = ((index[None, :] >= start) & (index[None, :] < end)).to(line.dtype)
        return inside / inside.sum(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._averaging_matrix(x[0, 0, :, 0], self.output_size[0])
        cols = self._averaging_matrix(x[0, 0, 0, :], self.output_size[1])
        return torch.matmul(torch.matmul(rows, x), cols.t())


def exportable_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode, SyncBN as BN, adaptive pools the exporter writes for any size, no CPU kernels.

    The CPU kernels of ``convnext_dense.ops`` step aside under tracing anyway; switching them off makes the
    copy's eager forward (the reference the exported graph is checked against) the traced computation.
    """
    from mmengine.model import revert_sync_batchnorm

    from convnext_dense.ops import set_cpu_kernels
    model = set_cpu_kernels(revert_sync_batchnorm(copy.deepcopy(model)).eval(), False)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
                setattr(parent, name, AdaptiveAvgPool2dExport(child.output_size))
    return model
