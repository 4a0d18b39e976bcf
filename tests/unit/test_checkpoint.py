"""Pretrained checkpoints: equivalence with timm and mmpretrain, every public layout, wrappers, the report
and refusals."""
import json
import math
import re
from typing import Dict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import FIXTURES, LogRecords
from mmengine.logging import MMLogger

from convnext_dense import checkpoint as checkpoint_module
from convnext_dense.checkpoint import (convert_fcmae, convert_state_dict, from_ours, load_pretrained, match,
                                      summarize_keys, summarize_mismatches, to_facebook, to_mmpretrain, to_timm)
from convnext_dense.errors import (CheckpointError, CheckpointFormatError, CheckpointMismatchError,
                                   UnknownCheckpointLayoutError)
from convnext_dense.models import ConvNeXt

SMALL_ARCH = dict(depths=(1, 1, 2, 1), channels=(8, 16, 32, 64))
LAYOUTS = json.loads((FIXTURES / 'convnext_checkpoint_layouts.json').read_text())
# What each public layout holds beyond our backbone, reported as ignored.
EXTRA_KEYS = {
    'facebook': {'norm.weight', 'norm.bias', 'head.weight', 'head.bias'},
    'timm': {'head.norm.weight', 'head.norm.bias', 'head.fc.weight', 'head.fc.bias'},
    'mmpretrain': {'backbone.norm3.weight', 'backbone.norm3.bias', 'head.fc.weight', 'head.fc.bias'},
}


def randomize_(model: nn.Module) -> nn.Module:
    """Random, non-trivial values everywhere (layer scale and norms included) so a missed key shows."""
    torch.manual_seed(123)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('gamma') or (param.dim() == 1 and name.endswith('weight')):
                param.uniform_(0.5, 1.5)
            elif param.dim() == 1:
                param.normal_(0, 0.1)
    return model


def normalized_over_channels(x: torch.Tensor) -> torch.Tensor:
    """What our freshly initialised output norms do: LayerNorm over C of an NCHW map, eps 1e-6."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


def ours_from(path, arch, **kwargs) -> ConvNeXt:
    model = ConvNeXt(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('timm_name,arch,use_grn', [('convnext_tiny', 'tiny', False),
                                                    # tiny covers the layout; small only its depth
                                                    pytest.param('convnext_small', 'small', False,
                                                                 marks=pytest.mark.slow),
                                                    ('convnextv2_atto', 'atto', True),
                                                    ('convnextv2_tiny', 'tiny', True)])
def test_matches_timm_stage_outputs(tmp_path, timm_name, arch, use_grn):
    import timm
    reference = randomize_(timm.create_model(timm_name, pretrained=False)).eval()
    path = tmp_path / 'timm.pth'
    torch.save(reference.state_dict(), path)
    ours = ours_from(path, arch, use_grn=use_grn, layer_scale_init_value=0.0 if use_grn else 1e-6)

    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        stage_outputs = reference.forward_intermediates(x, intermediates_only=True)
        outputs = ours(x)
    assert len(outputs) == len(stage_outputs) == 4
    for ours_out, timm_out in zip(outputs, stage_outputs):
        torch.testing.assert_close(ours_out, normalized_over_channels(timm_out), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('timm_name,arch,use_grn', [('convnext_atto', 'atto', False),
                                                    ('convnextv2_atto', 'atto', True)])
def test_training_gradients_match_timm(tmp_path, timm_name, arch, use_grn):
    """The training path (CPU depthwise-gradient kernel, layer scale folded or not, out-of-place residual)
    gives timm's gradients for every parameter."""
    import timm
    reference = randomize_(timm.create_model(timm_name, pretrained=False)).train()
    path = tmp_path / 'timm.pth'
    torch.save(reference.state_dict(), path)
    ours = ours_from(path, arch, use_grn=use_grn, layer_scale_init_value=0.0 if use_grn else 1e-6).train()

    # 64x64: early stages have more pixels than hidden channels (layer scale folded into pwconv2), late ones
    # fewer (layer scale applied to the output); both code paths run.
    x = torch.randn(2, 3, 64, 64)
    weights = [torch.randn(2, c, 64 // 2 ** (i + 2), 64 // 2 ** (i + 2)) for i, c in enumerate(ours.channels)]
    sum((o * w).sum() for o, w in zip(ours(x), weights)).backward()
    timm_outputs = reference.forward_intermediates(x, intermediates_only=True)
    sum((normalized_over_channels(o) * w).sum() for o, w in zip(timm_outputs, weights)).backward()

    timm_grads = {name: p.grad for name, p in reference.named_parameters() if p.grad is not None}
    expected = convert_state_dict(timm_grads).state_dict
    ours_grads = {name: p.grad for name, p in ours.named_parameters() if not re.match(r'norm\d\.', name)}
    assert set(ours_grads) == set(expected)
    for name, grad in ours_grads.items():
        # Float32 sums over the whole network in another order: tolerance relative to the tensor's scale.
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(grad, expected[name], atol=1e-4 * scale, rtol=1e-4,
                                   msg=lambda m: f'{name}: {m}')


def test_matches_mmpretrain_including_output_norms(tmp_path):
    from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
    reference = MMPretrainConvNeXt(arch='tiny', out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
    randomize_(reference).eval()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in reference.state_dict().items()},
                'meta': {'epoch': 300}}, path)
    ours = ours_from(path, 'tiny')
    torch.testing.assert_close(ours.norm2.weight, reference.norm2.weight, atol=0, rtol=0)

    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = reference(x)
        outputs = ours(x)
    assert len(outputs) == len(expected) == 4
    for ours_out, reference_out in zip(outputs, expected):
        torch.testing.assert_close(ours_out, reference_out, atol=1e-5, rtol=1e-5)


def fixture_state_dict(layout_name: str) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) for key, shape in LAYOUTS[layout_name].items()}


def wrap(layout: str, state_dict: Dict[str, torch.Tensor]) -> dict:
    return {'facebook': {'model': state_dict}, 'timm': state_dict,
            'mmpretrain': {'state_dict': state_dict, 'meta': {}}}[layout]


@pytest.mark.parametrize('layout_name', sorted(LAYOUTS))
def test_every_public_layout_converts_with_no_missing_backbone_key(layout_name):
    layout, arch = layout_name.split('/')
    source = fixture_state_dict(layout_name)
    conversion = convert_state_dict(wrap(layout, source))
    with torch.device('meta'):
        model = ConvNeXt(arch)
    report, _ = match(wrap(layout, source), model)

    assert conversion.layout == report.layout == layout
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert set(report.ignored) == EXTRA_KEYS[layout]
    assert set(report.initialized) == {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    assert len(report.loaded) == len(source) - len(EXTRA_KEYS[layout])
    # Values travel unchanged to the renamed key.
    source_key = {'facebook': 'stages.2.4.pwconv1.weight', 'timm': 'stages.2.blocks.4.mlp.fc1.weight',
                  'mmpretrain': 'backbone.stages.2.4.pointwise_conv1.weight'}[layout]
    assert conversion.state_dict['stages.2.4.pwconv1.weight'] is source[source_key]


@pytest.mark.parametrize('layout', ['facebook', 'timm', 'mmpretrain'])
def test_tiny_layouts_load_end_to_end_through_init_cfg(tmp_path, layout):
    source = fixture_state_dict(f'{layout}/tiny')
    path = tmp_path / f'{layout}.pth'
    torch.save(wrap(layout, source), path)
    model = ours_from(path, 'tiny')
    stem_key = {'facebook': 'downsample_layers.0.0.weight', 'timm': 'stem.0.weight',
                'mmpretrain': 'backbone.downsample_layers.0.0.weight'}[layout]
    gamma_key = {'facebook': 'stages.3.2.gamma', 'timm': 'stages.3.blocks.2.gamma',
                 'mmpretrain': 'backbone.stages.3.2.gamma'}[layout]
    torch.testing.assert_close(model.downsample_layers[0][0].weight, source[stem_key], atol=0, rtol=0)
    torch.testing.assert_close(model.stages[3][2].gamma, source[gamma_key], atol=0, rtol=0)
    torch.testing.assert_close(model.norm1.weight, torch.ones(192))


@pytest.fixture
def small_state_dict() -> Dict[str, torch.Tensor]:
    return randomize_(ConvNeXt(SMALL_ARCH)).state_dict()


@pytest.mark.parametrize('wrapper', [
    lambda sd: sd,
    lambda sd: {'state_dict': {'module.' + k: v for k, v in sd.items()}},
    lambda sd: {'model': {'_orig_mod.' + k: v for k, v in sd.items()}},
    lambda sd: {'state_dict_ema': sd},
    lambda sd: {'model_ema': {'module._orig_mod.' + k: v for k, v in sd.items()}, 'epoch': 3},
    lambda sd: {'state_dict': {**{'backbone.' + k: v for k, v in sd.items()}, 'neck.conv.weight': torch.ones(1)}},
    lambda sd: {'state_dict': {'backbone._orig_mod.' + k: v for k, v in sd.items()}},
], ids=['bare', 'ddp', 'compiled', 'timm-ema', 'facebook-ema', 'mmdet-model', 'compiled-backbone'])
def test_wrappers_and_prefixes_are_removed(small_state_dict, wrapper):
    conversion = convert_state_dict(wrapper(small_state_dict))
    assert conversion.layout == 'convnext_dense'
    assert conversion.state_dict.keys() == small_state_dict.keys()
    assert conversion.leftover == []
    for key, value in small_state_dict.items():
        assert conversion.state_dict[key] is value


def test_main_weights_are_preferred_over_ema_unless_asked(small_state_dict):
    ema = {k: v + 1 for k, v in small_state_dict.items()}
    checkpoint = {'model': small_state_dict, 'model_ema': ema}
    assert convert_state_dict(checkpoint).state_dict['norm0.bias'] is small_state_dict['norm0.bias']
    assert convert_state_dict(checkpoint, ema=True).state_dict['norm0.bias'] is ema['norm0.bias']


def test_init_cfg_prefix_selects_and_strips(tmp_path, small_state_dict):
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': {**{'teacher.backbone.' + k: v for k, v in small_state_dict.items()},
                               'backbone.norm0.weight': torch.zeros(8)}}, path)
    model = ConvNeXt(SMALL_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                               prefix='teacher.backbone'))
    model.init_weights()
    torch.testing.assert_close(model.norm0.weight, small_state_dict['norm0.weight'], atol=0, rtol=0)
    with pytest.raises(KeyError, match="'student.'"):
        load_pretrained(ConvNeXt(SMALL_ARCH), str(path), prefix='student')


@pytest.mark.parametrize('prefixes', [(None, 'backbone.'), (None, 'backbone'), ('', None)])
def test_a_classifier_loads_the_same_norms_with_and_without_prefix(tmp_path, prefixes):
    """One rule whatever the prefix: an mmpretrain classifier's norm3 (its post-pooling final norm) is
    ignored, and the report says why."""
    source = fixture_state_dict('mmpretrain/tiny')
    path = tmp_path / 'mmpretrain_classifier.pth'
    root = '' if prefixes == ('', None) else 'backbone.'
    torch.save({'state_dict': {root + k[len('backbone.'):] if k.startswith('backbone.') else k: v
                               for k, v in source.items()}, 'meta': {}}, path)
    models, reports = [], []
    for prefix in prefixes:
        model = ConvNeXt('tiny')
        reports.append(load_pretrained(model, str(path), prefix=prefix))
        models.append(model)
    for name in ('norm0', 'norm1', 'norm2', 'norm3'):
        for param in ('weight', 'bias'):
            first, second = (getattr(getattr(m, name), param) for m in models)
            torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert torch.equal(models[0].norm3.weight, torch.ones(768))  # left at its init, not the classifier's
    for report in reports:
        assert 'norm3.weight' in report.initialized and report.ignored[-2:] == [f'{root}norm3.weight',
                                                                                  f'{root}norm3.bias']
        assert 'note: norm3 of an mmpretrain classifier' in report.summary()
        assert 'ignored with or without init_cfg prefix' in report.summary()


def test_v2_grn_keeps_timm_and_mmpretrain_vectors_and_flattens_the_official_shape():
    source = {'stages.0.blocks.0.mlp.grn.weight': torch.arange(32.0), 'stem.0.weight': torch.ones(8, 3, 4, 4),
              'stages.0.blocks.0.mlp.fc1.weight': torch.ones(32, 8, 1, 1)}
    converted = convert_state_dict(source).state_dict
    assert converted['stages.0.0.grn.gamma'].shape == (32,)
    assert converted['stages.0.0.grn.gamma'].tolist() == list(range(32))
    assert converted['stages.0.0.pwconv1.weight'].shape == (32, 8)
    mmpretrain = convert_state_dict({'state_dict': {'backbone.stages.1.0.grn.beta': torch.ones(64),
                                                    'backbone.stages.1.0.depthwise_conv.bias': torch.ones(16)}})
    assert mmpretrain.state_dict['stages.1.0.grn.beta'].shape == (64,)
    official = convert_state_dict({'model': {'downsample_layers.0.0.weight': torch.ones(8, 3, 4, 4),
                                             'stages.0.0.grn.gamma': torch.arange(32.0).reshape(1, 1, 1, 32),
                                             'head.weight': torch.ones(2, 8)}})
    assert official.state_dict['stages.0.0.grn.gamma'].tolist() == list(range(32))
    assert official.reshaped == ['stages.0.0.grn.gamma']



def test_load_logs_one_report_naming_ignored_and_initialized_keys(tmp_path):
    source = fixture_state_dict('timm/tiny')
    path = tmp_path / 'timm_tiny.pth'
    torch.save(source, path)
    logger = MMLogger.get_current_instance()
    handler = LogRecords()
    logger.addHandler(handler)
    try:
        report = load_pretrained(ConvNeXt('tiny', out_indices=(2, 3)), str(path))
    finally:
        logger.removeHandler(handler)
    assert len(handler.messages) == 1
    message = handler.messages[0]
    assert 'layout: timm' in message and f'loaded {len(source) - 4} tensors' in message
    assert 'ignored (classifier head / final norm / not backbone): head.norm.{weight,bias}, ' \
           'head.fc.{weight,bias}' in message
    assert 'initialized (output norms not in the checkpoint): norm2.{weight,bias}, norm3.{weight,bias}' in message
    assert 'missing: none' in message and 'unexpected: none' in message and 'shape mismatched: none' in message
    assert report.initialized == ['norm2.weight', 'norm2.bias', 'norm3.weight', 'norm3.bias']


def test_another_arch_is_refused_naming_mismatches_and_loads_nothing(tmp_path):
    path = tmp_path / 'base.pth'
    torch.save({'model': {k: torch.zeros(s) for k, s in LAYOUTS['facebook/base'].items()}}, path)
    model = ConvNeXt('tiny')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(model, str(path))
    message = str(error.value)
    assert message.startswith(f"checkpoint {path} (init_cfg) does not fit ConvNeXt(arch='tiny'): ")
    assert "seems to be arch 'base'" in message
    assert 'downsample_layers.0.0.weight checkpoint [128, 3, 4, 4] vs model [96, 3, 4, 4]' in message
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_v1_checkpoint_into_v2_model_is_refused(tmp_path, small_state_dict):
    path = tmp_path / 'v1.pth'
    torch.save(small_state_dict, path)
    with pytest.raises(CheckpointMismatchError, match=r'\(first: stages\.0\.0\.grn\.\w+ missing from the checkpoint'):
        load_pretrained(ConvNeXt(SMALL_ARCH, use_grn=True), str(path))
    with pytest.raises(CheckpointMismatchError,
                       match=r'\d+ backbone keys the model lacks \(first: stages\.0\.0\.gamma not in the model'):
        load_pretrained(ConvNeXt(SMALL_ARCH, layer_scale_init_value=0), str(path))


def test_unused_output_norms_are_ignored_and_unknown_keys_unexpected(tmp_path, small_state_dict):
    path = tmp_path / 'ours.pth'
    torch.save({**small_state_dict, 'pos_embed': torch.ones(1)}, path)
    report = load_pretrained(ConvNeXt(SMALL_ARCH, out_indices=(3,)), str(path))
    assert report.ignored == ['norm0.weight', 'norm0.bias', 'norm1.weight', 'norm1.bias', 'norm2.weight',
                              'norm2.bias']
    assert report.unexpected == ['pos_embed']
    assert report.missing == [] and report.initialized == []


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / 'nope.pth'
    model = ConvNeXt(SMALL_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(missing)))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        model.init_weights()


def test_pickled_code_is_refused(tmp_path, small_state_dict):
    path = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': small_state_dict, 'hook': LogRecords}, path)
    with pytest.raises(RuntimeError, match='weights_only'):
        load_pretrained(ConvNeXt(SMALL_ARCH), str(path))



REVERSE = {'facebook': (to_facebook, ''), 'timm': (to_timm, ''), 'mmpretrain': (to_mmpretrain, 'backbone.')}


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
@pytest.mark.parametrize('layout', list(REVERSE))
def test_our_keys_convert_back_to_each_public_layout(arch, layout):
    with torch.device('meta'):
        state_dict = ConvNeXt(arch, out_indices=(0, 1, 2, 3)).state_dict()
    convert, prefix = REVERSE[layout]
    got = {prefix + k: tuple(v.shape) for k, v in convert(state_dict).items() if not re.match(r'norm\d', k)}
    want = {k: tuple(v) for k, v in LAYOUTS[f'{layout}/{arch}'].items() if k not in EXTRA_KEYS[layout]}
    assert got == want


@pytest.mark.parametrize('layout, use_grn', [('facebook', False), ('timm', False), ('timm', True),
                                             ('mmpretrain', False), ('mmpretrain', True)])
def test_reverse_then_forward_conversion_is_the_identity(layout, use_grn):
    state_dict = randomize_(ConvNeXt(SMALL_ARCH, use_grn=use_grn)).state_dict()
    convert, prefix = REVERSE[layout]
    back = convert_state_dict({prefix + k: v for k, v in convert(state_dict).items()}).state_dict
    # Only mmpretrain has output norms per stage, as ours.
    expected = {k: v for k, v in state_dict.items() if layout == 'mmpretrain' or not re.match(r'norm\d', k)}
    assert back.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(back[key], value), key


def to_timm_names(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in to_timm(state_dict).items() if not k.startswith('norm')}


def test_pretrained_inside_an_init_cfg_list_still_converts(tmp_path, small_state_dict):
    path = tmp_path / 'timm_small.pth'
    torch.save(to_timm_names(small_state_dict), path)
    model = ConvNeXt(SMALL_ARCH, init_cfg=[dict(type='Constant', layer='Conv2d', val=3.0),
                                           dict(type='Pretrained', checkpoint=str(path))])
    model.init_weights()
    for key, value in model.state_dict().items():
        if not key.startswith('norm'):
            torch.testing.assert_close(value, small_state_dict[key], atol=0, rtol=0, msg=key)


def test_report_key_summary_groups_modules_and_folds_large_subtrees():
    assert summarize_keys([]) == 'none'
    assert summarize_keys(['head.fc.weight', 'head.fc.bias', 'pos_embed']) == 'head.fc.{weight,bias}, pos_embed'
    neck = [f'neck.lateral_convs.{i}.conv.weight' for i in range(10)]
    assert summarize_keys(neck + ['pos_embed']) == 'neck.* (10), pos_embed'


def test_report_mismatch_summary_names_the_first_five_and_counts_the_rest():
    assert summarize_mismatches([]) == 'none'
    assert summarize_mismatches([('stem.weight', (128, 3), (96, 3))]) == 'stem.weight [128, 3] vs model [96, 3]'
    many = [(f'stages.{i}.gamma', (8,), (4,)) for i in range(7)]
    summary = summarize_mismatches(many)
    assert summary.startswith('stages.0.gamma [8] vs model [4], ') and 'stages.4.gamma' in summary
    assert 'stages.5.gamma' not in summary and summary.endswith(' ... (7 in all)')


# ConvNeXt V2: every official file, built from tests/fixtures/convnextv2_checkpoint_layouts.json (written by
# tests/fixtures/make_convnextv2_layouts.py from the official model code).
V2_LAYOUTS = json.loads((FIXTURES / 'convnextv2_checkpoint_layouts.json').read_text())
FCMAE_PRETRAINING_ONLY = re.compile(r'^(decoder\.|proj\.|pred\.|mask_token$)')


def official_remap_checkpoint_keys(checkpoint: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The reference: what the official fine-tuning does to an FCMAE checkpoint (main_finetune.py drops every
    key containing decoder / mask_token / proj / pred, then utils.remap_checkpoint_keys renames), restated
    operation for operation."""
    remapped = {}
    for key, value in checkpoint.items():
        if any(word in key for word in ('decoder', 'mask_token', 'proj', 'pred')):
            continue
        if key.startswith('encoder'):
            key = '.'.join(key.split('.')[1:])
        if key.endswith('kernel'):
            key = '.'.join(key.split('.')[:-1]) + '.weight'
            if value.dim() == 3:
                volume, c_in, c_out = value.shape
                size = int(math.sqrt(volume))
                value = value.permute(2, 1, 0).reshape(c_out, c_in, size, size).transpose(3, 2)
            else:
                volume, channels = value.shape
                size = int(math.sqrt(volume))
                value = value.permute(1, 0).reshape(channels, 1, size, size).transpose(3, 2)
        elif 'ln' in key or 'linear' in key:
            parts = key.split('.')
            parts.pop(-2)
            key = '.'.join(parts)
        remapped[key] = value
    for key, value in remapped.items():
        if key.endswith('bias') and value.dim() != 1:
            remapped[key] = value.reshape(-1)
        elif 'grn' in key:
            remapped[key] = value.unsqueeze(0).unsqueeze(1)
    return remapped


def v2_model(arch: str, **kwargs) -> ConvNeXt:
    return ConvNeXt(arch, use_grn=True, layer_scale_init_value=0.0, **kwargs)


def v2_fixture(layout_name: str) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {key: torch.randn(shape, generator=generator) for key, shape in V2_LAYOUTS[layout_name].items()}


def test_v2_fixture_layouts_describe_the_official_models():
    """Sanity of the fixture itself: the dense official model is ours by name and shape (bar GRN's stored
    shapes and the classifier), and the sparse encoder has one tensor per dense one."""
    for arch in ('atto', 'tiny'):
        with torch.device('meta'):
            ours = {k: list(v.shape) for k, v in v2_model(arch).state_dict().items() if not k.startswith('norm')}
        facebook = V2_LAYOUTS[f'facebook/{arch}']
        # The official code stores GRN (1, 1, 1, C), ours (C,).
        assert {k: [v[-1]] if '.grn.' in k else v for k, v in facebook.items()
                if not k.startswith(('head.', 'norm.'))} == ours
        encoder = [k for k in V2_LAYOUTS[f'fcmae/{arch}'] if k.startswith('encoder.')]
        assert len(encoder) == len(ours)
        assert V2_LAYOUTS[f'fcmae/{arch}']['encoder.stages.1.0.dwconv.kernel'] == [49, ours['stages.1.0.dwconv.bias'][0]]


@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_fcmae_pretraining_checkpoint_is_remapped_as_the_official_fine_tuning_does(tmp_path, arch):
    source = v2_fixture(f'fcmae/{arch}')
    # The official code's GRN is (1, 1, 1, C); ours is the same values as (C,).
    expected = {k: v.flatten() if '.grn.' in k else v for k, v in official_remap_checkpoint_keys(source).items()}
    path = tmp_path / 'checkpoint-799.pth'
    torch.save({'model': source, 'epoch': 799}, path)
    model = v2_model(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = load_pretrained(v2_model(arch), str(path))
    state = model.state_dict()
    assert set(expected) == {k for k in state if not k.startswith('norm')}
    for key, value in expected.items():
        assert state[key].shape == value.shape, key
        assert torch.equal(state[key], value), key
    assert report.layout == 'fcmae'
    assert set(report.ignored) == {k for k in source if FCMAE_PRETRAINING_ONLY.match(k)}
    assert 'decoder.0.grn.gamma' in report.ignored and 'mask_token' in report.ignored
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []


def test_fcmae_kernels_become_convolutions_of_the_same_values():
    """The depthwise and downsampling kernels, checked element by element against the official formula's
    reading: offset index = x * k + y (width outermost)."""
    depthwise = torch.randn(49, 5)
    strided = torch.randn(4, 3, 6)
    converted = convert_fcmae({'stages.0.0.dwconv.kernel': depthwise,
                               'downsample_layers.1.1.kernel': strided}).state_dict
    dw, down = converted['stages.0.0.dwconv.weight'], converted['downsample_layers.1.1.weight']
    assert dw.shape == (5, 1, 7, 7) and down.shape == (6, 3, 2, 2)
    for y in range(7):
        for x in range(7):
            assert torch.equal(dw[:, 0, y, x], depthwise[x * 7 + y])
    for y in range(2):
        for x in range(2):
            assert torch.equal(down[:, :, y, x], strided[x * 2 + y].T)
    with pytest.raises(ValueError, match=r'\[10, 4\]'):
        convert_fcmae({'stages.0.0.dwconv.kernel': torch.zeros(10, 4)})


@pytest.mark.parametrize('grn_shape', ['stored', 'vector'])
@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_released_fcmae_files_with_dense_names_load(tmp_path, arch, grn_shape):
    source = v2_fixture(f'fcmae_dense/{arch}')
    if grn_shape == 'vector':
        source = {k: v.flatten() if '.grn.' in k else v for k, v in source.items()}
    path = tmp_path / f'convnextv2_{arch}_1k_224_fcmae.pt'
    torch.save({'model': source}, path)
    report = load_pretrained(v2_model(arch), str(path))
    # GRN as vectors is our own shape: such a file reads as ours, to the same tensors.
    assert report.layout == ('fcmae' if grn_shape == 'stored' else 'convnext_dense')
    assert report.missing == [] and report.ignored == []
    model = v2_model(arch)
    load_pretrained(model, str(path))
    torch.testing.assert_close(model.stages[2][1].grn.beta.flatten(), source['stages.2.1.grn.beta'].flatten(),
                               atol=0, rtol=0)
    torch.testing.assert_close(model.stages[0][0].dwconv.weight, source['stages.0.0.dwconv.weight'], atol=0, rtol=0)


V2_EXTRA_KEYS = {
    'facebook': {'norm.weight', 'norm.bias', 'head.weight', 'head.bias'},
    'timm': {'head.norm.weight', 'head.norm.bias', 'head.fc.weight', 'head.fc.bias'},
    'mmpretrain': {'backbone.norm3.weight', 'backbone.norm3.bias', 'head.fc.weight', 'head.fc.bias'},
}
V2_GRN_KEY = {'facebook': 'stages.2.3.grn.gamma', 'timm': 'stages.2.blocks.3.mlp.grn.weight',
              'mmpretrain': 'backbone.stages.2.3.grn.gamma'}


@pytest.mark.parametrize('layout', ['facebook', 'timm', 'mmpretrain'])
@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_v2_fine_tuned_timm_and_mmpretrain_files_load_exactly(tmp_path, arch, layout):
    source = v2_fixture(f'{layout}/{arch}')
    path = tmp_path / f'{layout}.pth'
    torch.save(wrap(layout, source), path)
    model = v2_model(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = load_pretrained(v2_model(arch), str(path))
    assert report.layout == layout and report.missing == [] and report.mismatched == []
    assert set(report.ignored) == V2_EXTRA_KEYS[layout]
    torch.testing.assert_close(model.stages[2][3].grn.gamma.flatten(), source[V2_GRN_KEY[layout]].flatten(),
                               atol=0, rtol=0)


def test_official_training_script_checkpoint_loads_under_weights_only(tmp_path, monkeypatch):
    """main_finetune.py / main_pretrain.py save {'model', 'optimizer', 'epoch', 'scaler', 'args'}, args an
    argparse.Namespace: allowed as plain data, still under weights_only=True."""
    import argparse
    source = v2_fixture('facebook/atto')
    args = argparse.Namespace(model='convnextv2_atto', lr=8e-4, drop_path=0.1, input_size=224, model_ema=True,
                              output_dir='/out', opt_betas=None, update_freq=2)
    path = tmp_path / 'checkpoint-best.pth'
    torch.save({'model': source, 'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4, 'params': [0]}]},
                'epoch': 99, 'scaler': {'scale': 65536.0}, 'args': args,
                'model_ema': {k: v + 1 for k, v in source.items()}}, path)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k.get('weights_only')) or real_load(*a, **k))
    model = v2_model('atto')
    report = load_pretrained(model, str(path))
    assert calls == [True] and report.missing == []
    torch.testing.assert_close(model.stages[3][1].pwconv2.weight, source['stages.3.1.pwconv2.weight'],
                               atol=0, rtol=0)
    load_pretrained(model, str(path), ema=True)
    torch.testing.assert_close(model.stages[3][1].pwconv2.weight, source['stages.3.1.pwconv2.weight'] + 1,
                               atol=0, rtol=0)


class _NotPlainData:
    pass


def test_weights_only_refusal_names_the_type_and_what_to_do(tmp_path):
    path = tmp_path / 'with_object.pth'
    torch.save({'model': v2_fixture('facebook/atto'), 'extra': _NotPlainData()}, path)
    with pytest.raises(CheckpointError) as error:
        load_pretrained(v2_model('atto'), str(path))
    message = str(error.value)
    assert f'{_NotPlainData.__module__}._NotPlainData' in message and str(path) in message
    assert "torch.save(torch.load(path, weights_only=False)['model'], 'weights.pth')" in message
    assert 'add_safe_globals' not in message and '\n' not in message


def test_a_new_layout_is_one_entry_of_the_table(monkeypatch, small_state_dict):
    """Detection, renaming (both ways) and the unknown-layout message all read the one table."""
    def toy_from_ours(state_dict):
        return {'trunk.' + k: v for k, v in state_dict.items()}

    toy = checkpoint_module.Layout('toy', 'toy names', "'trunk.stages.0.0.dwconv.weight'",
                                   detect=lambda sd: any(k.startswith('trunk.') for k in sd),
                                   key_to_ours=lambda key: key[len('trunk.'):], from_ours=toy_from_ours)
    monkeypatch.setitem(checkpoint_module.LAYOUTS, 'toy', toy)
    conversion = convert_state_dict(from_ours(small_state_dict, 'toy'))
    assert conversion.layout == 'toy' and conversion.leftover == []
    assert all(conversion.state_dict[k] is v for k, v in small_state_dict.items())
    with pytest.raises(UnknownCheckpointLayoutError, match=r"toy \('trunk\.stages"):
        convert_state_dict({'conv1.weight': torch.ones(1)})
    with pytest.raises(CheckpointFormatError, match="cannot write layout 'fcmae'"):
        from_ours(small_state_dict, 'fcmae')


def test_deeper_checkpoint_is_refused_naming_the_blocks_the_model_lacks(tmp_path, small_state_dict):
    path = tmp_path / 'deeper.pth'
    torch.save(small_state_dict, path)  # depths (1, 1, 2, 1): one block more in stage 2
    shallow = ConvNeXt(dict(depths=(1, 1, 1, 1), channels=SMALL_ARCH['channels']))
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(shallow, str(path))
    message = str(error.value)
    assert '0 shape mismatches, 0 missing of ' in message and ', 9 backbone keys the model lacks' in message
    assert 'stages.2.1.gamma not in the model' in message
    assert 'seems to be arch dict(depths=(1, 1, 2, 1), channels=(8, 16, 32, 64))' in message


def test_unrecognised_file_names_its_first_keys_and_the_known_layouts(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.ones(1), 'layer1.0.conv1.weight': torch.ones(1)}}, path)
    with pytest.raises(UnknownCheckpointLayoutError) as error:
        load_pretrained(v2_model('atto'), str(path))
    message = str(error.value)
    assert "first keys are ['conv1.weight', 'layer1.0.conv1.weight']" in message
    for layout in checkpoint_module.LAYOUTS:
        assert f'{layout} (' in message
    assert 'dict(depths=()' not in message


def test_fcmae_encoder_selected_by_prefix_loads_too(tmp_path):
    """init_cfg prefix='encoder' on an FCMAE file: sparse names under our prefixes, which read as our layout
    with no blocks ('seems to be arch dict(depths=(), ...)') unless the kernels are recognised."""
    source = v2_fixture('fcmae/atto')
    path = tmp_path / 'fcmae.pth'
    torch.save({'model': source}, path)
    model = v2_model('atto')
    report = load_pretrained(model, str(path), prefix='encoder')
    assert report.layout == 'fcmae' and report.missing == [] and report.unexpected == []
    expected = official_remap_checkpoint_keys(source)
    assert torch.equal(model.stages[1][0].dwconv.weight, expected['stages.1.0.dwconv.weight'])
    assert ('encoder.stages.1.0.dwconv.kernel', 'stages.1.0.dwconv.weight') in report_renames(source, 'encoder')


def report_renames(source: Dict[str, torch.Tensor], prefix: str):
    return convert_state_dict({'model': source}, prefix=prefix).renamed
