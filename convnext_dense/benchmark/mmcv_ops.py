"""``mmcv-ops`` mode: convnext_dense's mmcv ops (on torchvision) next to mmcv's compiled ones, in one process.

RoIAlign forward and backward at Mask R-CNN sizes (1000 RoIs over a 256-channel FPN level of a 1344x800 image,
sized as mmdet's RoI extractor assigns RoIs to that level; 7x7 box and 14x14 mask outputs), NMS over 1000-5000
RPN-like boxes, and soft-NMS. Each round times every implementation, starting
with the next one; a ratio (ours / compiled time) is the median of the per-round ratios. Each case also reports
how far ours is from the compiled result (max abs difference, or whether the kept indices are equal). Without a
compiled mmcv only ours is timed.

    convnext-dense benchmark mmcv-ops --threads 1 --clock cpu
"""
import argparse
import importlib
import statistics
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch

from convnext_dense.benchmark.common import Clock, add_common_arguments, environment, paired_ratio, rotated
from convnext_dense.mmcv_ops import COMPILED, ext_provider
from convnext_dense.mmcv_ops import ext as ours

IMAGE_SIZE = (800, 1344)  # H, W of a Mask R-CNN test image
CHANNELS = 256
AVERAGE = 1


def compiled_ext():
    """mmcv's compiled ``_ext`` module, or None where mmcv is installed without it."""
    try:
        kind, _ = ext_provider()
    except ImportError:
        return None
    return importlib.import_module('mmcv._ext') if kind == COMPILED else None


def rpn_like_boxes(count: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``count`` boxes jittered around ``count // 10`` objects of a 1344x800 image, with scores: as many
    overlapping candidates per object as an RPN gives, so NMS suppresses most of them."""
    height, width = IMAGE_SIZE
    objects = max(count // 10, 1)
    centres = torch.rand(objects, 2, generator=generator) * torch.tensor([width, height])
    sizes = 16 + torch.rand(objects, 2, generator=generator) * 300
    pick = torch.randint(objects, (count,), generator=generator)
    jitter = 1 + 0.2 * torch.randn(count, 4, generator=generator)
    half = sizes[pick] / 2
    boxes = torch.cat((centres[pick] - half * jitter[:, :2], centres[pick] + half * jitter[:, 2:]), dim=1)
    boxes = torch.stack((boxes[:, 0], boxes[:, 1], torch.maximum(boxes[:, 2], boxes[:, 0] + 1),
                         torch.maximum(boxes[:, 3], boxes[:, 1] + 1)), dim=1)
    return boxes.contiguous(), torch.rand(count, generator=generator)


def level_rois(count: int, batch: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` RoIs ``(image, x1, y1, x2, y2)`` of the sizes mmdet's ``SingleRoIExtractor`` sends to the FPN
    level of ``stride``: sqrt(area) in [56, 112) px for stride 4, doubling per level (open-ended at 32)."""
    height, width = IMAGE_SIZE
    low = 56 * stride / 4 if stride > 4 else 16
    high = 112 * stride / 4 if stride < 32 else 2 * 56 * stride / 4
    scale = low + torch.rand(count, generator=generator) * (high - low)
    aspect = torch.exp((torch.rand(count, generator=generator) - 0.5) * 1.4)  # about 1:2 to 2:1
    size = torch.stack((scale * aspect.sqrt(), scale / aspect.sqrt()), dim=1)
    corner = torch.rand(count, 2, generator=generator) * (torch.tensor([width, height]) - size).clamp(min=1)
    image = torch.randint(batch, (count, 1), generator=generator).float()
    return torch.cat((image, corner, corner + size), dim=1)


def roi_align_case(ext, feature: torch.Tensor, rois: torch.Tensor, size: int, scale: float,
                   grad: Optional[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """One RoIAlign forward (``grad`` None) or backward call as mmcv's ``RoIAlignFunction`` makes it."""
    empty = feature.new_zeros(0)
    options = dict(aligned_height=size, aligned_width=size, spatial_scale=scale, sampling_ratio=0,
                   pool_mode=AVERAGE, aligned=True)

    def forward() -> torch.Tensor:
        output = feature.new_zeros(rois.shape[0], feature.shape[1], size, size)
        ext.roi_align_forward(feature, rois, output, empty, empty, **options)
        return output

    def backward() -> torch.Tensor:
        grad_input = feature.new_zeros(feature.shape)
        ext.roi_align_backward(grad, rois, empty, empty, grad_input, **options)
        return grad_input
    return forward if grad is None else backward


def cases(args: argparse.Namespace, device: torch.device) -> List[Tuple[str, Callable]]:
    """``(name, make)`` per case; ``make(ext)`` returns the call to time for that implementation."""
    generator = torch.Generator().manual_seed(0)
    found = []
    for stride in args.strides:
        shape = (args.batch, CHANNELS, IMAGE_SIZE[0] // stride, IMAGE_SIZE[1] // stride)
        feature = torch.randn(shape, generator=generator).to(device)
        rois = level_rois(args.rois, args.batch, stride, generator).to(device)
        for size in args.output_sizes:
            grad = torch.randn(args.rois, CHANNELS, size, size, generator=generator).to(device)
            for direction, g in (('forward', None), ('backward', grad)):
                name = f'roi_align {direction} {args.rois}x{CHANNELS}x{size}x{size} on 1/{stride}'
                found.append((name, lambda ext, f=feature, r=rois, s=size, sc=1 / stride, g=g:
                              roi_align_case(ext, f, r, s, sc, g)))
    for count in args.boxes:
        boxes, scores = (t.to(device) for t in rpn_like_boxes(count, generator))
        found.append((f'nms {count} boxes, IoU 0.7', lambda ext, b=boxes, s=scores:
                      lambda: ext.nms(b, s, iou_threshold=0.7, offset=0)))
    for count in args.soft_nms_boxes:
        boxes, scores = rpn_like_boxes(count, generator)  # mmcv's soft-NMS runs on the CPU
        found.append((f'softnms linear {count} boxes', lambda ext, b=boxes, s=scores: lambda: (
            ext.softnms(b, s, b.new_empty(b.shape[0], 5), iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                        method=1, offset=0))))
    return found


def difference(a, b) -> str:
    """How far two results of one case are apart: max abs difference of tensors, equality of indices."""
    if a.dtype == torch.long:
        return 'equal' if torch.equal(a.cpu(), b.cpu()) else 'DIFFERENT'
    return f'{(a.double() - b.double()).abs().max().item():.1e}'


def run(args: argparse.Namespace) -> dict:
    """Runs mmcv-ops mode; returns the JSON report (and prints a row per case unless ``--json``)."""
    device = torch.device(args.device)
    clock = Clock(args.clock, device)
    impls: Dict[str, object] = {'ours': ours}
    compiled = compiled_ext()
    if compiled is not None:
        impls['compiled'] = compiled
    rows = []
    for name, make in cases(args, device):
        calls = {impl: make(ext) for impl, ext in impls.items()}
        results = {impl: call() for impl, call in calls.items()}
        times: Dict[str, List[float]] = {impl: [] for impl in calls}
        for _ in range(args.warmup):
            for call in calls.values():
                call()
        for index in range(args.rounds):
            for impl in rotated(list(calls), index):
                start = clock()
                for _ in range(args.iters):
                    calls[impl]()
                times[impl].append((clock() - start) / args.iters * 1e3)
        row = dict(case=name, results={impl: dict(ms=statistics.median(t), rounds=t) for impl, t in times.items()})
        if compiled is not None:
            row['ours_vs_compiled'] = paired_ratio(times['ours'], times['compiled'])
            row['difference'] = difference(results['ours'], results['compiled'])
        rows.append(row)
        if not args.json:
            line = ' | '.join(f'{impl} {r["ms"]:9.2f} ms' for impl, r in row['results'].items())
            extra = (f' | ours/compiled {row["ours_vs_compiled"]:.2f}x, difference {row["difference"]}'
                     if compiled is not None else ' | compiled mmcv: n/a')
            print(f'{name:<44} | {line}{extra}', flush=True)
    return dict(mode='mmcv-ops', clock=args.clock, env=environment(), command=' '.join(sys.argv),
                compiled=compiled is not None, rows=rows)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``mmcv-ops`` and its options.

    Args:
        subparsers: The ``add_subparsers()`` object of the benchmark's parser.
    """
    parser = subparsers.add_parser('mmcv-ops', help="our RoIAlign / NMS / soft-NMS vs mmcv's compiled ops")
    add_common_arguments(parser, iters=3, warmup=1, rounds=5)
    parser.add_argument('--rois', type=int, default=1000, help='RoIs per RoIAlign call')
    parser.add_argument('--batch', type=int, default=2, help='images in the feature map')
    parser.add_argument('--strides', type=int, nargs='+', default=[4, 16], choices=(4, 8, 16, 32),
                        help='FPN levels of the feature maps')
    parser.add_argument('--output-sizes', type=int, nargs='+', default=[7, 14])
    parser.add_argument('--boxes', type=int, nargs='+', default=[1000, 2000, 5000], help='NMS box counts')
    parser.add_argument('--soft-nms-boxes', type=int, nargs='+', default=[300], help='soft-NMS box counts')
    return parser
