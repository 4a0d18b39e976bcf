"""``report`` end to end: the demo detector and segmentor trained 2 iterations on a tiny shapes set, tested
with ``--out``, then reported. The page's pictures are the sizes it states, its numbers are pycocotools' and
mmseg's for the same predictions, two runs overlay, and each bad input is one line while the rest is drawn."""
import html
import html.parser
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convnext_dense.cli import demo
from convnext_dense.config import config_path
from convnext_dense.datasets.shapes import make_shapes
from convnext_dense.errors import ReportError
from convnext_dense.report.page import write_report

ITERS = 2
RESULTS = {'det': 'results.pkl', 'seg': 'maps'}


class Tables(html.parser.HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts, and every ``<img>``'s attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables, self.images, self._cell = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == 'table':
            self.tables.append([])
        elif tag == 'tr':
            self.tables[-1].append([])
        elif tag in ('td', 'th'):
            self._cell = ''
        elif tag == 'img':
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ('td', 'th'):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def table(self, first_header: str, contains: str = '') -> list:
        return next(t for t in self.tables if t[0][0] == first_header and contains in ' '.join(t[0]))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """``{task: (work dir, results)}`` of the two demo configs, trained and tested here."""
    from convnext_dense.cli import test as test_tool
    from convnext_dense.cli import train
    from convnext_dense.cli.runner import build_runner

    root = tmp_path_factory.mktemp('report')
    data = root / 'shapes'
    make_shapes(data, seed=0, num_train=4, num_val=4, image_size=128)
    runs = {}
    for task in demo.TASKS:
        options = demo.data_options(task, data) + demo.schedule_options(ITERS) + [
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2', 'test_dataloader.batch_size=2',
            'default_hooks.logger.interval=1', f'visualizer.name=report_{task.key}']
        options += [f'{loader}.{key}' for loader in task.dataloaders
                    for key in ('num_workers=0', 'persistent_workers=False')]
        work_dir = root / task.key
        config = config_path(task.config)
        cfg = train.load_config(train.parse_args([config, '--work-dir', str(work_dir), '--cfg-options', *options]))
        build_runner(cfg).train()
        out = work_dir / 'test' / RESULTS[task.key]
        test_tool.main([config, str(demo.last_checkpoint(work_dir)), '--work-dir', str(work_dir / 'test'),
                        '--out', str(out), '--cfg-options', *options, f'visualizer.name=report_{task.key}_test'])
        runs[task.key] = (work_dir, out)
    return runs


@pytest.fixture(scope='module')
def page(runs, tmp_path_factory):
    report = write_report([runs['seg'][0], runs['det'][0]], out=tmp_path_factory.mktemp('page') / 'report')
    return report, Tables(report.page.read_text())


def test_test_out_writes_the_note_the_report_reads(runs):
    for task, (_, out) in runs.items():
        info = json.loads(out.with_name(out.name + '.meta.json').read_text())
        assert info['task'] == task and info['checkpoint'].endswith(f'iter_{ITERS}.pth')
        assert set(info['metrics']) >= ({'coco/bbox_mAP', 'coco/segm_mAP'} if task == 'det' else {'mIoU'})


def test_page_and_every_picture_exist_at_their_stated_sizes(page):
    report, parsed = page
    assert report.warnings == []
    assert len(parsed.images) == len(report.pictures) >= 20
    for image in parsed.images:
        path = report.page.parent / image['src']
        with Image.open(path) as picture:
            assert picture.size == (int(image['width']), int(image['height'])), image['src']
            assert np.asarray(picture.convert('RGB')).std() > 1.0, f'{image["src"]} is blank'
    text = report.page.read_text()
    for title in ('Runs', 'Training curves (segmentation)', 'Training curves (detection)', 'Per-class AP',
                  'Error breakdown (COCO analysis)', 'Class confusion', 'Per-class IoU and accuracy',
                  'Pixel confusion', 'Worst and best images'):
        assert f'>{title}</h' in text, title
    for run in ('seg', 'det'):  # the config's schedule replayed equals what mmengine's runner logged
        assert f'{run}: logged base_lr / declared lr from 1 to 1: the schedule was followed' in text
    names = {Path(i['src']).name for i in parsed.images}
    assert {'curves_det_losses.png', 'curves_det_optimisation.png', 'curves_det_validation.png'} <= names
    assert sum(n.startswith('det_worst_') for n in names) == 2 and sum(n.startswith('seg_best_') for n in names) == 2


def test_detection_numbers_are_pycocotools_per_class_ap(runs, page):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    work_dir, out = runs['det']
    coco = COCO(str(work_dir.parents[0] / 'shapes' / 'annotations' / 'instances_val.json'))
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    table = page[1].table('class', 'box AP')
    header = table[0]
    for iou_type, column in (('bbox', 'box AP'), ('segm', 'mask AP')):
        entries = []
        for image in predictions:
            pred = image['pred_instances']
            for i, label in enumerate(pred['labels'].tolist()):
                x1, y1, x2, y2 = pred['bboxes'][i].tolist()
                entry = dict(image_id=image['img_id'], category_id=label + 1, score=float(pred['scores'][i]))
                if iou_type == 'bbox':
                    entry['bbox'] = [x1, y1, x2 - x1, y2 - y1]
                else:
                    entry['segmentation'] = dict(pred['masks'][i], counts=pred['masks'][i]['counts'].decode())
                entries.append(entry)
        evaluator = COCOeval(coco, coco.loadRes(entries), iou_type)
        evaluator.params.maxDets = [100, 300, 1000]
        evaluator.evaluate()
        evaluator.accumulate()
        for row in table[1:]:
            k = [c['name'] for c in coco.loadCats(coco.getCatIds())].index(row[0])
            precision = evaluator.eval['precision'][:, :, k, 0, -1]
            expected = precision[precision > -1].mean() if (precision > -1).any() else float('nan')
            shown = row[header.index(column)]
            assert (shown == '-' and np.isnan(expected)) or float(shown) == pytest.approx(expected, abs=5e-4), row
    summary = page[1].table('metric', 'printed by the test')
    for metric, recomputed, printed in summary[1:]:
        if metric.endswith('mAP'):  # CocoMetric rounds to 3 decimals
            assert float(recomputed) == pytest.approx(float(printed), abs=1e-3), metric


def test_error_breakdown_adds_up_as_coco_defines_it(page):
    summary = {row[0]: float(row[1]) for row in page[1].table('metric', 'printed by the test')[1:]
               if row[0].startswith('coco/')}
    for table, iou_type in zip([t for t in page[1].tables if t[0][:2] == ['class', 'C75']], ('bbox', 'segm')):
        for row in table[1:]:
            values = [float(v) for v in row[1:]]
            assert values == sorted(values) and values[-1] == 1.0, row  # each kind of error costs >= 0; FN is 1
        overall = [float(v) for v in table[1][1:]]
        # C75 and C50 over all classes are COCO's AP75 and AP50 (every shapes class has objects).
        assert overall[0] == pytest.approx(summary[f'coco/{iou_type}_mAP_75'], abs=2e-3)
        assert overall[1] == pytest.approx(summary[f'coco/{iou_type}_mAP_50'], abs=2e-3)


def test_segmentation_numbers_are_mmseg_iou_metric(runs, page):
    import torch
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.evaluation import IoUMetric
    work_dir, out = runs['seg']
    classes = ('background', 'circle', 'square', 'triangle', 'star', 'ring')
    results = []
    labels = work_dir.parents[0] / 'shapes' / 'labels' / 'val'
    for prediction in sorted(out.glob('*.png')):
        label = LoadAnnotations()(dict(seg_map_path=str(labels / prediction.name), reduce_zero_label=False,
                                       seg_fields=[]))['gt_seg_map']
        results.append(IoUMetric.intersect_and_union(torch.as_tensor(np.array(Image.open(prediction)).astype(np.int64)),
                                                     torch.as_tensor(label.astype(np.int64)), len(classes), 255))
    totals = [sum(r[i] for r in results) for i in range(4)]
    reference = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'])
    table = page[1].table('class', 'IoU (%)')
    for row in table[1:]:
        index = classes.index(row[0])
        for column, key in (('IoU (%)', 'IoU'), ('Acc (%)', 'Acc')):
            expected = 100 * float(reference[key][index])
            shown = row[table[0].index(column)]
            assert (shown == '-' and np.isnan(expected)) or float(shown) == pytest.approx(expected, abs=5e-3)
    summary = {row[0]: row[1:] for row in page[1].table('metric (%)')[1:]}
    assert float(summary['mIoU'][0]) == pytest.approx(float(summary['mIoU'][1]), abs=1e-2)  # the test's own


def copy_run(work_dir: Path, to: Path, keep_validation: bool = True, metric_offset: float = 0.0) -> Path:
    """A copy of a work dir without its test results (the report then draws curves and facts only), its
    validation records dropped or its metrics shifted."""
    shutil.copytree(work_dir, to, ignore=shutil.ignore_patterns('test'))
    for scalars in to.glob('*/vis_data/scalars.json'):
        records = [json.loads(line) for line in scalars.read_text().splitlines()]
        records = [r for r in records if keep_validation or 'lr' in r]
        for record in records:
            for key in record:
                if key.startswith('coco/'):
                    record[key] += metric_offset
        scalars.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return to


def test_two_work_dirs_overlay(runs, tmp_path):
    first = copy_run(runs['det'][0], tmp_path / 'det')
    second = copy_run(runs['det'][0], tmp_path / 'det_lr2', metric_offset=0.25)
    report = write_report([first, second], out=tmp_path / 'compare')
    text = report.page.read_text()
    parsed = Tables(text)
    assert 'Runs overlaid: det, det_lr2.' in text
    deltas = parsed.table('metric', 'det_lr2 - det')
    row = next(r for r in deltas if r[0] == 'coco/bbox_mAP')
    assert float(row[-1]) == pytest.approx(0.25)
    assert parsed.table('')[0] == ['', 'det', 'det_lr2']  # the facts, side by side
    assert ['curves_det_losses.png', 'curves_det_optimisation.png', 'curves_det_validation.png'] == sorted(
        Path(i['src']).name for i in parsed.images)  # one chart per kind, both runs in each


def test_a_folder_that_is_not_a_work_dir_is_one_line(runs, tmp_path):
    from convnext_dense.cli import report as report_cli
    with pytest.raises(ReportError) as error:
        report_cli.main([str(runs['det'][0]), str(runs['det'][0] / 'test' / 'results.pkl')])
    assert str(error.value) == (f'work dir {runs["det"][0] / "test" / "results.pkl"} is a file, not a folder; pass '
                                f'the --work-dir of a train run (results files go after --results)')


@pytest.mark.parametrize('case', ['no validation, results of the other task', 'results of another dataset'])
def test_bad_input_is_one_warning_each_and_the_rest_is_drawn(runs, tmp_path, case, capsys):
    from convnext_dense.cli import report as report_cli
    work_dir, out = runs['det']
    if case.startswith('no validation'):
        work_dir = copy_run(work_dir, tmp_path / 'det_no_val', keep_validation=False)
        results = runs['seg'][1]
        expected = [f'{work_dir}: no validation yet (train_cfg.val_interval is {ITERS})',
                    f'--results {results} holds segmentation label maps but {work_dir} is a detection run']
    else:
        with open(out, 'rb') as f:
            records = pickle.load(f)
        for record in records:
            record['img_id'] += 1000
        results = tmp_path / 'coco_results.pkl'
        with open(results, 'wb') as f:
            pickle.dump(records, f)
        expected = [f'--results {results} holds predictions for 4 image ids that']
    assert report_cli.main([str(work_dir), '--results', str(results), '--out', str(tmp_path / 'page')]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith('warning: ')]
    assert len(warnings) == len(expected) and all(any(e in w for w in warnings) for e in expected), warnings
    page = (tmp_path / 'page' / 'index.html').read_text()
    assert f'report: {tmp_path / "page" / "index.html"}' in captured.out
    assert 'curves_det_losses.png' in page and 'Runs</h2>' in page  # what can be drawn is drawn
    assert ('curves_det_validation.png' in page) == (not case.startswith('no validation'))
    assert all(html.escape(e) in page for e in expected)  # and said in the page
