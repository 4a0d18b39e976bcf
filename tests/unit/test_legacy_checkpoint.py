"""mmcv 1.x whole-model files (the authors' mmdet 2.x / mmseg 0.x releases, OpenMMLab's published files):
they load under weights_only=True with their meta and optimizer state, a crafted one is still refused, their
keys are mmdet 3.x's / mmseg 1.x's as mmdet 2.28.2 / mmseg 0.30.0 themselves name them, and their classes and
palette become the dataset_meta."""
import io
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import FIXTURES, RunsCodeWhenUnpickled
from fixtures import mmcv1_checkpoints as fixtures

from convnext_dense.checkpoint import legacy
from convnext_dense.errors import CheckpointError
from convnext_dense.io import safe_torch_load

LEGACY_NAMES = json.loads((FIXTURES / 'legacy_key_names.json').read_text())


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    return fixtures.write_all(tmp_path_factory.mktemp('mmcv1'))


@pytest.fixture(scope='module')
def loaded(written):
    """Each file as ``io.safe_torch_load`` (weights_only=True) reads it."""
    return {kind: safe_torch_load(str(path)) for kind, (path, _) in written.items()}


@pytest.mark.parametrize('kind', fixtures.KINDS)
def test_an_mmcv1_file_loads_with_meta_and_optimizer_under_weights_only(written, loaded, kind):
    model = written[kind][1]
    checkpoint = loaded[kind]
    assert set(checkpoint) == {'meta', 'state_dict', 'optimizer'}
    meta = checkpoint['meta']
    assert meta['mmcv_version'].startswith('1.') and meta['hook_msgs']['last_ckpt'].endswith('.pth')
    assert isinstance(meta['CLASSES'], tuple) and isinstance(meta['config'], str)
    assert isinstance(checkpoint['state_dict'], OrderedDict) and checkpoint['state_dict']._metadata
    groups = checkpoint['optimizer']['param_groups']
    assert groups[0]['betas'] == (0.9, 0.999) and groups[0]['param_names'][0].startswith('backbone.')
    assert isinstance(checkpoint['optimizer']['state'][0]['step'], int)
    assert legacy.is_mmcv1_checkpoint(checkpoint)
    assert legacy.written_by(checkpoint).startswith(('mmdet 2.11.0', 'mmseg 0.11.0'))
    ours = model.state_dict()
    assert list(checkpoint['state_dict']) == list(ours)
    assert all(torch.equal(checkpoint['state_dict'][k], ours[k]) for k in ours)


@pytest.mark.parametrize('kind', fixtures.KINDS)
def test_keys_are_what_mmdet2_and_mmseg0_name_them(written, kind):
    """legacy_key_names.json: the keys and shapes mmdet 2.28.2 / mmseg 0.30.0 give these models (with the
    authors' backbone); equal to mmdet 3.x's / mmseg 1.x's, so no rename is needed, and none is applied."""
    path, model = written[kind]
    recorded = LEGACY_NAMES['models'][kind]
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    renamed, changes = legacy.rename_legacy_keys(ours)
    assert changes == [] and renamed == ours
    assert ours == recorded


@pytest.mark.parametrize('kind', fixtures.KINDS)
def test_mmengines_load_checkpoint_fills_every_tensor_of_a_fresh_model(written, kind):
    """The path of ``test CONFIG FILE`` and ``load_from``: nothing missing, nothing unexpected, same values."""
    from mmengine.runner import load_checkpoint
    path, trained = written[kind]
    fresh = fixtures.build_model(kind, seed=1)
    assert not torch.equal(fresh.state_dict()['backbone.norm3.weight'], trained.state_dict()['backbone.norm3.weight'])
    checkpoint = load_checkpoint(fresh, str(path), map_location='cpu', strict=True)
    assert legacy.dataset_meta_of(checkpoint)['classes'] == tuple(fixtures.load_config(kind).classes)
    expected = trained.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in fresh.state_dict().items())


def test_an_openmmlab_published_file_loads(loaded, tmp_path):
    published = fixtures.publish(loaded['upernet'], tmp_path, 'upernet_convnext_atto_20220227_124553')
    with open(published, 'rb') as handle:
        assert handle.read(2) == b'\x80\x02'  # torch's legacy (non-zip) format
    checkpoint = safe_torch_load(str(published))
    assert 'optimizer' not in checkpoint and legacy.dataset_meta_of(checkpoint)['classes'][0] == 'background'


def test_a_crafted_mmcv1_file_is_still_refused(loaded, tmp_path):
    checkpoint = dict(loaded['mask_rcnn'], meta=dict(loaded['mask_rcnn']['meta']))
    marker = tmp_path / 'code_ran'
    checkpoint['meta']['hook_msgs'] = dict(last_ckpt=RunsCodeWhenUnpickled(str(marker)))
    crafted = fixtures.write(checkpoint, tmp_path / 'crafted.pth')
    with pytest.raises(CheckpointError, match='posix.mkdir'):
        safe_torch_load(str(crafted))
    assert not marker.exists()


def test_numpy1_scalars_in_meta_load(tmp_path):
    """A ``best_score`` computed by numpy, pickled under numpy 1.x (``numpy.core.multiarray.scalar``)."""
    buffer = io.BytesIO()
    torch.save({'meta': {'hook_msgs': {'best_score': np.float64(0.4611)}}, 'state_dict': {}}, buffer,
               _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    assert b'numpy._core.multiarray' in data  # written by numpy 2 here; rewritten as numpy 1.x names it
    path = tmp_path / 'numpy1.pth'
    path.write_bytes(data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    assert safe_torch_load(str(path))['meta']['hook_msgs']['best_score'] == pytest.approx(0.4611)


def test_dataset_meta_of_every_kind_of_file(loaded):
    det, seg = loaded['mask_rcnn'], loaded['upernet']
    assert legacy.dataset_meta_of(det) == {'classes': ('circle', 'square', 'triangle', 'star', 'ring')}
    seg_meta = legacy.dataset_meta_of(seg)
    assert seg_meta['classes'][0] == 'background' and seg_meta['palette'][1] == (220, 20, 60)
    assert len(seg_meta['palette']) == len(seg_meta['classes'])
    # mmengine (mmdet 3.x / mmseg 1.x) files; mmdet 3.0's pre-releases wrote upper-case keys.
    assert legacy.dataset_meta_of({'meta': {'dataset_meta': {'classes': ('a',), 'palette': [[1, 2, 3]]}}}) == {
        'classes': ('a',), 'palette': [(1, 2, 3)]}
    assert legacy.dataset_meta_of({'meta': {'dataset_meta': {'CLASSES': ['a', 'b']}}}) == {'classes': ('a', 'b')}
    assert legacy.dataset_meta_of({'meta': {'CLASSES': 'person'}}) == {'classes': ('person',)}
    assert legacy.dataset_meta_of({'state_dict': {}}) == {} and legacy.dataset_meta_of(None) == {}
    assert not legacy.is_mmcv1_checkpoint({'meta': {'mmengine_version': '0.10.7', 'dataset_meta': {}}})
    assert not legacy.is_mmcv1_checkpoint({'state_dict': {}}) and legacy.written_by({'state_dict': {}}) == ''


def test_a_rename_rule_renames_and_reports():
    state = OrderedDict([('roi_head.bbox_head.fc_cls.weight', 1), ('neck.fpn_convs.0.conv.weight', 2)])
    renamed, changes = legacy.rename_legacy_keys(state, ((r'^roi_head\.bbox_head\.', 'roi_head.box.'),))
    assert list(renamed) == ['roi_head.box.fc_cls.weight', 'neck.fpn_convs.0.conv.weight']
    assert changes == [('roi_head.bbox_head.fc_cls.weight', 'roi_head.box.fc_cls.weight')]
    assert legacy.LEGACY_KEY_RENAMES == ()


def test_fixture_file_meta_is_only_plain_data(written, loaded):
    """Nothing but containers, strings, numbers and tensors: what the allow-list is sized to."""
    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool, torch.Tensor))
    for checkpoint in loaded.values():
        assert plain(checkpoint['meta']) and plain(checkpoint['optimizer'])
    with open(written['upernet'][0], 'rb') as handle:
        assert handle.read(4) == b'PK\x03\x04'  # torch >= 1.6's zip format, as the authors' files
