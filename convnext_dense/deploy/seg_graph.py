"""The exported segmentor: uint8 RGB images to logits and label maps, through mmseg's own inference.

After :class:`~convnext_dense.deploy.preprocess.ImagePreprocess`, the graph calls the segmentor's own
``inference`` (whole-image, or sliding-window with the config's crop and stride), so the logits are mmseg's,
resized to the padded batch as mmseg's ``predict`` resizes them. What mmseg's ``postprocess_result`` does next
runs in the predictor: cropping each image's padding and resizing the logits to the image's size before the
test pipeline's ``Resize``.

Whole-image inference runs on the batch's padded extent, as mmseg pads a batch. Sliding-window inference needs
a static input shape and slides over all of it (as mmseg does with ``data_preprocessor.test_cfg.size`` set to
that shape): its number of windows depends on the size, and a traced graph would keep the example's.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from convnext_dense.deploy.preprocess import preprocess_from
from convnext_dense.errors import DeployError


class SegmentorGraph(nn.Module):
    """An mmseg ``EncoderDecoder`` from a batch of RGB images to logits (N x C x H x W) and labels (N x H x W).

    Args:
        segmentor: The trained mmseg ``EncoderDecoder`` (eval mode, adaptive pools replaced: see
            :func:`~convnext_dense.deploy.preprocess.exportable_copy`).
        shape: The input's height and width in a file of a static shape; None for a file that takes any size.
            Sliding-window inference needs a static shape (its number of windows depends on the size, and the
            exporter would record one).
    """

    def __init__(self, segmentor: nn.Module, shape: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.segmentor = segmentor
        preprocessor = segmentor.data_preprocessor
        test_cfg = getattr(preprocessor, 'test_cfg', None) or {}
        mode = segmentor.test_cfg.get('mode', 'whole')
        if mode not in ('whole', 'slide'):
            raise DeployError(f"model.test_cfg.mode={mode!r}: export writes mode='whole' or 'slide'")
        if shape is None and mode == 'slide':
            raise DeployError("model.test_cfg.mode='slide' computes a number of windows that depends on the image "
                              "size: export with a static --shape (the default), or set model.test_cfg.mode='whole'")
        fixed = test_cfg.get('size')
        if fixed is not None and (shape is None or tuple(shape) != tuple(fixed)):
            raise DeployError(f'data_preprocessor.test_cfg.size={tuple(fixed)} pads every test image to that size: '
                              f'export with --shape {fixed[0]} {fixed[1]} (the default for this config)')
        # mmseg pads a batch to its largest image, or every image to test_cfg.size; slide needs the whole input.
        self.crop = mode == 'whole' and fixed is None
        self.preprocess = preprocess_from(preprocessor, test_cfg.get('size_divisor') or 1,
                                          getattr(preprocessor, 'pad_val', 0))
        self.align_corners = segmentor.decode_head.align_corners
        # mmseg's rule: one output channel is a binary task thresholded after a sigmoid.
        self.threshold = (float(segmentor.decode_head.threshold) if segmentor.decode_head.out_channels == 1
                          else None)

    def forward(self, image: torch.Tensor, image_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(image, image_size, crop=self.crop)
        shape = x.shape[2:]  # sizes stay dynamic in a traced graph
        # mmseg's inference reads the first image's meta only: one entry keeps the batch size dynamic.
        logits = self.segmentor.inference(x, [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)])
        if self.threshold is not None:
            return logits, (logits.sigmoid() > self.threshold).long()[:, 0]
        return logits, logits.argmax(dim=1)
