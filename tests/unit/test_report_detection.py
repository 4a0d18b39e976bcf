"""Detection analysis against pycocotools and mmdet's CocoMetric, the COCO error breakdown on a scene worked
out by hand, and the class confusion matrix."""
import json
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config

from convnext_dense.errors import ReportError
from convnext_dense.report import detection
from convnext_dense.report.error_analysis import ERROR_TYPES, error_breakdown, supercategory_note
from convnext_dense.report.results import ResultsSource

CATEGORIES = [{'id': 1, 'name': 'circle', 'supercategory': 'round'},
              {'id': 2, 'name': 'ring', 'supercategory': 'round'},
              {'id': 3, 'name': 'square', 'supercategory': 'angular'}]
CLASSES = ('circle', 'ring', 'square')


def box(x, y, w=10, h=10):
    return [float(x), float(y), float(w), float(h)]


def write_set(tmp_path, objects, detections, classes=CLASSES, dataset_type='CocoDataset'):
    """``objects``: [(image id, category id, [x, y, w, h])]; ``detections``: {image id: [(label, score, xywh)]}."""
    images = [{'id': i, 'file_name': f'{i}.png', 'width': 100, 'height': 100} for i in (1, 2)]
    anns = [{'id': n + 1, 'image_id': i, 'category_id': c, 'bbox': b, 'area': b[2] * b[3], 'iscrowd': 0}
            for n, (i, c, b) in enumerate(objects)]
    ann_file = tmp_path / 'instances.json'
    ann_file.write_text(json.dumps({'images': images, 'annotations': anns, 'categories': CATEGORIES}))
    records = []
    for image_id, dets in detections.items():
        xyxy = [[x, y, x + w, y + h] for _, _, (x, y, w, h) in dets]
        records.append(dict(img_id=image_id, img_path=f'{image_id}.png', ori_shape=(100, 100), pred_instances=dict(
            bboxes=torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([s for _, s, _ in dets], dtype=torch.float32),
            labels=torch.tensor([label for label, _, _ in dets], dtype=torch.int64))))
    with open(tmp_path / 'results.pkl', 'wb') as f:
        pickle.dump(records, f)
    cfg = Config.fromstring(f"default_scope = 'mmdet'\ntest_dataloader = dict(dataset=dict(type={dataset_type!r}, "
                            f"metainfo=dict(classes={classes!r})))\ntest_evaluator = dict(type='CocoMetric', "
                            f"ann_file={str(ann_file)!r})\n", '.py')
    return detection.load_detection_set(ResultsSource(tmp_path / 'results.pkl', 'det', cfg, config_origin='test'))


# The scene of the error-breakdown test (boxes are 10 x 10 unless said):
# image 1: circle A at (0, 0), square B at (20, 20), ring C at (40, 0);
# image 2: circle D at (0, 0), circle E at (50, 50), never detected.
# Circle detections: d1 .9 on A; d2 .8 on C (a ring: same supercategory); d3 .7 on B (a square: another one);
# d4 .6 on background; d5 .5 on A again (a duplicate); d6 .4 on D with IoU 0.3 (a localisation error).
SCENE_OBJECTS = [(1, 1, box(0, 0)), (1, 3, box(20, 20)), (1, 2, box(40, 0)), (2, 1, box(0, 0)), (2, 1, box(50, 50))]
SCENE_DETECTIONS = {1: [(0, 0.9, box(0, 0)), (0, 0.8, box(40, 0)), (0, 0.7, box(20, 20)), (0, 0.6, box(70, 70)),
                        (0, 0.5, box(1, 1))],
                    2: [(0, 0.4, box(0, 0, 10, 3))]}


def random_scene(seed: int, objects_per_image: int, detections_per_object: int, shift: float):
    """Random objects on two images and, per object, detections of a random class near it."""
    rng = np.random.default_rng(seed)
    objects = [(i, int(rng.integers(1, 4)), box(*rng.uniform(0, 80, 2))) for i in (1, 2)
               for _ in range(objects_per_image)]
    detections = {i: [] for i in (1, 2)}
    for image, _, (x, y, _, _) in objects:
        for _ in range(detections_per_object):
            label, score, (dx, dy) = int(rng.integers(0, 3)), float(rng.uniform(0.05, 1)), rng.normal(0, shift, 2)
            detections[image].append((label, score, box(x + dx, y + dy)))
    return objects, detections


def test_error_breakdown_of_a_scene_worked_out_by_hand(tmp_path):
    data = write_set(tmp_path, SCENE_OBJECTS, SCENE_DETECTIONS)
    breakdown = error_breakdown(data.coco, detection.load_predictions(data, 'bbox'), 'bbox', data.cat_ids)
    # Three circles; recall 1/3 (thresholds 0.00-0.33: 34 of 101) at precision 1 from d1 alone; recall 2/3
    # (0.34-0.66: 33 more) once d6 counts (IoU 0.1) at the precision left by the false positives before it:
    # 2/6 with all of them, 2/5 without d2 (Sim), 2/4 without d2 and d3 (Oth); BG: precision 1 up to 2/3.
    expected = {'C75': 34 / 101, 'C50': 34 / 101, 'Loc': (34 + 33 / 3) / 101, 'Sim': (34 + 33 * 0.4) / 101,
                'Oth': (34 + 33 * 0.5) / 101, 'BG': 67 / 101, 'FN': 1.0}
    circle = breakdown.class_ap()[:, 0]
    assert circle == pytest.approx([expected[name] for name in ERROR_TYPES])
    # Ring and square have objects but no detection: AP 0 until the FN curve.
    assert breakdown.class_ap()[:, 1:].tolist() == [[0, 0]] * 6 + [[1, 1]]
    assert breakdown.ap() == pytest.approx(breakdown.class_ap().mean(axis=1))
    gaps = np.diff(np.concatenate([[0.0], breakdown.ap()]))
    assert (gaps >= 0).all() and gaps.sum() == pytest.approx(1.0)  # the shares of the kinds of error add up
    assert supercategory_note(breakdown.supercategories).startswith('2 supercategories over 3 classes')


def test_c50_and_c75_are_cocoeval_ap_at_those_ious(tmp_path):
    from pycocotools.cocoeval import COCOeval
    data = write_set(tmp_path, *random_scene(seed=0, objects_per_image=6, detections_per_object=1, shift=2.0))
    dt = detection.load_predictions(data, 'bbox')
    breakdown = error_breakdown(data.coco, dt, 'bbox', data.cat_ids)
    reference = COCOeval(data.coco, dt, 'bbox')  # pycocotools' defaults: maxDets 1/10/100, IoU .50:.05:.95
    reference.evaluate()
    reference.accumulate()
    for row, iou_index in ((0, 5), (1, 0)):  # C75, C50
        precision = np.maximum(reference.eval['precision'][iou_index, :, :, 0, 2], 0)
        assert breakdown.curves[row] == pytest.approx(precision)


def test_per_class_ap_equals_pycocotools_and_mmdet_classwise(tmp_path):
    from mmdet.evaluation import CocoMetric
    from pycocotools.cocoeval import COCOeval
    data = write_set(tmp_path, *random_scene(seed=1, objects_per_image=8, detections_per_object=2, shift=3.0))
    ours = detection.per_class_ap(data, detection.evaluate(data, detection.load_predictions(data, 'bbox'), 'bbox'))
    metric = CocoMetric(ann_file=str(data.ann_file), metric='bbox', classwise=True)
    metric.dataset_meta = {'classes': CLASSES}
    with open(tmp_path / 'results.pkl', 'rb') as f:
        metric.process({}, pickle.load(f))
    mmdet = metric.compute_metrics(metric.results)
    for label, name in enumerate(CLASSES):
        single = COCOeval(data.coco, detection.load_predictions(data, 'bbox'), 'bbox')
        single.params.catIds = [data.cat_ids[label]]  # this class alone
        single.evaluate()
        single.accumulate()
        precision = single.eval['precision'][:, :, 0, 0, -1]
        assert ours['AP'][label] == pytest.approx(precision[precision > -1].mean())
        assert ours['AP'][label] == pytest.approx(mmdet[f'{name}_precision'], abs=5e-4)  # mmdet rounds to 3
    assert detection.overall_ap(detection.evaluate(data, detection.load_predictions(data, 'bbox'), 'bbox'))[
        'mAP'] == pytest.approx(mmdet['bbox_mAP'], abs=5e-4)


def test_confusion_matrix_prefers_the_right_class_then_counts_confusions(tmp_path):
    objects = [(1, 1, box(0, 0)), (1, 3, box(50, 50)), (2, 1, box(0, 0))]
    detections = {1: [(2, 0.9, box(0, 0)), (0, 0.8, box(1, 0)), (1, 0.2, box(50, 50))],  # the ring scores < .3
                  2: [(1, 0.7, box(0, 1))]}  # a ring on a circle, and no circle: a confusion
    data = write_set(tmp_path, objects, detections)
    matches = [detection.match_image(data, image, 'bbox', 0.3) for image in data.images]
    matrix = detection.confusion_matrix(matches, 3)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = 1  # image 1: the circle is found by its own class although a square scores higher on it
    expected[3, 2] = 1  # ... and that square is a false positive on background
    expected[2, 3] = 1  # the square object is missed (its only detection scores below the threshold)
    expected[0, 1] = 1  # image 2: circle detected as ring
    assert matrix.tolist() == expected.tolist()
    assert [m.f1() for m in matches] == [pytest.approx(2 * 1 / (2 + 2)), 0.0]


def test_predictions_of_another_dataset_are_one_line(tmp_path):
    with pytest.raises(ReportError, match=r'holds predictions for 1 image ids that .* does not have \(e\.g\. \[7\]\)'):
        write_set(tmp_path, SCENE_OBJECTS, {7: [(0, 0.9, box(0, 0))]})
    with pytest.raises(ReportError, match='predicts label 5 but the dataset has 3 classes'):
        write_set(tmp_path, SCENE_OBJECTS, {1: [(5, 0.9, box(0, 0))]})
    with pytest.raises(ReportError, match=r"has no categories named \['hexagon'\]"):
        write_set(tmp_path, SCENE_OBJECTS, {1: []}, classes=('circle', 'hexagon'))


def test_labels_are_named_in_the_annotation_files_order(tmp_path):
    data = write_set(tmp_path, SCENE_OBJECTS, SCENE_DETECTIONS, classes=('square', 'circle', 'ring'))
    assert data.classes == CLASSES and data.cat_ids == (1, 2, 3)  # as mmdet's CocoDataset numbers them


def test_labels_follow_classes_with_our_dataset(tmp_path):
    data = write_set(tmp_path, SCENE_OBJECTS, SCENE_DETECTIONS, classes=('square', 'circle', 'ring'),
                     dataset_type='convnext_dense.CocoDataset')
    assert data.classes == ('square', 'circle', 'ring') and data.cat_ids == (3, 1, 2)
