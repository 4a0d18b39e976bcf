"""Released models by name, end to end, on 127.0.0.1: a zoo entry (a temporary metafile) whose weights are an
mmcv 1.x file of the demo Mask R-CNN, published at the authors' host and served through the mirror setting.

``infer NAME image`` downloads it once (a progress line), paints with the file's own classes, works from the
cache with the server stopped, and predicts what the same weights saved by mmengine predict; ``test NAME`` on
the shapes data gives the metrics of the local file, with the published numbers beside them;
``init_model(NAME)`` of a released UperNet takes its weights, classes and palette.
"""
import hashlib
import io
import json
import pickle
import shutil

import pytest
import torch
from fixtures import mmcv1_checkpoints as fixtures
from fixtures.weights_server import Server
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from mmengine.visualization import Visualizer
from shapes_run import make_data

from convnext_dense import zoo
from convnext_dense.checkpoint import download as dl
from convnext_dense.cli import test as test_cli
from convnext_dense.cli.main import main as cli_main

NAME = 'mask_rcnn_shapes_released'
URL_PATH = 'convnext/coco/mask_rcnn_shapes_released.pth'
#: The file's own classes, unlike the config's: what is painted shows where the names came from.
FILE_CLASSES = ('disc', 'box', 'wedge', 'spark', 'hoop')
SEG_CLASSES = ('ground',) + FILE_CLASSES
SEG_PALETTE = [[0, 0, 0], [10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120], [130, 140, 150]]
SEG_NAME = 'upernet_shapes_released'
SEG_URL_PATH = 'convnext/ade20k/upernet_shapes_released.pth'
TEST_CONFIG = '''
_base_ = {base!r}
data_root = {data_root!r}
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
default_hooks = dict(visualization=dict(draw=False))
model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))  # random heads: keep every detection
'''


def released_bytes(kind: str, model: torch.nn.Module, **meta) -> bytes:
    """``model`` as mmcv 1.x wrote a ``kind`` file, its meta updated with ``meta`` (the file's own classes)."""
    checkpoint = fixtures.mmcv1_checkpoint(model, kind)
    checkpoint['meta'].update(meta)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def write_metafile(path, name: str, config, url_path: str, results: str, data: bytes) -> None:
    """A one-model metafile releasing ``data`` at the authors' host under ``url_path``, with its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'Models:\n'
        f'  - {{Name: {name}, Config: {config}, Metadata: {{Pretrained Weights: x}},\n'
        f'     Weights: [{{URL: "https://dl.fbaipublicfiles.com/{url_path}", Released By: ConvNeXt authors,\n'
        f'                Source: "https://github.com/facebookresearch/ConvNeXt", Written By: mmcv 1.x,\n'
        f'                SHA256: {hashlib.sha256(data).hexdigest()}, Results: {{{results}}}}}]}}\n')


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """The released files (and the detector's mmengine twin), a configs folder naming them, the server and the
    shapes data."""
    root = tmp_path_factory.mktemp('zoo_models')
    model = fixtures.build_model('mask_rcnn')
    data = released_bytes('mask_rcnn', model, CLASSES=FILE_CLASSES)
    local = root / 'released_local.pth'
    local.write_bytes(data)
    mmengine_file = root / 'mmengine.pth'
    save_checkpoint({'meta': dict(dataset_meta=dict(classes=FILE_CLASSES)),
                     'state_dict': weights_to_cpu(model.state_dict())}, str(mmengine_file))
    shapes = make_data(root / 'shapes', num_train=1, num_val=2)
    config = root / 'configs' / 'shapes_released.py'
    config.parent.mkdir()
    config.write_text(TEST_CONFIG.format(base=str(fixtures.DEMO / 'mask_rcnn_convnext_shapes.py'),
                                         data_root=f'{shapes}/'))
    write_metafile(root / 'configs' / 'det' / 'metafile.yml', NAME, config, URL_PATH,
                   'box AP: 50.4, mask AP: 43.7', data)
    segmentor = fixtures.build_model('upernet')
    seg_data = released_bytes('upernet', segmentor, CLASSES=SEG_CLASSES, PALETTE=SEG_PALETTE)
    write_metafile(root / 'configs' / 'seg' / 'metafile.yml', SEG_NAME, fixtures.DEMO / 'upernet_convnext_shapes.py',
                   SEG_URL_PATH, 'mIoU: 46.0', seg_data)
    server = Server({URL_PATH: data, SEG_URL_PATH: seg_data})
    yield dict(root=root, local=local, mmengine=mmengine_file, config=config, server=server,
               images=sorted((shapes / 'images' / 'val').glob('*.png')), segmentor=segmentor)
    server.stop()


@pytest.fixture
def released(site, tmp_path, monkeypatch):
    """NAME in the zoo, the mirror at the server, an empty cache."""
    monkeypatch.setattr(zoo, 'config_root', lambda: site['root'] / 'configs')
    for name in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(dl.MIRROR_ENV, f'{site["server"].base}/files')
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def run_cli(argv, capsys):
    status = cli_main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert 'Traceback' not in captured.err
    return status, captured.out, captured.err


def predictions(out_dir):
    return {path.name: json.loads(path.read_text()) for path in sorted((out_dir / 'preds').glob('*.json'))}


def test_infer_name_downloads_once_paints_its_classes_and_runs_from_the_cache(site, released, tmp_path, capsys):
    images = site['images']
    requests = site['server'].requests
    before = requests[f'/files/{URL_PATH}']
    status, _, err = run_cli(['infer', NAME, *images, '--out-dir', tmp_path / 'first', '--score-thr', '0'], capsys)
    assert status == 0, err
    assert f'downloading {URL_PATH.rsplit("/", 1)[-1]}: 100%' in err
    assert requests[f'/files/{URL_PATH}'] == before + 1
    assert (released / URL_PATH.rsplit('/', 1)[-1]).read_bytes() == site['local'].read_bytes()
    first = predictions(tmp_path / 'first')
    assert sorted(first) == sorted(f'{path.stem}.json' for path in images)
    assert sorted(path.stem for path in (tmp_path / 'first' / 'vis').glob('*.png')) == sorted(p.stem for p in images)
    names = {name for record in first.values() for name in record['class_names']}
    assert names and names <= set(FILE_CLASSES)

    # The same weights saved by mmengine predict the same.
    status, _, err = run_cli(['infer', site['config'], site['mmengine'], *images, '--out-dir', tmp_path / 'mmengine',
                              '--score-thr', '0'], capsys)
    assert status == 0, err
    assert predictions(tmp_path / 'mmengine') == first

    # The server gone (and the mirror pointing at nothing): the cached file is used as it is.
    site['server'].stop()
    try:
        status, _, err = run_cli(['infer', NAME, *images, '--out-dir', tmp_path / 'offline', '--score-thr', '0'],
                                 capsys)
    finally:
        site['server'] = Server(site['server'].httpd.files)
    assert status == 0, err
    assert 'downloading' not in err and predictions(tmp_path / 'offline') == first


def test_test_name_gives_the_local_files_metrics_with_the_published_ones_beside(site, released, tmp_path, capsys,
                                                                                monkeypatch):
    measured = []

    def record(metrics, resolved):
        measured.append(dict(metrics))
        return print_published(metrics, resolved)

    print_published = test_cli.print_published
    monkeypatch.setattr(test_cli, 'print_published', record)
    status, out, err = run_cli(['test', NAME, '--work-dir', tmp_path / 'by_name', '--out', tmp_path / 'by_name.pkl',
                                '--show-dir', 'vis', '--weights-mirror', f'{site["server"].base}/files',
                                '--cfg-options', 'visualizer.name=zoo_models_test_by_name'], capsys)
    assert status == 0, err
    # By its own name: earlier tests in the same process leave other visualizers, and mmengine's "current"
    # instance is the last one created, not necessarily this run's.
    painted = Visualizer.get_instance('zoo_models_test_by_name').dataset_meta['classes']
    assert painted == FILE_CLASSES  # painted with the file's
    assert len(list((tmp_path / 'by_name').glob('*/vis/*.png'))) == len(site['images'])
    assert f'{NAME}, measured beside published (https://github.com/facebookresearch/ConvNeXt):' in out
    assert 'coco/bbox_mAP ' in out and '(published 50.4, ConvNeXt authors)' in out
    assert '(published 43.7, ConvNeXt authors)' in out
    # A copy of the config under another name: mmengine names a run's logger and visualizer after it.
    local_config = shutil.copy(site['config'], tmp_path / 'shapes_local.py')
    status, out, err = run_cli(['test', local_config, site['local'], '--work-dir', tmp_path / 'local',
                                '--out', tmp_path / 'local.pkl'], capsys)
    assert status == 0, err
    assert 'published' not in out
    assert len(measured) == 2 and measured[0] == measured[1] and 'coco/bbox_mAP' in measured[0]
    by_name, local = (pickle.loads((tmp_path / f'{run}.pkl').read_bytes()) for run in ('by_name', 'local'))
    assert len(by_name) == len(local) == len(site['images'])
    for named, own in zip(by_name, local):
        assert len(named['pred_instances']['scores']) > 0
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(named['pred_instances'][key], own['pred_instances'][key])


def test_init_model_by_name_loads_the_released_segmentor_with_its_palette(site, released):
    from convnext_dense.apis import init_model
    model = init_model(SEG_NAME)
    assert model.dataset_meta == dict(classes=SEG_CLASSES, palette=[tuple(color) for color in SEG_PALETTE])
    expected, loaded = site['segmentor'].state_dict(), model.state_dict()
    assert set(expected) == set(loaded) and all(torch.equal(loaded[key], value) for key, value in expected.items())
    assert (released / SEG_URL_PATH.rsplit('/', 1)[-1]).is_file()
