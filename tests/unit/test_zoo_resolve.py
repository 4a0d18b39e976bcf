"""zoo.resolve: a model name becomes its config and released weights (downloaded once, through the mirror), a
config keeps the weights given beside it; the commands' side of it (cli/weights.py) and the published numbers
printed beside the measured ones."""
import hashlib
import io

import pytest
import torch

from convnext_dense import zoo
from convnext_dense.checkpoint import download as dl
from convnext_dense.checkpoint import read_checkpoint, rename_whole_model
from convnext_dense.cli import infer, weights
from convnext_dense.errors import CliError, ConfigError

HOST_URL = 'https://dl.example.org/convnext/coco'
CONFIG = 'det/mask_rcnn_convnext_t_3x'


def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.arange(3.0)}, 'meta': {'CLASSES': ('cat', 'dog')}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A configs folder whose metafile names one model released at HOST_URL, a folder mirror of that host,
    and an empty cache."""
    data = checkpoint_bytes()
    name = f'tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    mirror = tmp_path / 'mirror'
    (mirror / 'convnext' / 'coco').mkdir(parents=True)
    (mirror / 'convnext' / 'coco' / name).write_bytes(data)
    configs = tmp_path / 'configs'
    (configs / 'det').mkdir(parents=True)
    (configs / 'det' / 'tiny.py').write_text("default_scope = 'mmdet'\n")
    (configs / 'det' / 'metafile.yml').write_text(
        'Models:\n'
        '  - {Name: tiny, Config: configs/det/tiny.py, Metadata: {Pretrained Weights: x},\n'
        f'     Weights: [{{URL: "{HOST_URL}/{name}", Released By: ConvNeXt authors, Source: "https://src",\n'
        '                Results: {box AP: 50.4, mask AP: 43.7}}]}\n'
        '  - {Name: untrained, Config: configs/det/tiny.py, Metadata: {Pretrained Weights: x}}\n')
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    return dict(configs=configs, mirror=str(mirror), cache=tmp_path / 'cache', name=name, data=data)


def test_model_names_are_bare_stems():
    assert zoo.is_model_name('cascade_convnext_t_3x') and zoo.is_model_name('unknown_model')
    for text in ('det/cascade_convnext_t_3x', 'configs/det/x.py', 'x.py', 'my_run.pth', '', None):
        assert not zoo.is_model_name(text)


def test_a_config_keeps_the_weights_given_beside_it(site, tmp_path):
    assert zoo.resolve(CONFIG) == zoo.ResolvedModel(config=CONFIG, checkpoint=None)
    local = tmp_path / 'run.pth'
    resolved = zoo.resolve(CONFIG, local)
    assert (resolved.config, resolved.checkpoint, resolved.name, resolved.released) == (CONFIG, str(local), None,
                                                                                        None)
    url = f'{HOST_URL}/{site["name"]}'
    downloaded = zoo.resolve(CONFIG, url, mirror=site['mirror'], progress=False)
    assert downloaded.checkpoint == str(site['cache'] / site['name'])
    assert (site['cache'] / site['name']).read_bytes() == site['data']


def test_a_model_name_gives_its_config_and_released_file_downloaded_once(site, capsys):
    resolved = zoo.resolve('tiny', mirror=site['mirror'], configs_dir=site['configs'])
    assert resolved.name == 'tiny' and resolved.config == str(site['configs'] / 'det' / 'tiny.py')
    assert resolved.checkpoint == str(site['cache'] / site['name'])
    assert resolved.released.metrics == {'box AP': 50.4, 'mask AP': 43.7}
    assert f'downloading {site["name"]}: 100%' in capsys.readouterr().err
    # Cached: no mirror (and no network) needed any more.
    again = zoo.resolve('tiny', configs_dir=site['configs'])
    assert again == resolved and 'downloading' not in capsys.readouterr().err


def test_a_model_name_with_weights_of_its_own(site, tmp_path):
    resolved = zoo.resolve('tiny', tmp_path / 'mine.pth', configs_dir=site['configs'])
    assert (resolved.checkpoint, resolved.released, resolved.name) == (str(tmp_path / 'mine.pth'), None, 'tiny')
    assert zoo.resolve('untrained', tmp_path / 'mine.pth', configs_dir=site['configs']).checkpoint.endswith('mine.pth')


def test_unknown_and_untrained_names_say_what_to_do(site):
    with pytest.raises(ConfigError, match="no model named 'tyni'; close names: tiny"):
        zoo.resolve('tyni', configs_dir=site['configs'])
    with pytest.raises(ConfigError, match='untrained has no released trained weights'):
        zoo.resolve('untrained', configs_dir=site['configs'])


def test_read_checkpoint_downloads_urls_through_the_mirror_into_the_cache(site, monkeypatch):
    monkeypatch.setenv(dl.MIRROR_ENV, site['mirror'])
    loaded = read_checkpoint(f'{HOST_URL}/{site["name"]}')
    assert loaded['meta']['CLASSES'] == ('cat', 'dog') and (site['cache'] / site['name']).is_file()


def test_published_numbers_beside_the_measured_ones(site):
    released = zoo.released_weights('tiny', configs_dir=site['configs'])
    lines = zoo.beside_published({'coco/bbox_mAP': 0.5041, 'coco/bbox_mAP_50': 0.7, 'coco/segm_mAP': 0.4}, released)
    assert lines == ['coco/bbox_mAP 0.504 (published 50.4, ConvNeXt authors)',
                     'coco/segm_mAP 0.400 (published 43.7, ConvNeXt authors)']
    seg = zoo.ReleasedWeights(url='u', released_by='OpenMMLab', source='s', results=(('mIoU', 46.1),))
    assert zoo.beside_published({'aAcc': 80.0, 'mIoU': 45.9}, seg) == ['mIoU 45.900 (published 46.1, OpenMMLab)']


def test_the_commands_need_weights_with_a_config():
    with pytest.raises(CliError, match=f'CHECKPOINT missing: {CONFIG} is a config; give the checkpoint'):
        weights.resolve_model(CONFIG, None, None)


def test_infer_tells_a_checkpoint_from_an_image_after_a_model_name():
    assert infer.parse_args(['mask_rcnn_convnext_t_3x', 'photo.jpg']).checkpoint is None
    args = infer.parse_args(['mask_rcnn_convnext_t_3x', 'mine.pth', 'photo.jpg', '--weights-mirror', '/w'])
    assert (args.checkpoint, args.inputs, args.weights_mirror) == ('mine.pth', ['photo.jpg'], '/w')
    assert infer.parse_args([CONFIG, 'run.pth', 'photo.jpg']).checkpoint == 'run.pth'


def test_whole_model_renames_apply_the_legacy_table():
    state = {'neck.old_name.weight': torch.zeros(1), 'roi_head.fc.weight': torch.ones(1)}
    renamed, renames = rename_whole_model(state, legacy_renames=((r'^neck\.old_name\.', 'neck.new_name.'),))
    assert list(renamed) == ['neck.new_name.weight', 'roi_head.fc.weight'] and renames == []
    assert list(rename_whole_model(state)[0]) == list(state)  # the shipped table is empty


def test_convert_and_export_take_a_model_name(site, monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, 'config_root', lambda: site['configs'])
    cached = str(site['cache'] / site['name'])
    assert weights.weights_of('tiny', site['mirror']) == cached
    assert weights.weights_of(str(tmp_path / 'mine.pth'), None) == str(tmp_path / 'mine.pth')
    resolved = weights.resolve_model('tiny', None, None)
    assert (resolved.config, resolved.checkpoint) == (str(site['configs'] / 'det' / 'tiny.py'), cached)
