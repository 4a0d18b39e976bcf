"""The synthetic shapes generator: determinism, valid COCO annotations, label maps that match the masks."""
import hashlib
import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from PIL import Image

from convnext_dense.datasets.shapes import SEG_CLASSES, SHAPES_CLASSES, make_shapes

import pycocotools  # noqa: E402  (a missing pycocotools must fail, not skip)
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

SIZES = dict(num_train=6, num_val=4, image_size=64)


def _digests(root: Path) -> Dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('shapes') / 'data'
    make_shapes(root, seed=3, **SIZES)
    return root


def test_same_seed_gives_identical_bytes(shapes_root, tmp_path):
    again = tmp_path / 'again'
    make_shapes(again, seed=3, **SIZES)
    digests = _digests(shapes_root)
    assert len(digests) == 2 * (6 + 4) + 3  # images + labels, two json files, metainfo
    assert _digests(again) == digests


def test_other_seed_gives_other_data(shapes_root, tmp_path):
    other = tmp_path / 'other'
    make_shapes(other, seed=4, **SIZES)
    name = 'annotations/instances_train.json'
    assert _digests(other)[name] != _digests(shapes_root)[name]


def test_val_split_does_not_depend_on_train_size(shapes_root, tmp_path):
    bigger = tmp_path / 'bigger'
    make_shapes(bigger, seed=3, num_train=8, num_val=4, image_size=64)
    assert (bigger / 'annotations/instances_val.json').read_bytes() == \
        (shapes_root / 'annotations/instances_val.json').read_bytes()


@pytest.mark.parametrize('split', ['train', 'val'])
def test_pycocotools_loads_and_areas_are_positive(shapes_root, split):
    coco = COCO(str(shapes_root / f'annotations/instances_{split}.json'))
    assert len(coco.getImgIds()) == SIZES[f'num_{split}']
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES_CLASSES)
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns, 'no instances were drawn'
    for ann in anns:
        mask = coco.annToMask(ann)
        assert ann['area'] > 0 and ann['area'] == mask.sum()
        x, y, w, h = ann['bbox']
        assert w > 0 and h > 0
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


def test_loadres_round_trip_scores_perfect(shapes_root):
    """The ground truth, submitted as detections, loads through loadRes and scores AP 1.0 for both iou types."""
    coco = COCO(str(shapes_root / 'annotations/instances_val.json'))
    results = [{'image_id': a['image_id'], 'category_id': a['category_id'], 'bbox': a['bbox'],
                'segmentation': a['segmentation'], 'score': 1.0} for a in coco.loadAnns(coco.getAnnIds())]
    for iou_type in ('bbox', 'segm'):
        detections = coco.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[0] == pytest.approx(1.0), iou_type


@pytest.mark.parametrize('split', ['train', 'val'])
def test_label_maps_agree_with_instance_masks(shapes_root, split):
    coco = COCO(str(shapes_root / f'annotations/instances_{split}.json'))
    for image in coco.loadImgs(coco.getImgIds()):
        label_map = np.asarray(Image.open(shapes_root / 'labels' / split / image['file_name']))
        rgb = Image.open(shapes_root / 'images' / split / image['file_name'])
        assert rgb.mode == 'RGB' and rgb.size == (image['width'], image['height'])
        assert label_map.shape == (image['height'], image['width'])
        expected = np.zeros_like(label_map)
        covered = np.zeros(label_map.shape, dtype=int)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            expected[mask] = ann['category_id']  # category id k + 1 is label-map value k + 1
            covered += mask
        assert covered.max() <= 1, 'visible instance masks must not overlap'
        np.testing.assert_array_equal(label_map, expected)
        assert label_map.max() < len(SEG_CLASSES)


def test_metainfo(shapes_root):
    meta = json.loads((shapes_root / 'metainfo.json').read_text())
    assert meta['classes'] == list(SHAPES_CLASSES)
    assert meta['seg_classes'] == ['background', *SHAPES_CLASSES]
    assert len(meta['palette']) == len(SHAPES_CLASSES) and len(meta['seg_palette']) == len(SEG_CLASSES)


def test_bad_sizes_name_the_option(tmp_path):
    with pytest.raises(ValueError, match='image_size'):
        make_shapes(tmp_path, image_size=8, num_train=1, num_val=1)


def test_cli_writes_the_dataset(tmp_path):
    from convnext_dense.cli import make_shapes as cli

    cli.main(['--out', str(tmp_path / 'cli'), '--seed', '3', '--num-train', '6', '--num-val', '4',
              '--image-size', '64'])
    assert (tmp_path / 'cli/annotations/instances_val.json').read_bytes() == \
        make_shapes_json(tmp_path / 'api')


def make_shapes_json(root: Path) -> bytes:
    make_shapes(root, seed=3, **SIZES)
    return (root / 'annotations/instances_val.json').read_bytes()
