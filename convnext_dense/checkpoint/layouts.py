"""The table of ConvNeXt checkpoint layouts: how to recognise each one and rename it to ours and back.

A layout is one :class:`Layout` entry of :data:`LAYOUTS`: a detect predicate, a key rename to our names (with
the tensor reshapes the layout needs), a rename from our names (for ``convert --to`` and the benchmark's
references), a one-line description and an example key. :func:`detect_layout` tries the entries in order and
takes the first that matches, so a layout whose keys overlap another's goes before it. Everything here is
pure: no file is read and no model is built.

- ``torchvision``, ``transformers`` (ConvNext / ConvNextV2 models, classifiers and Backbones),
  ``transformers_dinov3`` (DINOv3ConvNextModel): see :mod:`.library_layouts`.
- ``open_clip``: a CLIP whose image tower is a timm ConvNeXt: timm's names under ``visual.trunk.``; the
  projection ``visual.head.*`` and the text tower are ignored, so no init_cfg ``prefix`` is needed.
- ``fcmae``: ConvNeXt V2 masked-autoencoder pre-training (see :mod:`.fcmae`).
- ``timm``: ``stem.*``, ``stages.i.downsample.*``, ``stages.i.blocks.j.{conv_dw, mlp.fc1, mlp.fc2, gamma}``,
  V2 ``mlp.grn.{weight, bias}``; ``head.*`` and ``norm_pre`` are ignored. Its DINOv3, EUPE, CLIP and ImageNet
  files on the Hugging Face Hub are ``model.safetensors``.
- ``mmpretrain``: ``depthwise_conv`` / ``pointwise_conv{1,2}`` / ``grn.{gamma,beta}``. Its ``norm{i}`` are the
  same output norms as ours, except in a classifier (a file with ``head.*`` beside the backbone), whose only
  ``norm3`` is the post-pooling final norm: ignored.
- ``facebook``: the official release, and Meta's DINOv3 and EUPE files; backbone keys are ours, the
  classifier's ``norm.*`` and ``head.*`` (DINOv3 / EUPE: ``norm``, ``norms.*``, ``projectors.*``) are
  ignored; V2 GRN is stored (1, 1, 1, C).
- ``convnext_dense``: our own names (the official ones plus the output norms ``norm{i}``).

Shapes: our layer scale ``gamma`` and GRN ``gamma`` / ``beta`` are vectors (C,), as in timm and mmpretrain, so
every OpenMMLab optimizer constructor's "1-D: no weight decay" rule covers GRN. Files that store them
otherwise (torchvision's layer scale (C, 1, 1); the official V2 code's and transformers' GRN (1, 1, 1, C);
FCMAE's (1, C)) are flattened as they load, and written back in their own shapes.
"""
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from convnext_dense.checkpoint.fcmae import fcmae_key_to_ours, fcmae_tensor_to_ours, is_fcmae
from convnext_dense.checkpoint.library_layouts import (is_torchvision, is_transformers, is_transformers_dinov3,
                                                       to_torchvision, to_transformers, to_transformers_dinov3,
                                                       torchvision_key_to_ours, transformers_dinov3_key_to_ours,
                                                       transformers_key_to_ours)
from convnext_dense.errors import UnknownCheckpointLayoutError

#: Every parameter name our backbone can have; anything else after renaming is a leftover.
OUR_KEY = re.compile(
    r'^(downsample_layers\.\d+\.[01]\.(weight|bias)'
    r'|stages\.\d+\.\d+\.((dwconv|norm|pwconv1|pwconv2)\.(weight|bias)|gamma|grn\.(gamma|beta))'
    r'|norm\d+\.(weight|bias))$')
#: Our output norms ``norm{i}``: absent from classifier files, so a pretrained load may leave them at init.
OUTPUT_NORM = re.compile(r'^norm(\d+)\.')
#: Where an open_clip CLIP holds its timm image tower.
OPEN_CLIP_TRUNK = 'visual.trunk.'

KeyRename = Callable[[str], Optional[str]]
TensorRename = Callable[[str, str, torch.Tensor], torch.Tensor]
StateDict = Dict[str, torch.Tensor]


def reshape_to_ours(source_key: str, our_key: str, value: torch.Tensor) -> torch.Tensor:
    """Our shape of a tensor whose name is already ours: layer scale and GRN as (C,), 1x1-conv MLP as linear.

    Layer scale is (C, 1, 1) in torchvision; GRN (1, 1, 1, C) in the official V2 code and transformers, (1, C)
    in FCMAE files. timm's small models and mmpretrain's non-linear pointwise layers store the MLP as 1x1
    convs (O, I, 1, 1).
    """
    if our_key.endswith(('.gamma', '.beta')) and value.dim() > 1:
        return value.reshape(-1)
    if ('.pwconv1.weight' in our_key or '.pwconv2.weight' in our_key) and value.dim() == 4:
        return value.flatten(1)
    return value


@dataclass(frozen=True)
class Layout:
    """One checkpoint layout of the ConvNeXt backbone.

    Args:
        name: Short name used in reports (``timm``).
        description: One line naming whose files use it, for reports and errors.
        example: Example keys, for the message about a file of no known layout.
        detect: Whether a backbone-level state dict (prefix removed) is in this layout; tried in table order.
        key_to_ours: Source key -> our key, or None for a key deliberately ignored (a classifier head).
        from_ours: Our state dict -> this layout (pure); None where no file is written in this layout.
        tensor_to_ours: ``(source key, our key, tensor)`` -> the tensor in our shape.
        classifier_norm: In a file with a classifier ``head.*`` beside the backbone, the output norm that
            is the classifier's post-pooling final norm rather than an output norm (ignored).
    """

    name: str
    description: str
    example: str
    detect: Callable[[Mapping[str, Any]], bool]
    key_to_ours: KeyRename
    from_ours: Optional[Callable[[Mapping[str, torch.Tensor]], StateDict]] = None
    tensor_to_ours: TensorRename = reshape_to_ours
    classifier_norm: Optional[str] = None

    @property
    def keeps_our_names(self) -> bool:
        """Whether backbone keys of this layout already carry our names (nothing is renamed)."""
        return self.key_to_ours is official_key_to_ours


def official_key_to_ours(key: str) -> Optional[str]:
    """The official names are ours; the classifier's final ``norm.*`` and ``head.*``, and the feature norms
    ``norms.*`` and distillation ``projectors.*`` of Meta's DINOv3 and EUPE files, are ignored."""
    return None if key.startswith(('head.', 'norm.', 'norms.', 'projectors.')) else key


def timm_key_to_ours(key: str) -> Optional[str]:
    """A timm key under our name; timm's classifier ``head.*`` and ``norm_pre`` are ignored."""
    if key.startswith(('head.', 'norm_pre.')):
        return None
    key = re.sub(r'^stem\.', 'downsample_layers.0.', key)
    key = re.sub(r'^stages\.(\d+)\.downsample\.', r'downsample_layers.\1.', key)
    key = re.sub(r'^stages\.(\d+)\.blocks\.(\d+)\.', r'stages.\1.\2.', key)
    return (key.replace('.conv_dw.', '.dwconv.').replace('.mlp.fc1.', '.pwconv1.')
            .replace('.mlp.fc2.', '.pwconv2.').replace('.mlp.grn.weight', '.grn.gamma')
            .replace('.mlp.grn.bias', '.grn.beta'))


def mmpretrain_key_to_ours(key: str) -> Optional[str]:
    """An mmpretrain key under our name."""
    return (key.replace('.depthwise_conv.', '.dwconv.').replace('.pointwise_conv1.', '.pwconv1.')
            .replace('.pointwise_conv2.', '.pwconv2.'))


def to_timm(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone keys in timm's layout (pure); the output norms ``norm{i}``, which timm lacks, are left out.

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    out = {}
    for key, value in state_dict.items():
        if OUTPUT_NORM.match(key):
            continue
        new = re.sub(r'^downsample_layers\.0\.', 'stem.', key)
        new = re.sub(r'^downsample_layers\.(\d+)\.', r'stages.\1.downsample.', new)
        new = re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', new)
        new = (new.replace('.dwconv.', '.conv_dw.').replace('.pwconv1.', '.mlp.fc1.')
               .replace('.pwconv2.', '.mlp.fc2.').replace('.grn.gamma', '.mlp.grn.weight')
               .replace('.grn.beta', '.mlp.grn.bias'))
        out[new] = value
    return out


def to_mmpretrain(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone keys in mmpretrain's ConvNeXt layout (pure; no ``backbone.`` prefix).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return {key.replace('.dwconv.', '.depthwise_conv.').replace('.pwconv1.', '.pointwise_conv1.')
            .replace('.pwconv2.', '.pointwise_conv2.'): value for key, value in state_dict.items()}


def to_facebook(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone keys in the official layout (pure): the same names, without the output norms ``norm{i}``,
    V2 GRN (1, 1, 1, C) as the official ConvNeXt V2 code stores it.

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return {key: value.reshape(1, 1, 1, -1) if '.grn.' in key else value
            for key, value in state_dict.items() if not OUTPUT_NORM.match(key)}


def open_clip_key_to_ours(key: str) -> Optional[str]:
    """An open_clip key under our name: timm's names under ``visual.trunk.``; every other key is ignored."""
    return timm_key_to_ours(key[len(OPEN_CLIP_TRUNK):]) if key.startswith(OPEN_CLIP_TRUNK) else None


def to_open_clip(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone as the image tower of an open_clip CLIP: timm's names under ``visual.trunk.`` (pure).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return {OPEN_CLIP_TRUNK + key: value for key, value in to_timm(state_dict).items()}


def _any_key(state_dict: Mapping[str, Any], test: Callable[[str], bool]) -> bool:
    return any(test(key) for key in state_dict)


def _has_official_names(state_dict: Mapping[str, Any]) -> bool:
    return _any_key(state_dict, lambda k: k.startswith('downsample_layers.'))


#: Every known layout, in detection order: the first whose ``detect`` matches names the file.
LAYOUTS: Dict[str, Layout] = {layout.name: layout for layout in (
    Layout('torchvision', 'torchvision.models.convnext_* names: features.{2s+1}.{j}.block.{0,2,3,5} and layer_scale '
                          '(C, 1, 1) for stage s, features.{2i} for the stem and downsampling i',
           "'features.0.0.weight', 'features.1.0.block.0.weight', 'features.1.0.layer_scale'",
           is_torchvision, torchvision_key_to_ours, from_ours=to_torchvision),
    # Before fcmae: transformers' keys start with encoder. too.
    Layout('transformers', 'Hugging Face transformers ConvNextModel / ConvNextV2Model / *ForImageClassification / '
                           '*Backbone names (embeddings.*, encoder.stages.i.layers.j.*), a Backbone\'s '
                           'hidden_states_norms.stageN as our normN-1',
           "'embeddings.patch_embeddings.weight', 'encoder.stages.0.layers.0.dwconv.weight'",
           is_transformers, transformers_key_to_ours, from_ours=to_transformers),
    # Before mmpretrain: DINOv3ConvNextModel names its depthwise convs depthwise_conv too.
    Layout('transformers_dinov3', 'Hugging Face transformers DINOv3ConvNextModel names (facebook/dinov3-convnext-*): '
                                  'stages.i.downsample_layers.*, stages.i.layers.j.*',
           "'stages.0.downsample_layers.0.weight', 'stages.0.layers.0.depthwise_conv.weight'",
           is_transformers_dinov3, transformers_dinov3_key_to_ours, from_ours=to_transformers_dinov3),
    # Before timm: the tower's keys are timm's.
    Layout('open_clip', 'open_clip CLIP names: a timm ConvNeXt image tower under visual.trunk., the projection '
                        'visual.head.* and the text tower ignored',
           "'visual.trunk.stem.0.weight', 'visual.head.proj.weight', 'text_projection'",
           lambda sd: _any_key(sd, lambda k: k.startswith(OPEN_CLIP_TRUNK)), open_clip_key_to_ours,
           from_ours=to_open_clip),
    Layout('fcmae', 'ConvNeXt V2 FCMAE pre-training names (sparse MinkowskiEngine encoder, or the released '
                    'dense-named files with GRN of shape (1, C))',
           "'encoder.stages.0.0.dwconv.kernel', 'decoder.0.dwconv.weight', 'mask_token'",
           is_fcmae, fcmae_key_to_ours, tensor_to_ours=fcmae_tensor_to_ours),
    Layout('timm', 'timm names', "'stem.0.weight', 'stages.0.blocks.0.conv_dw.weight'",
           lambda sd: _any_key(sd, lambda k: k.startswith('stem.') or '.blocks.' in k or '.downsample.' in k),
           timm_key_to_ours, from_ours=to_timm),
    Layout('mmpretrain', 'mmpretrain names, as mmpretrain classifiers and the mmdet 3.x / mmseg 1.x models '
                         'built with mmpretrain.ConvNeXt save them',
           "{'state_dict': {'backbone.stages.0.0.depthwise_conv.weight', ...}}",
           lambda sd: _any_key(sd, lambda k: '.depthwise_conv.' in k or '.pointwise_conv' in k),
           mmpretrain_key_to_ours, from_ours=to_mmpretrain, classifier_norm='norm3'),
    Layout('facebook', "the official names, as the authors' classifiers, Meta's DINOv3 / EUPE files and the "
                       'mmdet 2.x / mmseg 0.x models save them',
           "{'model': {'downsample_layers.0.0.weight', ..., 'head.weight'}}",
           lambda sd: _has_official_names(sd) and _any_key(sd, lambda k: k.startswith(('head.', 'norm.'))),
           official_key_to_ours, from_ours=to_facebook),
    Layout('convnext_dense', "this package's names (the official ones, with output norms norm0-norm3)",
           "'downsample_layers.0.0.weight', 'stages.0.0.dwconv.weight' (bare or under backbone.)",
           _has_official_names, official_key_to_ours, from_ours=dict),
)}
#: The layouts ``convert --to`` writes: every entry of the table with a rename from ours.
WRITABLE_LAYOUTS = tuple(name for name, layout in LAYOUTS.items() if layout.from_ours is not None)


def detect_layout(state_dict: Mapping[str, Any]) -> Layout:
    """The layout of backbone-level tensors (any ``backbone.`` prefix already removed).

    Args:
        state_dict: Keys and tensors; the tensors matter where keys alone do not tell (FCMAE's GRN shapes).

    Raises:
        UnknownCheckpointLayoutError: No entry of :data:`LAYOUTS` matches; the message shows the first keys
            and an example of every known layout.
    """
    for layout in LAYOUTS.values():
        if layout.detect(state_dict):
            return layout
    raise UnknownCheckpointLayoutError(
        f'not a ConvNeXt checkpoint of any known layout; its first keys are {list(state_dict)[:6]}. Known '
        'layouts: ' + '; '.join(f'{name} ({layout.example})' for name, layout in LAYOUTS.items())
        + '. Pass init_cfg prefix=... if the backbone sits under another prefix.')
