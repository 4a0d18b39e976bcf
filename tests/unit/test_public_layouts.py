"""torchvision, Hugging Face transformers, open_clip and Meta's DINOv3 / EUPE checkpoints load into our
backbone and give their publishers' stage outputs; our backbone converts back to each of their layouts.

torchvision's model is built here; the transformers, open_clip and DINOv3 files in
tests/fixtures/public_layouts/ were written by those packages' own code (tests/fixtures/make_public_layouts.py),
with their models' stage outputs.
"""
import re
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

from convnext_dense.checkpoint import (LAYOUTS, WRITABLE_LAYOUTS, convert_state_dict, detect_layout, from_ours,
                                       load_pretrained, match, read_weights_file)
from convnext_dense.errors import UnknownCheckpointLayoutError
from convnext_dense.models import ConvNeXt

PUBLIC = FIXTURES / 'public_layouts'
# The fixtures' arch (make_public_layouts.py).
FIXTURE_ARCH = dict(depths=(1, 1, 2, 1), channels=(8, 12, 16, 20))
OUTPUT_NORMS = {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
# The layouts that hold per-stage output norms; the others have no place for ours.
WITH_OUTPUT_NORMS = ('transformers', 'mmpretrain', 'convnext_dense')


def layer_normalized(x: torch.Tensor) -> torch.Tensor:
    """What our output norms at their init compute: LayerNorm over C of an NCHW map, eps 1e-6."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every tensor, so a mis-routed key changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and name.endswith('weight') or 'layer_scale' in name or name.endswith('gamma'):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def ours_from(path: Path, arch=FIXTURE_ARCH, **kwargs) -> ConvNeXt:
    model = ConvNeXt(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def stored_outputs(folder: str) -> Dict[str, torch.Tensor]:
    return read_weights_file(str(PUBLIC / folder / 'stage_outputs.safetensors'))


def assert_outputs_equal(ours: List[torch.Tensor], expected: List[torch.Tensor]) -> None:
    assert len(ours) == len(expected) == 4
    for stage, (got, want) in enumerate(zip(ours, expected)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=lambda m: f'stage {stage}: {m}')


# --------------------------------------------------------------------------------------------- torchvision
def small_torchvision(layer_scale: float = 1e-6) -> torch.nn.Module:
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.convnext import ConvNeXt as TorchvisionConvNeXt
    depths, channels = FIXTURE_ARCH['depths'], FIXTURE_ARCH['channels']
    setting = [CNBlockConfig(channels[i], channels[i + 1] if i < 3 else None, depths[i]) for i in range(4)]
    return TorchvisionConvNeXt(setting, layer_scale=layer_scale, num_classes=5)


def torchvision_stages(model: torch.nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    outputs = []
    for index, module in enumerate(model.features):
        x = module(x)
        if index % 2 == 1:  # features 1, 3, 5, 7 are the stages
            outputs.append(x)
    return outputs


def test_torchvision_file_gives_torchvisions_stage_outputs(tmp_path):
    reference = randomize_(small_torchvision()).eval()
    path = tmp_path / 'convnext_small_torchvision.pth'
    torch.save(reference.state_dict(), path)
    ours = ours_from(path)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = [layer_normalized(o) for o in torchvision_stages(reference, x)]
        assert_outputs_equal(list(ours(x)), expected)
    torch.testing.assert_close(ours.stages[2][1].gamma, reference.features[5][1].layer_scale.flatten(), atol=0, rtol=0)


def test_torchvision_convnext_tiny_converts_completely():
    import torchvision
    with torch.device('meta'):
        source = torchvision.models.convnext_tiny(weights=None).state_dict()
        model = ConvNeXt('tiny')
    conversion = convert_state_dict(source)
    report, _ = match(source, model)
    assert conversion.layout == report.layout == 'torchvision'
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert set(report.ignored) == {'classifier.0.weight', 'classifier.0.bias', 'classifier.2.weight',
                                   'classifier.2.bias'}
    assert set(report.initialized) == OUTPUT_NORMS
    assert ('features.5.8.block.3.weight', 'stages.2.8.pwconv1.weight') in conversion.renamed
    assert ('features.6.1.weight', 'downsample_layers.3.1.weight') in conversion.renamed


def test_our_weights_written_as_torchvision_load_strictly_into_torchvision():
    ours = randomize_(ConvNeXt(FIXTURE_ARCH)).eval()
    written = from_ours(ours.state_dict(), 'torchvision')
    assert not any(key.startswith('norm') for key in written)
    reference = small_torchvision().eval()
    missing, unexpected = reference.load_state_dict(written, strict=False)
    assert set(missing) == {k for k in reference.state_dict() if k.startswith('classifier.')} and unexpected == []
    assert written['features.3.0.layer_scale'].shape == (12, 1, 1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = [getattr(ours, f'norm{i}')(o) for i, o in enumerate(torchvision_stages(reference, x))]
        assert_outputs_equal(list(ours(x)), expected)


# ------------------------------------------------------------------------------------ transformers, open_clip
# folder -> (file, layout, use_grn, keys of the file the load ignores)
FIXTURE_FILES = {
    'transformers_convnext': ('model.safetensors', 'transformers', False, {'layernorm.weight', 'layernorm.bias'}),
    'transformers_convnext_backbone': ('model.safetensors', 'transformers', False, set()),
    'transformers_convnextv2_classifier': ('pytorch_model.bin', 'transformers', True,
                                           {'convnextv2.layernorm.weight', 'convnextv2.layernorm.bias',
                                            'classifier.weight', 'classifier.bias'}),
    'transformers_dinov3': ('model.safetensors', 'transformers_dinov3', False,
                            {'layer_norm.weight', 'layer_norm.bias'}),
    'open_clip': ('open_clip_pytorch_model.bin', 'open_clip', False, None),  # the text tower: checked below
}


@pytest.mark.parametrize('folder', sorted(FIXTURE_FILES))
def test_publisher_file_loads_and_gives_the_publishers_stage_outputs(folder):
    filename, layout, use_grn, ignored = FIXTURE_FILES[folder]
    path = PUBLIC / folder / filename
    kwargs = dict(use_grn=True, layer_scale_init_value=0.0) if use_grn else {}
    report = load_pretrained(ConvNeXt(FIXTURE_ARCH, **kwargs), str(path))
    assert report.layout == layout
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    if ignored is not None:
        assert set(report.ignored) == ignored
    expected = stored_outputs(folder)
    ours = ours_from(path, **kwargs)
    with torch.no_grad():
        outputs = list(ours(expected['input']))
    if 'normed0' in expected:  # the file's own per-stage norms, loaded into ours
        assert report.initialized == []
        assert_outputs_equal(outputs, [expected[f'normed{i}'] for i in range(4)])
    else:
        assert set(report.initialized) == OUTPUT_NORMS
        assert_outputs_equal(outputs, [layer_normalized(expected[f'stage{i}']) for i in range(4)])


def test_open_clip_file_loads_its_image_tower_without_a_prefix():
    source = read_weights_file(str(PUBLIC / 'open_clip' / 'open_clip_pytorch_model.bin'))
    conversion = convert_state_dict(source)
    assert conversion.layout == 'open_clip'
    # The projection, the text tower and timm's final norm (ignored in a timm file too).
    trunk_head = {'visual.trunk.head.norm.weight', 'visual.trunk.head.norm.bias'}
    assert set(conversion.ignored) == {k for k in source if not k.startswith('visual.trunk.')} | trunk_head
    assert {'visual.head.proj.weight', 'text_projection', 'token_embedding.weight'} <= set(conversion.ignored)
    assert conversion.leftover == []
    # What users wrote before: the timm trunk selected by prefix; the same tensors.
    by_prefix = convert_state_dict(source, prefix='visual.trunk.')
    assert by_prefix.layout == 'timm' and by_prefix.state_dict.keys() == conversion.state_dict.keys()


def test_transformers_files_are_not_taken_for_fcmae():
    """``encoder.`` starts FCMAE checkpoints too; transformers' names are told apart by ``.layers.``."""
    keys = ['encoder.stages.0.layers.0.dwconv.weight', 'encoder.stages.1.downsampling_layer.1.weight']
    assert detect_layout(dict.fromkeys(keys)).name == 'transformers'
    fcmae = ['encoder.stages.0.0.dwconv.kernel', 'encoder.downsample_layers.1.1.kernel', 'mask_token']
    assert detect_layout(dict.fromkeys(fcmae)).name == 'fcmae'


def test_backbone_norms_are_our_output_norms_by_stage_name():
    backbone = read_weights_file(str(PUBLIC / 'transformers_convnext_backbone' / 'model.safetensors'))
    conversion = convert_state_dict(backbone)
    for stage in range(1, 5):
        assert conversion.state_dict[f'norm{stage - 1}.bias'] is backbone[f'hidden_states_norms.stage{stage}.bias']
    stem_norm = {'hidden_states_norms.stem.weight': torch.ones(8)}  # out_features 'stem': no output of ours
    assert convert_state_dict({**backbone, **stem_norm}).ignored == ['hidden_states_norms.stem.weight']


# --------------------------------------------------------------------------- DINOv3 and EUPE official files
def eupe_heads(channels: int = 20) -> Dict[str, torch.Tensor]:
    """What EUPE's files hold beyond DINOv3's: distillation projectors and per-stage feature norms. The
    prefixes are those timm's convnext.checkpoint_filter_fn discards for EUPE files; the names after them
    stand for any module there."""
    generator = torch.Generator().manual_seed(9)
    return {'projectors.0.weight': torch.randn(32, channels, generator=generator),
            'projectors.0.bias': torch.randn(32, generator=generator),
            'norms.0.weight': torch.rand(8, generator=generator), 'norms.0.bias': torch.randn(8, generator=generator)}


@pytest.mark.parametrize('extra', [{}, eupe_heads()], ids=['dinov3', 'eupe'])
def test_dinov3_and_eupe_official_files_give_their_stage_outputs(tmp_path, extra):
    """Meta's files: the official names plus the final ``norm`` and its alias ``norms.3`` (EUPE: projectors
    and more feature norms), written by dinov3/models/convnext.py; loaded with the extras reported ignored."""
    source = read_weights_file(str(PUBLIC / 'dinov3_official' / 'dinov3_convnext.pth'))
    path = tmp_path / 'official.pth'
    torch.save({**source, **extra}, path)
    report = load_pretrained(ConvNeXt(FIXTURE_ARCH), str(path))
    assert report.layout == 'facebook' and report.missing == [] and report.mismatched == []
    assert set(report.ignored) == {'norm.weight', 'norm.bias', 'norms.3.weight', 'norms.3.bias'} | set(extra)
    assert report.unexpected == []
    expected = stored_outputs('dinov3_official')
    with torch.no_grad():
        outputs = list(ours_from(path)(expected['input']))
    assert_outputs_equal(outputs, [layer_normalized(expected[f'stage{i}']) for i in range(4)])


# ---------------------------------------------------------------------------------------- our weights, back
# torchvision and DINOv3 publish no ConvNeXt V2.
V2_LAYOUTS = [name for name in WRITABLE_LAYOUTS if name not in ('torchvision', 'transformers_dinov3')]
# The official names without the classifier's head and final norm are ours.
DETECTED_AS = {'facebook': 'convnext_dense'}


@pytest.mark.parametrize('layout,use_grn', [(name, False) for name in WRITABLE_LAYOUTS]
                         + [(name, True) for name in V2_LAYOUTS])
def test_every_writable_layout_converts_back_to_the_same_tensors(layout, use_grn):
    state_dict = randomize_(ConvNeXt(FIXTURE_ARCH, use_grn=use_grn)).state_dict()
    written = from_ours(state_dict, layout)
    prefix = 'backbone.' if layout == 'mmpretrain' else ''
    conversion = convert_state_dict({prefix + k: v for k, v in written.items()})
    assert conversion.layout == DETECTED_AS.get(layout, layout) and conversion.leftover == []
    no_place = set() if layout in WITH_OUTPUT_NORMS else OUTPUT_NORMS
    expected = {k: v for k, v in state_dict.items() if k not in no_place}
    assert conversion.state_dict.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(conversion.state_dict[key], value), key


@pytest.mark.parametrize('folder', ['transformers_convnext_backbone', 'transformers_dinov3', 'open_clip'])
def test_written_layouts_have_the_publishers_names_and_shapes(folder):
    """Ours written as a layout holds exactly the tensors a publisher's file loads into ours, by name and shape."""
    filename, layout, _, _ = FIXTURE_FILES[folder]
    source = read_weights_file(str(PUBLIC / folder / filename))
    loaded_from = {key for key, _ in convert_state_dict(source).renamed}
    with torch.device('meta'):
        ours = ConvNeXt(FIXTURE_ARCH).state_dict()
    written = from_ours(ours, layout)
    assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(source[k].shape) for k in loaded_from}


def test_v2_grn_is_written_in_each_layouts_own_shape():
    with torch.device('meta'):
        ours = ConvNeXt(FIXTURE_ARCH, use_grn=True, layer_scale_init_value=0.0).state_dict()
    assert ours['stages.2.1.grn.gamma'].shape == (64,)
    written = from_ours(ours, 'transformers')
    assert written['encoder.stages.2.layers.1.grn.weight'].shape == (1, 1, 1, 64)
    # The official V2 code's shape; timm and mmpretrain keep vectors, as ours.
    assert from_ours(ours, 'facebook')['stages.2.1.grn.beta'].shape == (1, 1, 1, 64)
    assert from_ours(ours, 'timm')['stages.2.blocks.1.mlp.grn.weight'].shape == (64,)
    assert from_ours(ours, 'mmpretrain')['stages.2.1.grn.gamma'].shape == (64,)
    classifier = read_weights_file(str(PUBLIC / 'transformers_convnextv2_classifier' / 'pytorch_model.bin'))
    assert classifier['convnextv2.encoder.stages.2.layers.1.grn.weight'].shape == (1, 1, 1, 64)


def test_every_layout_has_an_example_for_unknown_files():
    assert {'torchvision', 'transformers', 'transformers_dinov3', 'open_clip'} <= set(LAYOUTS)
    for layout in LAYOUTS.values():
        assert layout.description and re.search(r"'[\w.]+'", layout.example), layout.name
    with pytest.raises(UnknownCheckpointLayoutError) as error:
        detect_layout({'some.other.weight': torch.zeros(1)})
    for name, layout in LAYOUTS.items():
        assert f'{name} ({layout.example})' in str(error.value)
