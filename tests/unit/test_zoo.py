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
}
SEG = {
    'upernet_convnext_t_512_160k': (60e6, 939e9, 46.0, 46.7),
    'upernet_convnext_s_512_160k': (82e6, 1027e9, 48.7, 49.6),
    'upernet_convnext_b_512_160k': (122e6, 1170e9, 49.1, 49.9),
    'upernet_convnext_b_in22k_640_160k': (122e6, 1828e9, 52.6, 53.1),
    'upernet_convnext_l_in22k_640_160k': (235e6, 2458e9, 53.2, 53.7),
    'upernet_convnext_xl_in22k_640_160k': (391e6, 3335e9, 53.6, 54.0),
}


def test_detection_metafile_holds_the_paper_table():
    got = {stem: (r['params'], r['flops'], r['box AP'], r['mask AP']) for stem, r in zoo.models('det').items()}
    assert got == DET
    assert zoo.paper_complexity('det')['cascade_convnext_t_3x'] == (86e6, 741e9)


def test_segmentation_metafile_holds_the_paper_table():
    got = {stem: (r['params'], r['flops'], r['mIoU'], r['mIoU (ms+flip)']) for stem, r in zoo.models('seg').items()}
    assert got == SEG


def test_pretrained_weights_are_the_official_non_ema_files():
    for task in zoo.TASKS:
        for stem, record in zoo.models(task).items():
            parts = stem.split('_')
            size = parts[parts.index('convnext') + 1]
            data = '22k' if 'in22k' in stem else '1k'
            name = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'xl': 'xlarge'}[size]
            assert record['pretrained'] == f'https://dl.fbaipublicfiles.com/convnext/convnext_{name}_{data}_224.pth'


def test_lookup_and_refusals(tmp_path):
    assert zoo.lookup('cascade_convnext_s_3x')['box AP'] == 51.9
    assert zoo.lookup('mask_rcnn_convnext_shapes') is None
    zoo.models('det')['cascade_convnext_s_3x']['box AP'] = 0.0  # callers get copies
    assert zoo.lookup('cascade_convnext_s_3x')['box AP'] == 51.9
    with pytest.raises(ConfigError, match='unknown task'):
        zoo.models('cls')
    with pytest.raises(ConfigError, match='metafile.yml'):
        zoo.models('det', configs_dir=tmp_path)
