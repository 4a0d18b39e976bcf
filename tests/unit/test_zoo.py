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
