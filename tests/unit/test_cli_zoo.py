"""``convnext-dense zoo``: every config of configs/det and configs/seg with its published results and weights."""
import json
import re
from pathlib import Path

from convnext_dense.cli import main as entry

REPO_ROOT = Path(__file__).resolve().parents[2]


def config_stems(task: str):
    return sorted(path.stem for path in (REPO_ROOT / 'configs' / task).glob('*.py'))


def test_zoo_lists_every_det_and_seg_config_with_its_weights(capsys):
    assert entry.main(['zoo']) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.split('\n\n')[0].splitlines()
    for column in ('name', 'task', 'backbone', 'pre-training', 'params / FLOPs', 'published results',
                   'trained weights'):
        assert column in header
    assert set(rule) == {'-', ' '}
    cells = {row.split()[0]: re.split(r'\s{2,}', row.strip()) for row in rows}  # columns: 2+ spaces apart
    assert sorted(cells) == sorted(config_stems('det') + config_stems('seg'))
    assert cells['cascade_convnext_t_3x'] == ['cascade_convnext_t_3x', 'det', 'ConvNeXt-T', 'ImageNet-1K',
                                              '86M / 741G', 'box 50.4, mask 43.7', 'ConvNeXt authors, OpenMMLab']
    assert cells['upernet_convnext_xl_in22k_640_160k'][-2:] == ['mIoU 53.6, ms+flip 54.0',
                                                                'ConvNeXt authors, OpenMMLab']
    assert cells['cascade_convnext_xl_in22k_3x'][-1] == 'ConvNeXt authors'
    assert cells['mask_rcnn_convnextv2_b_fcmae_lsj_3x'][-3:] == ['-', 'box 52.9, mask 46.4', 'OpenMMLab']
    assert cells['mask_rcnn_convnextv2_l_fcmae_lsj_3x'][-3:] == ['-', 'not published', 'no']
    assert f'{len(rows)} models, ' in out


def test_zoo_task_filter_and_json(capsys):
    assert entry.main(['zoo', '--task', 'seg', '--json']) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e['name'] for e in listed] == [e['name'] for e in listed if e['task'] == 'seg']
    assert sorted(e['name'] for e in listed) == config_stems('seg')
    tiny = next(e for e in listed if e['name'] == 'upernet_convnext_t_512_160k')
    assert tiny['results'] == {'mIoU': 46.0, 'mIoU (ms+flip)': 46.7} and tiny['params'] == 60e6
    authors, openmmlab = tiny['weights']
    assert authors['url'] == 'https://dl.fbaipublicfiles.com/convnext/ade20k/upernet_convnext_tiny_1k_512x512.pth'
    assert authors['sha256'] is None and openmmlab['sha256'] == 'cad485de'
    assert openmmlab['results'] == {'mIoU': 46.11, 'mIoU (ms+flip)': 46.62}
    assert entry.main(['zoo', '--task', 'det']) == 0
    assert 'upernet' not in capsys.readouterr().out
