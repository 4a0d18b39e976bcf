"""The ``mmcv-ops`` benchmark mode: its cases, its report, and how close ours are to the compiled ops.

No timing is asserted: the benchmark is the instrument; these tests check what it measures and reports.
"""
import json

import torch

from convnext_dense import benchmark
from convnext_dense.benchmark import mmcv_ops

SMALL = ['mmcv-ops', '--rois', '20', '--batch', '1', '--strides', '16', '--output-sizes', '7', '--boxes', '50',
         '--soft-nms-boxes', '30', '--iters', '1', '--warmup', '0', '--rounds', '2', '--device', 'cpu']


def test_mode_times_every_case_and_reports_json(capsys):
    assert benchmark.main(SMALL + ['--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['mode'] == 'mmcv-ops' and 'device' in report['env']
    assert [row['case'] for row in report['rows']] == [
        'roi_align forward 20x256x7x7 on 1/16', 'roi_align backward 20x256x7x7 on 1/16', 'nms 50 boxes, IoU 0.7',
        'softnms linear 30 boxes']
    compiled = mmcv_ops.compiled_ext() is not None
    assert report['compiled'] == compiled
    for row in report['rows']:
        assert set(row['results']) == ({'ours', 'compiled'} if compiled else {'ours'})
        assert row['results']['ours']['ms'] > 0 and len(row['results']['ours']['rounds']) == 2
        if compiled:  # the same numbers as mmcv's kernels
            assert row['difference'] == 'equal' or float(row['difference']) < 1e-4, row


def test_table_names_the_missing_reference_or_the_ratio(capsys):
    assert benchmark.main(SMALL) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    marker = 'ours/compiled' if mmcv_ops.compiled_ext() is not None else 'compiled mmcv: n/a'
    assert all(marker in line for line in lines)


def test_rpn_like_boxes_overlap_so_nms_suppresses_most():
    boxes, scores = mmcv_ops.rpn_like_boxes(1000, torch.Generator().manual_seed(0))
    assert boxes.shape == (1000, 4) and bool((boxes[:, 2:] > boxes[:, :2]).all())
    kept = mmcv_ops.ours.nms(boxes, scores, iou_threshold=0.7)
    assert 50 < len(kept) < 700


def test_level_rois_have_the_sizes_mmdet_assigns_to_that_level():
    """mmdet's SingleRoIExtractor.map_roi_levels: floor(log2(sqrt(area) / 56 + 1e-6)), clamped to 0..3."""
    for level, stride in enumerate((4, 8, 16, 32)):
        rois = mmcv_ops.level_rois(200, 2, stride, torch.Generator().manual_seed(level))
        scale = ((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])).sqrt()
        levels = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, 3)
        assert bool((levels == level).all()) and set(rois[:, 0].tolist()) == {0.0, 1.0}
