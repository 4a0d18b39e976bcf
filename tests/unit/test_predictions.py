"""The predictions writer's machine-readable side: JSON records, COCO RLE masks, label maps, metadata defaults.

Built from mmengine's data elements with the fields of mmdet's ``DetDataSample`` / mmseg's ``SegDataSample``
(``pred_instances``, ``pred_sem_seg``), so the checks need neither library.
"""
import json

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, InstanceData, PixelData
from pycocotools import mask as mask_utils

from convnext_dense.apis.predictions import (PredictionWriter, complete_meta, detection_record, encode_mask,
                                             label_map_png, seeded_palette)

CLASSES = ('circle', 'square', 'triangle')


def detection(height: int = 40, width: int = 60) -> BaseDataElement:
    masks = torch.zeros(3, height, width, dtype=torch.bool)
    masks[0, 5:15, 10:30] = True
    masks[1, 20:40, 0:10] = True
    masks[2, 0:2, 58:60] = True
    return BaseDataElement(pred_instances=InstanceData(
        bboxes=torch.tensor([[10.0, 5.0, 29.5, 14.25], [0.0, 20.0, 9.0, 39.0], [58.0, 0.0, 59.0, 1.0]]),
        scores=torch.tensor([0.9, 0.5, 0.1]), labels=torch.tensor([2, 0, 1]), masks=masks))


def test_record_keeps_instances_above_the_threshold_with_names_and_rle():
    record = detection_record(detection(), CLASSES, 'a.png', 40, 60, score_thr=0.3)
    assert record['boxes'] == [[10.0, 5.0, 29.5, 14.25], [0.0, 20.0, 9.0, 39.0]]
    assert record['scores'] == [0.9, 0.5] and record['labels'] == [2, 0]
    assert record['class_names'] == ['triangle', 'circle']
    decoded = [mask_utils.decode(dict(rle, counts=rle['counts'].encode())) for rle in record['masks']]
    assert all(mask.shape == (40, 60) for mask in decoded)
    np.testing.assert_array_equal(decoded[0], detection().pred_instances.masks[0].numpy())
    assert json.loads(json.dumps(record)) == record  # plain JSON types only


def test_rle_round_trips_an_odd_mask():
    mask = np.random.default_rng(0).random((17, 23)) > 0.5
    rle = encode_mask(mask)
    assert rle['size'] == [17, 23] and isinstance(rle['counts'], str)
    np.testing.assert_array_equal(mask_utils.decode(dict(rle, counts=rle['counts'].encode())), mask)


@pytest.mark.parametrize('top, dtype', [(149, np.uint8), (300, np.uint16)])
def test_label_map_png_keeps_values(top, dtype):
    label_map = np.arange(24 * 32).reshape(24, 32) % (top + 1)
    decoded = cv2.imdecode(np.frombuffer(label_map_png(label_map), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, label_map)


def test_meta_without_palette_gets_fixed_colours_not_another_datasets():
    meta = complete_meta({'CLASSES': CLASSES})
    assert meta['classes'] == CLASSES
    assert meta['palette'] == seeded_palette(3) == complete_meta({'classes': CLASSES})['palette']
    assert complete_meta(None, num_classes=2)['classes'] == ('class_0', 'class_1')
    given = [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert complete_meta({'classes': CLASSES, 'palette': given})['palette'] == given


def test_segmentation_label_map_is_written_atomically(tmp_path, monkeypatch):
    writer = PredictionWriter('seg', {'classes': CLASSES}, tmp_path)
    monkeypatch.setattr(writer, 'paint', lambda rgb, sample: rgb)  # painting is mmseg's (integration tests)
    label_map = torch.tensor([[0, 1, 2], [2, 1, 0]])[None]
    written = writer.write('dir/img.jpg', np.zeros((2, 3, 3), np.uint8),
                           BaseDataElement(pred_sem_seg=PixelData(data=label_map)))
    assert written['label_map'] == tmp_path / 'preds' / 'img.png'
    np.testing.assert_array_equal(cv2.imread(str(written['label_map']), cv2.IMREAD_UNCHANGED), label_map[0].numpy())
    assert writer.unique_name('img') == 'img_1'  # a second input with the same file name
    assert not [p for p in tmp_path.rglob('*') if p.name.endswith('.tmp')]
