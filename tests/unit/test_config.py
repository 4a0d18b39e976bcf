"""Config arguments take a path or a shipped config's name; bad ones fail in one line naming file and fix;
the task of a config; the SyncBN edit of single-process tools."""
from pathlib import Path

import pytest
from mmengine.config import Config

from convnext_dense.config import (config_names, config_path, config_root, find_syntax_error, load_config,
                                   syncbn_to_bn, task_of)
from convnext_dense.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
MASK_RCNN_T = 'det/mask_rcnn_convnext_t_3x'


def test_root_holds_the_configs():
    assert (config_root() / '_base_').is_dir()
    assert MASK_RCNN_T in config_names() and 'seg/upernet_convnext_t_512_160k' in config_names()
    assert not [name for name in config_names() if '_base_' in name]


@pytest.mark.parametrize('spelling', [MASK_RCNN_T, MASK_RCNN_T + '.py', f'configs/{MASK_RCNN_T}.py'])
def test_name_spellings_resolve_to_the_file(spelling):
    assert Path(config_path(spelling)) == config_root() / f'{MASK_RCNN_T}.py'


def test_existing_path_is_taken_as_it_is(tmp_path):
    own = tmp_path / 'mine.py'
    own.write_text('x = 1\n')
    assert config_path(own) == str(own)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ConfigError) as error:
        config_path('det/mask_rcnn_convnext_t_3')
    message = str(error.value)
    assert message.startswith('config det/mask_rcnn_convnext_t_3 not found: no such file and no such config name')
    assert 'close matches: det/mask_rcnn_convnext_t_3x' in message and '\n' not in message


def test_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(ConfigError, match=f'config {tmp_path} is a folder; pass a config file'):
        config_path(tmp_path)


def test_unsupported_kind_is_one_line(tmp_path):
    notes = tmp_path / 'notes.txt'
    notes.write_text('model = 1\n')
    with pytest.raises(ConfigError, match=r'is a \.txt file; configs are Python \(\.py\), JSON or YAML files'):
        load_config(notes)


def test_syntax_error_names_file_and_line(tmp_path):
    broken = tmp_path / 'broken.py'
    broken.write_text('a = 1\nb = dict(\nc = = 3\n')
    with pytest.raises(ConfigError) as error:
        load_config(broken)
    assert str(error.value).startswith(f'config {broken} has a Python syntax error in {broken} line ')
    assert find_syntax_error(str(broken))[:2] in ((str(broken), 2), (str(broken), 3))


def test_syntax_error_in_a_base_names_the_base(tmp_path):
    base = tmp_path / 'base.py'
    base.write_text('x = 1\ny = [\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['base.py']\nz = 2\n")
    with pytest.raises(ConfigError, match=f'has a Python syntax error in {base} line 2'):
        load_config(child)


def test_own_config_inherits_a_shipped_one_by_its_path(tmp_path):
    """What users do: ``_base_`` set to the path ``convnext-dense config-path NAME`` prints."""
    own = tmp_path / 'my_mask_rcnn.py'
    own.write_text(f'_base_ = [{config_path(MASK_RCNN_T)!r}]\n'
                   "model = dict(roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))\n")
    cfg = load_config(own)
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.model.backbone.type == 'convnext_dense.ConvNeXt'  # from our config and its own _base_ files
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == load_config(MASK_RCNN_T).optim_wrapper.paramwise_cfg.decay_rate


def test_syncbn_to_bn_replaces_every_sync_norm_and_leaves_the_input_alone():
    config = dict(backbone=dict(type='convnext_dense.ConvNeXt', norm_cfg=dict(type='MMSyncBN')),
                  roi_head=dict(bbox_head=[dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                                           dict(norm_cfg=dict(type='GN', num_groups=8))]),
                  pool_scales=(1, 2, 3, 6))

    converted = syncbn_to_bn(config)

    assert converted['backbone'] == dict(type='convnext_dense.ConvNeXt', norm_cfg=dict(type='BN'))
    assert converted['roi_head']['bbox_head'] == [dict(norm_cfg=dict(type='BN', requires_grad=True)),
                                                  dict(norm_cfg=dict(type='GN', num_groups=8))]
    assert converted['pool_scales'] == (1, 2, 3, 6)
    assert config['roi_head']['bbox_head'][0]['norm_cfg']['type'] == 'SyncBN'  # a copy, not an edit
    assert config['backbone']['norm_cfg']['type'] == 'MMSyncBN'


@pytest.mark.parametrize('scope, task', [('mmdet', 'det'), ('mmseg', 'seg')])
def test_task_of_reads_the_default_scope(scope, task):
    assert task_of(Config(dict(default_scope=scope))) == task


def test_task_of_refuses_another_scope_naming_the_file(tmp_path):
    path = tmp_path / 'cls.py'
    path.write_text("default_scope = 'mmpretrain'\n")
    with pytest.raises(ConfigError) as error:
        task_of(load_config(str(path)))
    assert str(error.value) == (f"{path}: default_scope is 'mmpretrain'; set default_scope='mmdet' (detection) or "
                                f"'mmseg' (segmentation)")
