"""Segmentation analysis against mmseg's IoUMetric, label maps read as mmseg reads them, and the one-line
refusal of another dataset's label maps."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from convnext_dense.errors import ReportError
from convnext_dense.report import segmentation
from convnext_dense.report.results import ResultsSource

CLASSES = ('background', 'circle', 'square', 'ring')


def iou_metric_reference(pairs, num_classes, ignore_index=255):
    """Per-class IoU and Acc from mmseg's IoUMetric, fed the same maps as its ``process`` feeds it."""
    from mmseg.evaluation import IoUMetric
    results = [IoUMetric.intersect_and_union(torch.as_tensor(p), torch.as_tensor(l), num_classes, ignore_index)
               for p, l in pairs]
    totals = [sum(r[i] for r in results) for i in range(4)]
    metrics = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'])
    return np.asarray(metrics['IoU']), np.asarray(metrics['Acc'])


def test_per_class_iou_and_acc_equal_mmseg():
    rng = np.random.default_rng(0)
    total = np.zeros((5, 5), dtype=np.int64)
    pairs = []
    for _ in range(3):
        label = rng.integers(0, 4, size=(20, 30))
        label[rng.random(label.shape) < 0.1] = 255  # ignored pixels
        label[0, :3] = 7  # outside the classes: mmseg leaves it out of the ground truth's areas only
        prediction = np.where(rng.random(label.shape) < 0.7, label % 4, rng.integers(0, 4, size=label.shape))
        prediction[1, :2] = 9  # outside the classes, predicted
        pairs.append((prediction, label))
        total += segmentation.image_confusion(prediction, label, 4, 255)
    iou, acc = segmentation.class_scores(total)
    reference_iou, reference_acc = iou_metric_reference(pairs, 4)
    np.testing.assert_allclose(iou, reference_iou, rtol=1e-6)
    np.testing.assert_allclose(acc, reference_acc, rtol=1e-6)


def test_a_class_in_neither_map_is_nan_and_left_out_of_the_image_miou():
    label = np.array([[0, 0], [1, 1]])
    prediction = np.array([[0, 1], [1, 1]])
    confusion = segmentation.image_confusion(prediction, label, 3, 255)
    iou, _ = segmentation.class_scores(confusion)
    assert iou[:2].tolist() == [0.5, 2 / 3] and np.isnan(iou[2])
    assert segmentation.image_miou(confusion) == pytest.approx((0.5 + 2 / 3) / 2)
    assert segmentation.top_confusions(confusion, CLASSES[:3]) == [('background', 'circle', 0.5, 1)]


def test_maps_of_another_size_are_one_line():
    with pytest.raises(ReportError, match=r'a.png: the prediction is 3x2 pixels but its label map 2x2'):
        segmentation.image_confusion(np.zeros((2, 3), int), np.zeros((2, 2), int), 3, 255, where='a.png')


def write_dataset(root, reduce_zero_label: bool):
    """Two 4x4 images with label maps (``label + 1`` on disk when the zero label is reduced) and predictions
    as IoUMetric writes them."""
    for folder in ('img', 'ann', 'pred'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    labels = [np.array([[0, 0, 1, 1]] * 4), np.array([[2, 2, 1, 1]] * 4)]
    predictions = [np.array([[0, 1, 1, 1]] * 4), np.array([[2, 2, 2, 1]] * 4)]
    shift = 1 if reduce_zero_label else 0
    for index, (label, prediction) in enumerate(zip(labels, predictions)):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / 'img' / f'{index}.jpg')
        Image.fromarray((label + shift).astype(np.uint8)).save(root / 'ann' / f'{index}.png')
        Image.fromarray((prediction + shift).astype(np.uint8)).save(root / 'pred' / f'{index}.png')
    cfg = Config.fromstring(
        f"default_scope = 'mmseg'\ntest_dataloader = dict(dataset=dict(type='BaseSegDataset', data_root={str(root)!r}, "
        f"data_prefix=dict(img_path='img', seg_map_path='ann'), img_suffix='.jpg', seg_map_suffix='.png', "
        f"reduce_zero_label={reduce_zero_label}, metainfo=dict(classes={CLASSES[:3]!r}), pipeline=[]))\n"
        f"test_evaluator = dict(type='IoUMetric')\n", '.py')
    return ResultsSource(root / 'pred', 'seg', cfg, config_origin='test'), labels, predictions


@pytest.mark.parametrize('reduce_zero_label', [False, True])
def test_label_maps_are_read_as_mmseg_reads_them(tmp_path, reduce_zero_label):
    source, labels, predictions = write_dataset(tmp_path, reduce_zero_label)
    data = segmentation.load_segmentation_set(source)
    assert [p.name for p in data.pairs] == ['0', '1'] and data.reduce_zero_label == reduce_zero_label
    confusion, scores = segmentation.evaluate(data)
    iou, acc = segmentation.class_scores(confusion)
    reference_iou, reference_acc = iou_metric_reference(list(zip(predictions, labels)), 3)
    np.testing.assert_allclose(iou, reference_iou)
    np.testing.assert_allclose(acc, reference_acc)
    # Each image: one class predicted on 4 of its 8 pixels (IoU 1/2) and spread over another's 8 (IoU 2/3).
    assert [score for _, score in scores] == pytest.approx([(0.5 + 2 / 3) / 2] * 2)


def test_label_maps_of_another_dataset_are_one_line(tmp_path):
    source, _, _ = write_dataset(tmp_path, False)
    for path in (tmp_path / 'pred').iterdir():
        path.rename(path.with_name('other_' + path.name))
    with pytest.raises(ReportError) as error:
        segmentation.load_segmentation_set(source)
    assert str(error.value) == (f'--results {tmp_path / "pred"}: none of its 2 label maps is named after an image of '
                                f'the test dataset (2 images): they were made on another dataset; pass the results '
                                f'of a test on this one')
