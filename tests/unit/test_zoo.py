"""The paper's numbers as the metafiles hold them, read through convnext_dense.zoo."""
import pytest

from convnext_dense import zoo
from convnext_dense.errors import ConfigError

# The paper's tables (COCO 3x and ADE20K 160k): params, FLOPs and results per config stem.
DET = {
    'mask_rcnn_convnext_t_3x': (48e6, 262e9, 46.2, 41.7),
    'cascade_convnext_t_3x': (86e6, 741e9, 50.4, 43.7),
    'cascade_convnext_s_3x': (108e6, 827e9, 51.9, 45.0),
    'cascade_convnext_b_3x': (146e6, 964e9, 52.7, 45.6),
    'cascade_convnext_b_in22k_3x': (146e6, 964e9, 54.0, 46.9),
    'cascade_convnext_l_in22k_3x': (255e6, 1354e9, 54.8, 47.6),
    'cascade_convnext_xl_in22k_3x': (407e6, 1898e9, 55.2, 47.7),
    # ConvNeXt V2: mmdet's projects/ConvNeXt-V2 README reports V2-B; nothing is published for L and H.
    'mask_rcnn_convnextv2_b_fcmae_lsj_3x': (None, None, 52.9, 46.4),
    'mask_rcnn_convnextv2_l_fcmae_lsj_3x': (None, None, None, None),
    'mask_rcnn_convnextv2_h_fcmae_lsj_3x': (None, None, None, None),
    # DINOv3 weights with the paper's recipe: the paper's network, no published result.
    'cascade_convnext_t_dinov3_3x': (86e6, 741e9, None, None),
    'cascade_convnext_b_dinov3_3x': (146e6, 964e9, None, None),
}
SEG = {
    'upernet_convnext_t_512_160k': (60e6, 939e9, 46.0, 46.7),
    'upernet_convnext_s_512_160k': (82e6, 1027e9, 48.7, 49.6),
    'upernet_convnext_b_512_160k': (122e6, 1170e9, 49.1, 49.9),
    'upernet_convnext_b_in22k_640_160k': (122e6, 1828e9, 52.6, 53.1),
    'upernet_convnext_l_in22k_640_160k': (235e6, 2458e9, 53.2, 53.7),
    'upernet_convnext_xl_in22k_640_160k': (391e6, 3335e9, 53.6, 54.0),
    'upernet_convnextv2_b_512_160k': (None, None, None, None),
    'upernet_convnextv2_l_512_160k': (None, None, None, None),
    'upernet_convnextv2_h_512_160k': (None, None, None, None),
    'upernet_convnext_t_dinov3_512_160k': (60e6, 939e9, None, None),
    'upernet_convnext_b_dinov3_512_160k': (122e6, 1170e9, None, None),
}


def test_detection_metafile_holds_the_paper_table():
    got = {stem: (r['params'], r['flops'], r.get('box AP'), r.get('mask AP')) for stem, r in zoo.models('det').items()}
    assert got == DET
    assert zoo.paper_complexity('det')['cascade_convnext_t_3x'] == (86e6, 741e9)
    assert 'mask_rcnn_convnextv2_b_fcmae_lsj_3x' not in zoo.paper_complexity('det')  # none published


def test_segmentation_metafile_holds_the_paper_table():
    got = {stem: (r['params'], r['flops'], r.get('mIoU'), r.get('mIoU (ms+flip)'))
           for stem, r in zoo.models('seg').items()}
    assert got == SEG


def test_pretrained_weights_are_the_official_non_ema_files():
    for task in zoo.TASKS:
        for stem, record in zoo.models(task).items():
            if 'convnextv2' in stem or 'dinov3' in stem:
                continue  # below, and in test_dinov3_configs.py
            parts = stem.split('_')
            size = parts[parts.index('convnext') + 1]
            data = '22k' if 'in22k' in stem else '1k'
            name = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'xl': 'xlarge'}[size]
            assert record['pretrained'] == f'https://dl.fbaipublicfiles.com/convnext/convnext_{name}_{data}_224.pth'


def test_v2_weights_are_the_official_fcmae_and_fine_tuned_files():
    sizes = {'b': 'base', 'l': 'large', 'h': 'huge'}
    for size, name in sizes.items():
        det = zoo.lookup(f'mask_rcnn_convnextv2_{size}_fcmae_lsj_3x')['pretrained']
        seg = zoo.lookup(f'upernet_convnextv2_{size}_512_160k')['pretrained']
        assert det == f'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_{name}_1k_224_fcmae.pt'
        assert seg == f'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_{name}_1k_224_ema.pt'


def test_lookup_and_refusals(tmp_path):
    assert zoo.lookup('cascade_convnext_s_3x')['box AP'] == 51.9
    assert zoo.lookup('mask_rcnn_convnext_shapes') is None
    zoo.models('det')['cascade_convnext_s_3x']['box AP'] = 0.0  # callers get copies
    assert zoo.lookup('cascade_convnext_s_3x')['box AP'] == 51.9
    with pytest.raises(ConfigError, match='unknown task'):
        zoo.models('cls')
    with pytest.raises(ConfigError, match='metafile.yml'):
        zoo.models('det', configs_dir=tmp_path)


# ---------------------------------------------------------------------------------------- released weights
AUTHORS_HOST = 'https://dl.fbaipublicfiles.com/convnext/'
OPENMMLAB_HOST = 'https://download.openmmlab.com/'


def all_weights():
    return [(task, stem, w) for task in zoo.TASKS for stem, r in zoo.models(task).items() for w in r['weights']]


def test_the_authors_13_trained_models_are_each_configs_default():
    authors = [(task, stem, w) for task, stem, w in all_weights() if w.released_by == 'ConvNeXt authors']
    assert sorted(task for task, _, _ in authors) == ['det'] * 7 + ['seg'] * 6
    for task, stem, weights in authors:
        record = zoo.models(task)[stem]
        assert record['weights'][0] == weights  # the default file
        folder = 'coco/' if task == 'det' else 'ade20k/'
        assert weights.url.startswith(AUTHORS_HOST + folder) and weights.url.endswith('.pth')
        paper = {key: record[key] for key in weights.metrics}
        assert weights.metrics == paper, stem  # the paper's table is the authors' README table
        assert weights.written_by.startswith(('mmdet 2.11', 'mmseg 0.11')) and weights.expected_sha256 is None


def test_openmmlab_weights_are_marked_with_their_own_results():
    openmmlab = {stem: w for _, stem, w in all_weights() if w.released_by == 'OpenMMLab'}
    assert sorted(openmmlab) == sorted([
        'mask_rcnn_convnext_t_3x', 'cascade_convnext_t_3x', 'cascade_convnext_s_3x',
        'mask_rcnn_convnextv2_b_fcmae_lsj_3x', 'upernet_convnext_t_512_160k', 'upernet_convnext_s_512_160k',
        'upernet_convnext_b_512_160k', 'upernet_convnext_b_in22k_640_160k', 'upernet_convnext_l_in22k_640_160k',
        'upernet_convnext_xl_in22k_640_160k'])
    assert openmmlab['cascade_convnext_t_3x'].metrics == {'box AP': 50.3, 'mask AP': 43.6}
    assert openmmlab['upernet_convnext_t_512_160k'].metrics == {'mIoU': 46.11, 'mIoU (ms+flip)': 46.62}
    assert openmmlab['mask_rcnn_convnextv2_b_fcmae_lsj_3x'] == zoo.released_weights('mask_rcnn_convnextv2_b_fcmae_lsj_3x')
    for stem, weights in openmmlab.items():
        assert weights.url.startswith(OPENMMLAB_HOST) and weights.upstream_config
        assert weights.source.startswith('https://github.com/open-mmlab/')
        assert len(weights.expected_sha256) == 8, stem  # publish_model's -<sha256[:8]> file names


def test_every_metafile_url_is_well_formed_and_every_weights_url_unique():
    from urllib.parse import urlparse

    from convnext_dense.checkpoint.hub import hub_page
    urls = []
    for task in zoo.TASKS:
        for stem, record in zoo.models(task).items():
            # Pretrained weights may be a Hugging Face Hub name: its repository's page is checked.
            pretrained = hub_page(record['pretrained'])
            for url in [pretrained] + [w.url for w in record['weights']] + [w.source for w in record['weights']]:
                parsed = urlparse(url)
                assert parsed.scheme == 'https' and parsed.netloc and ' ' not in url, (stem, url)
            for weights in record['weights']:
                assert urlparse(weights.url).path.endswith(('.pth', '.pt')), weights.url
                assert set(weights.metrics) <= set(record) | {'box AP', 'mask AP', 'mIoU', 'mIoU (ms+flip)'}
                urls.append(weights.url)
    assert len(urls) == len(set(urls)) == 23


def test_released_weights_by_name_and_publisher():
    default = zoo.released_weights('cascade_convnext_t_3x')
    assert default.url == AUTHORS_HOST + 'coco/cascade_mask_rcnn_convnext_tiny_1k_3x.pth'
    assert zoo.released_weights('det/cascade_convnext_t_3x.py', released_by='openmmlab').url.endswith('-8f07c40b.pth')
    assert zoo.released_weights('configs/seg/upernet_convnext_t_512_160k', 'authors').released_by == 'ConvNeXt authors'
    task, stem, record = zoo.find('upernet_convnext_t_512_160k')
    assert (task, stem) == ('seg', 'upernet_convnext_t_512_160k')
    assert zoo.config_file(record).is_file() and zoo.config_file(record).name == 'upernet_convnext_t_512_160k.py'
    assert zoo.find('seg/cascade_convnext_t_3x') is None and zoo.find('mask_rcnn_convnext_shapes') is None
    with pytest.raises(ConfigError, match="no model named 'cascade_convnext_t3x'; close names: cascade_convnext_t_3x"):
        zoo.released_weights('cascade_convnext_t3x')
    with pytest.raises(ConfigError, match='mask_rcnn_convnextv2_l_fcmae_lsj_3x has no released trained weights'):
        zoo.released_weights('mask_rcnn_convnextv2_l_fcmae_lsj_3x')
    with pytest.raises(ConfigError, match="no weights released by 'openmmlab'; it has: ConvNeXt authors"):
        zoo.released_weights('cascade_convnext_xl_in22k_3x', released_by='openmmlab')


def test_a_malformed_weights_entry_names_the_file_and_model(tmp_path):
    (tmp_path / 'det').mkdir()
    (tmp_path / 'det' / 'metafile.yml').write_text(
        'Models:\n  - Name: m\n    Config: configs/det/m.py\n    Metadata: {Pretrained Weights: x}\n'
        '    Weights:\n      - URL: https://h/m.pth\n        Released By: me\n')
    with pytest.raises(ConfigError, match=r'model m: a Weights entry lacks Source, Results'):
        zoo.models('det', configs_dir=tmp_path)
    (tmp_path / 'det' / 'metafile.yml').write_text(
        'Models:\n  - Name: m\n    Config: configs/det/m.py\n    Metadata: {Pretrained Weights: x}\n'
        '    Weights:\n      - {URL: "https://h/m.pth", Released By: me, Source: "https://h", SHA256: ABCDEF12,'
        ' Results: {box AP: 1}}\n')
    weights = zoo.released_weights('m', configs_dir=tmp_path)
    assert (weights.sha256, weights.expected_sha256, weights.metrics) == ('abcdef12', 'abcdef12', {'box AP': 1.0})
