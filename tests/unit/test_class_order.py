"""Label order of COCO-format data: label i is metainfo.classes[i] whatever the order of the json's categories."""
import json

import numpy as np
import pytest

from convnext_dense.datasets.class_order import category_ids, json_order, shorten
from convnext_dense.errors import ConfigError

CATEGORIES = [{'id': 1, 'name': 'circle'}, {'id': 2, 'name': 'square'}, {'id': 7, 'name': 'triangle'}]


def test_ids_follow_the_order_of_classes():
    assert category_ids(CATEGORIES, ['triangle', 'circle', 'square'], 'a.json') == [7, 1, 2]
    assert category_ids(CATEGORIES, ['square'], 'a.json') == [2]


def test_json_order_is_what_mmdet_would_number():
    assert json_order(CATEGORIES, ('triangle', 'circle')) == ('circle', 'triangle')


@pytest.mark.parametrize('classes, expected', [
    (['circle', 'circle'], "metainfo.classes lists circle more than once (annotation file a.json)"),
    (['circle', 'hexagon'], 'annotation file a.json has no category named hexagon (metainfo.classes); its '
                            'categories are circle, square, triangle: use those names in classes'),
])
def test_names_that_are_no_single_category_are_refused(classes, expected):
    with pytest.raises(ConfigError, match='^' + expected.replace('(', r'\(').replace(')', r'\)')):
        category_ids(CATEGORIES, classes, 'a.json')


def test_a_name_given_to_two_categories_is_refused():
    with pytest.raises(ConfigError, match="names several categories 'circle' \\(ids \\[1, 9\\]\\)"):
        category_ids(CATEGORIES + [{'id': 9, 'name': 'circle'}], ['circle'], 'a.json')


def test_shorten_counts_what_it_leaves_out():
    assert shorten([str(i) for i in range(10)], limit=3) == '0, 1, 2, ... (7 more)'


@pytest.fixture(scope='module')
def shapes_json(tmp_path_factory):
    from convnext_dense.datasets.shapes import make_shapes
    root = tmp_path_factory.mktemp('shapes')
    make_shapes(root, num_train=3, num_val=1, image_size=(32, 32))
    return root


def test_dataset_labels_follow_a_shuffled_classes_list(shapes_json):
    """mmdet's CocoDataset numbers in the json's order; ours in the order the config lists."""
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset as MMDetCocoDataset

    from convnext_dense.datasets.coco import CocoDataset
    coco = json.loads((shapes_json / 'annotations' / 'instances_train.json').read_text())
    name_of = {c['id']: c['name'] for c in coco['categories']}
    shuffled = tuple(reversed([c['name'] for c in coco['categories']]))
    kwargs = dict(data_root=str(shapes_json), ann_file='annotations/instances_train.json',
                  data_prefix=dict(img='images/train/'), metainfo=dict(classes=shuffled), pipeline=[],
                  filter_cfg=None)
    ours, theirs = CocoDataset(**kwargs), MMDetCocoDataset(**kwargs)
    truth = sorted((ann['image_id'], tuple(ann['bbox']), name_of[ann['category_id']]) for ann in coco['annotations'])
    for dataset, named_right in ((ours, True), (theirs, False)):
        named = sorted((info['img_id'], tuple(float(v) for v in inst['bbox']), shuffled[inst['bbox_label']])
                       for info in map(dataset.get_data_info, range(len(dataset))) for inst in info['instances'])
        # bbox is x1, y1, x2, y2 in the dataset: compare names of the same boxes, in the same order.
        assert len(named) == len(truth)
        assert ([name for *_, name in named] == [name for *_, name in truth]) is named_right


def test_metric_writes_each_label_with_the_category_id_of_its_class(shapes_json, tmp_path):
    pytest.importorskip('mmdet')
    from convnext_dense.datasets.coco import CocoMetric
    ann_file = shapes_json / 'annotations' / 'instances_val.json'
    coco = json.loads(ann_file.read_text())
    shuffled = tuple(reversed([c['name'] for c in coco['categories']]))
    metric = CocoMetric(ann_file=str(ann_file), metric=['bbox'], format_only=True,
                        outfile_prefix=str(tmp_path / 'out'))
    metric.dataset_meta = dict(classes=shuffled)
    image = coco['images'][0]
    ann = next(a for a in coco['annotations'] if a['image_id'] == image['id'])
    x, y, w, h = ann['bbox']
    label = shuffled.index(next(c['name'] for c in coco['categories'] if c['id'] == ann['category_id']))
    metric.results = [(dict(img_id=image['id'], width=image['width'], height=image['height']),
                       dict(img_id=image['id'], bboxes=np.array([[x, y, x + w, y + h]], dtype=np.float32),
                            scores=np.array([0.9], dtype=np.float32), labels=np.array([label])))]
    metric.compute_metrics(metric.results)
    written = json.loads((tmp_path / 'out.bbox.json').read_text())
    assert [r['category_id'] for r in written] == [ann['category_id']]
