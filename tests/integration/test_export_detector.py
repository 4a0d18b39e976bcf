"""Mask R-CNN and Cascade Mask R-CNN exported to ONNX against the PyTorch test path, on shapes images.

Each detector is trained for a few iterations through ``tools/train.py`` (the tiny setup of
:mod:`shapes_run`), exported with ``tools/export.py --dynamic-shape``, and run by stock ONNX Runtime through
:class:`~convnext_dense.deploy.predictor.OnnxPredictor` on the validation images. The PyTorch side is the model's
``test_step`` on the config's test dataset, as ``tools/test.py`` runs it. Per image the detections must agree
(labels equal, boxes within 0.5 px, scores within 1e-3, mask IoU >= 0.98 per instance), and the COCO bbox/segm
mAP of both paths within 0.005.
"""
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from shapes_run import REPO_ROOT, TRAIN, check_ok, make_data, run_tool, write_config  # noqa: E402

EXPORT = str(REPO_ROOT / 'tools' / 'export.py')
ITERS = 40
NUM_VAL = 8
BOX_TOL, SCORE_TOL, MASK_IOU, MAP_TOL = 0.5, 1e-3, 0.98, 0.005

# Training here is only the way to a checkpoint: the backbone's C++ weight-gradient kernel (built on first use)
# is left out.
PLAIN_DWCONV = "\nmodel['backbone']['cpu_kernels'] = False\n"
# Appended to the tiny Mask R-CNN config (whose ``model`` it edits): two cascade stages (the paper's three
# cost time, not coverage), a class-specific box head with BN convs as the paper's, then a class-agnostic one.
CASCADE = '''
def _bbox_head(stds, class_agnostic, convs):
    return dict(type='ConvFCBBoxHead', num_shared_convs=convs, num_shared_fcs=1, in_channels=64,
                conv_out_channels=32, fc_out_channels=64, roi_feat_size=7, num_classes=5,
                norm_cfg=dict(type='BN', requires_grad=True) if convs else None,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds),
                reg_class_agnostic=class_agnostic,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


def _rcnn(iou):
    return dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=100000, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                mask_size=28, pos_weight=-1, debug=False)


model.update(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True, type='CascadeRoIHead', num_stages=2, stage_loss_weights=[1, 0.5],
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=64, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)),
        bbox_head=[_bbox_head([0.1, 0.1, 0.2, 0.2], False, 2), _bbox_head([0.05, 0.05, 0.1, 0.1], True, 0)],
        mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=64, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)),
        mask_head=dict(type='FCNMaskHead', num_convs=1, in_channels=64, conv_out_channels=16, num_classes=5,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))))
model['train_cfg']['rcnn'] = [_rcnn(0.5), _rcnn(0.6)]
'''


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp('export_det') / 'shapes', num_train=8, num_val=NUM_VAL)


def train_and_export(root: Path, data: Path, name: str, extra: str = '') -> Tuple[Path, Path, Path]:
    """Trains ``ITERS`` iterations and exports with a dynamic shape; returns (config, checkpoint, onnx)."""
    config = write_config(root / f'{name}.py', data, max_iters=ITERS, checkpoint_interval=ITERS,
                          extra=PLAIN_DWCONV + extra)
    work_dir = root / name
    check_ok(run_tool([TRAIN, str(config), '--work-dir', str(work_dir)], timeout=600))
    checkpoint, onnx_file = work_dir / f'iter_{ITERS}.pth', root / f'{name}.onnx'
    output = check_ok(run_tool([EXPORT, str(config), str(checkpoint), '--out', str(onnx_file), '--dynamic-shape'],
                               timeout=600))
    assert f'wrote {onnx_file}' in output
    return config, checkpoint, onnx_file


def pytorch_predictions(config: Path, checkpoint: Path) -> Tuple[list, dict, str]:
    """The model's test_step on each test image (tools/test.py's path); also dataset_meta and the val json."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    from convnext_dense.apis import init_model
    model = init_model(str(config), str(checkpoint), device='cpu')  # what export builds the graph from
    cfg = model.cfg
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    with torch.no_grad():
        samples = [model.test_step(pseudo_collate([dataset[i]]))[0] for i in range(len(dataset))]
    return samples, dataset.metainfo, cfg.test_evaluator.ann_file


def onnx_predictions(onnx_file: Path, expected: list) -> list:
    from convnext_dense.deploy.predictor import OnnxPredictor
    predictor = OnnxPredictor(onnx_file)
    assert predictor.task == 'det'
    samples = []
    for reference in expected:
        sample = predictor(np.asarray(Image.open(reference.img_path).convert('RGB')))
        sample.set_metainfo(dict(img_id=reference.img_id, img_path=reference.img_path))
        samples.append(sample)
    return samples


def coco_map(samples: list, dataset_meta: dict, ann_file: str) -> dict:
    from mmdet.evaluation import CocoMetric
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dataset_meta
    metric.process({}, [sample.to_dict() for sample in samples])
    return metric.evaluate(len(samples))


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def unmatched_detections(expected, got) -> List[str]:
    """Each PyTorch detection is matched to an unused ONNX one of the same label within the tolerances."""
    e, g = expected.pred_instances, got.pred_instances
    problems = [] if len(e) == len(g) else [f'{len(e)} detections in PyTorch, {len(g)} in ONNX']
    used = set()
    for i in range(len(e)):
        match = next((j for j in range(len(g)) if j not in used and g.labels[j] == e.labels[i]
                      and (g.bboxes[j] - e.bboxes[i]).abs().max() <= BOX_TOL
                      and abs(g.scores[j] - e.scores[i]) <= SCORE_TOL), None)
        if match is None:
            problems.append(f'no match for label {int(e.labels[i])} box {e.bboxes[i].tolist()} '
                            f'score {float(e.scores[i]):.4f}')
            continue
        used.add(match)
        iou = mask_iou(e.masks[i], g.masks[match])
        if iou < MASK_IOU:
            problems.append(f'mask IoU {iou:.3f} for label {int(e.labels[i])} box {e.bboxes[i].tolist()}')
    return problems


def check_same_predictions(config: Path, checkpoint: Path, onnx_file: Path) -> Tuple[dict, dict]:
    expected, dataset_meta, ann_file = pytorch_predictions(config, checkpoint)
    got = onnx_predictions(onnx_file, expected)
    assert sum(len(s.pred_instances) for s in expected) > 0, 'the trained model detects nothing: test is void'
    for reference, sample in zip(expected, got):
        assert sample.pred_instances.masks.shape[1:] == reference.pred_instances.masks.shape[1:]
        problems = unmatched_detections(reference, sample)
        assert not problems, f'{reference.img_path}: ' + '; '.join(problems[:5])
    return coco_map(expected, dataset_meta, ann_file), coco_map(got, dataset_meta, ann_file)


def test_mask_rcnn_onnx_matches_pytorch(shapes, tmp_path):
    import onnx
    config, checkpoint, onnx_file = train_and_export(tmp_path, shapes, 'mask_rcnn')
    ops = {node.op_type for node in onnx.load(str(onnx_file)).graph.node}
    assert {'RoiAlign', 'NonMaxSuppression'} <= ops
    roi_align = next(n for n in onnx.load(str(onnx_file)).graph.node if n.op_type == 'RoiAlign')
    assert {a.name: a.s for a in roi_align.attribute}['coordinate_transformation_mode'] == b'half_pixel'
    torch_map, onnx_map = check_same_predictions(config, checkpoint, onnx_file)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(torch_map[key] - onnx_map[key]) <= MAP_TOL, (key, torch_map[key], onnx_map[key])


def test_cascade_mask_rcnn_onnx_matches_pytorch(shapes, tmp_path):
    config, checkpoint, onnx_file = train_and_export(tmp_path, shapes, 'cascade', extra=CASCADE)
    torch_map, onnx_map = check_same_predictions(config, checkpoint, onnx_file)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(torch_map[key] - onnx_map[key]) <= MAP_TOL, (key, torch_map[key], onnx_map[key])
