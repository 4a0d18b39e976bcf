"""The results of ``test --out`` and their note: written and found beside the results, the task checked,
and pickles read without running code."""
import json
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import RunsCodeWhenUnpickled
from convnext_dense.errors import ReportError
from convnext_dense.report import results

DET_CONFIG = "default_scope = 'mmdet'\ntest_evaluator = dict(type='CocoMetric', ann_file='a.json')\n"
SEG_CONFIG = "default_scope = 'mmseg'\ntest_evaluator = dict(type='IoUMetric')\n"


def det_pickle(path, records=None):
    records = records if records is not None else [dict(
        img_id=1, img_path='a.png', ori_shape=(8, 8),
        pred_instances=dict(bboxes=torch.tensor([[0.0, 1.0, 4.0, 5.0]]), scores=torch.tensor([0.9]),
                            labels=torch.tensor([2]), masks=[{'size': [8, 8], 'counts': b'abc'}],
                            mask_scores=np.array([0.5], dtype=np.float32)))]
    with open(path, 'wb') as f:
        pickle.dump(records, f, protocol=2)  # as mmengine's dump writes DumpDetResults' list
    return path


def test_note_is_written_beside_the_results_and_read_back(tmp_path):
    cfg = Config.fromstring(DET_CONFIG, '.py')
    out = det_pickle(tmp_path / 'results.pkl')
    note = results.write_results_info(cfg, out, 'work/iter_2.pth', {'coco/bbox_mAP': np.float64(0.5), 'table': 'x'})
    assert note == tmp_path / 'results.pkl.meta.json'
    info = json.loads(note.read_text())
    assert info['task'] == 'det' and info['checkpoint'] == 'work/iter_2.pth'
    assert info['metrics'] == {'coco/bbox_mAP': 0.5}  # numbers only
    source = results.open_results(out, None, tmp_path)
    assert source.task == 'det' and source.cfg.test_evaluator.ann_file == 'a.json'
    assert source.metrics == {'coco/bbox_mAP': 0.5} and source.checkpoint == 'work/iter_2.pth'
    assert results.find_results(tmp_path) == out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []  # written atomically


def test_a_folder_of_label_maps_notes_beside_itself(tmp_path):
    maps = tmp_path / 'maps'
    maps.mkdir()
    (maps / '000001.png').write_bytes(b'')
    results.write_results_info(Config.fromstring(SEG_CONFIG, '.py'), str(maps) + '/', 'c.pth')
    assert (tmp_path / 'maps.meta.json').is_file()
    assert results.results_task(maps) == 'seg'
    assert results.find_results(tmp_path) == maps


def test_results_of_another_task_are_one_line(tmp_path):
    out = det_pickle(tmp_path / 'results.pkl')
    with pytest.raises(ReportError) as error:
        results.open_results(out, Config.fromstring(SEG_CONFIG, '.py'), tmp_path / 'seg_run')
    assert str(error.value) == (f'--results {out} holds detection predictions (.pkl) but {tmp_path / "seg_run"} is '
                                f'a segmentation run; pass the results of a test of this run\'s config')


@pytest.mark.parametrize('name, message', [
    ('missing.pkl', 'does not exist'), ('empty_dir', 'holds no .png label maps'), ('scores.csv', 'a .csv file')])
def test_paths_that_are_no_results_are_one_line(tmp_path, name, message):
    path = tmp_path / name
    if name == 'empty_dir':
        path.mkdir()
    elif name.endswith('.csv'):
        path.write_text('x')
    with pytest.raises(ReportError, match=message):
        results.open_results(path, Config.fromstring(DET_CONFIG, '.py'), tmp_path)


def test_detections_load_as_numpy(tmp_path):
    records = results.load_detections(det_pickle(tmp_path / 'r.pkl'))
    pred = records[0]['pred_instances']
    assert isinstance(pred['bboxes'], np.ndarray) and pred['bboxes'].tolist() == [[0.0, 1.0, 4.0, 5.0]]
    assert pred['labels'].tolist() == [2] and pred['masks'][0]['counts'] == b'abc'
    assert pred['mask_scores'].dtype == np.float32 and pred['mask_scores'].tolist() == [0.5]


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'ran'
    path = det_pickle(tmp_path / 'evil.pkl', [dict(img_id=1, pred_instances=RunsCodeWhenUnpickled(str(marker)))])
    with pytest.raises(ReportError, match=r'refused to load it: it references posix.mkdir'):
        results.load_detections(path)
    assert not marker.exists()


def test_a_pickle_of_something_else_is_one_line(tmp_path):
    path = det_pickle(tmp_path / 'other.pkl', [{'a': 1}])
    with pytest.raises(ReportError, match='not detection predictions'):
        results.load_detections(path)
