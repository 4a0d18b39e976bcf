"""Renames of the torchvision and Hugging Face transformers entries of the layout table, both ways (pure).

These functions are the ``torchvision``, ``transformers`` and ``transformers_dinov3`` entries of
:data:`convnext_dense.checkpoint.layouts.LAYOUTS`; the key lists come from each library's model code:

- ``torchvision``: ``torchvision.models.convnext_*``: ``features.0`` is the stem, ``features.{2s+1}`` stage
  ``s`` of ``CNBlock`` s with ``block.{0,2,3,5}`` = dwconv, norm, pwconv1, pwconv2 and ``layer_scale`` of shape
  (C, 1, 1), ``features.{2i}`` downsampling ``i``; ``classifier.*`` (pooled norm and linear) is ignored.
- ``transformers``: ``ConvNextModel``, ``ConvNextV2Model``, their ``*ForImageClassification`` (under
  ``convnext.`` / ``convnextv2.``) and ``*Backbone`` as ``save_pretrained`` writes them: ``embeddings.*``,
  ``encoder.stages.i.downsampling_layer.*``, ``encoder.stages.i.layers.j.*``, ``layer_scale_parameter``, GRN
  ``weight`` / ``bias`` of shape (1, 1, 1, C); a Backbone's per-stage norms ``hidden_states_norms.stage{N}``
  are our output norms ``norm{N-1}``.
- ``transformers_dinov3``: ``DINOv3ConvNextModel`` (the ``facebook/dinov3-convnext-*`` repositories):
  ``stages.i.downsample_layers.*``, ``stages.i.layers.j.{depthwise_conv, layer_norm, pointwise_conv1,
  pointwise_conv2, gamma}``; its final ``layer_norm`` is ignored.

A key rename returns None for a key deliberately not loaded and the key itself when no rule fits, so the
caller reports it as left over. Tensor shapes are made ours by the table's common reshape (layer scale and
GRN flattened); the ``to_*`` functions write each library's own shapes.
"""
import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
#: One of our keys under a layout's name (None: the layout has no place for it).
KeyFromOurs = Callable[[str], Optional[str]]
#: Our output norms ``norm{i}``.
_OUTPUT_NORM = re.compile(r'^norm(\d+)\.(weight|bias)$')


class KeyRenames:
    """Renames both ways from one table of ``(our name, their name)`` templates, tried in order.

    ``{i}``, ``{j}``, ``{k}`` in a template stand for numbers, the same on both sides. A template ending in
    ``.`` renames the start of every key under it; any other template renames a whole key.

    Args:
        pairs: The templates, most specific first.
        wrappers: Prefixes of the layout's keys that wrap the backbone (a classifier's base model), removed.
        ignored: Prefixes of the layout's keys that are not backbone (classifier, final norm): not loaded.
    """

    def __init__(self, pairs: Sequence[Tuple[str, str]], wrappers: Sequence[str] = (),
                 ignored: Sequence[str] = ()) -> None:
        self._to_ours = [(self._regex(theirs), ours) for ours, theirs in pairs]
        self._from_ours = [(self._regex(ours), theirs) for ours, theirs in pairs]
        self._wrappers = tuple(wrappers)
        self._ignored = tuple(ignored)

    @staticmethod
    def _regex(template: str) -> 're.Pattern[str]':
        pattern = re.sub(r'\\\{(\w+)\\\}', r'(?P<\1>\\d+)', re.escape(template))
        return re.compile('^' + pattern + ('' if template.endswith('.') else '$'))

    @staticmethod
    def _apply(rules: Sequence[Tuple['re.Pattern[str]', str]], key: str) -> Optional[str]:
        for regex, target in rules:
            match = regex.match(key)
            if match:
                return target.format(**match.groupdict()) + key[match.end():]
        return None

    def to_ours(self, key: str) -> Optional[str]:
        """A key of the layout under our name; None for an ignored key, the key itself when no template fits."""
        key = next((key[len(w):] for w in self._wrappers if key.startswith(w)), key)
        if key.startswith(self._ignored):
            return None
        renamed = self._apply(self._to_ours, key)
        return key if renamed is None else renamed

    def from_ours(self, key: str) -> Optional[str]:
        """One of our keys under the layout's name; None when the layout has no place for it."""
        return self._apply(self._from_ours, key)


def rename_from_ours(state_dict: Mapping[str, torch.Tensor], key_from_ours: KeyFromOurs,
                     reshapes: Sequence[Tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = ()) -> StateDict:
    """Our tensors under a layout's names, in its shapes; our keys it has no place for are left out.

    Args:
        state_dict: Tensors under our names.
        key_from_ours: Our key -> the layout's, or None.
        reshapes: ``(suffix of our key, reshape)`` for the tensors the layout stores in another shape.
    """
    out = {}
    for key, value in state_dict.items():
        new_key = key_from_ours(key)
        if new_key is not None:
            reshape = next((f for suffix, f in reshapes if key.endswith(suffix)), None)
            out[new_key] = reshape(value) if reshape else value
    return out


def _as_channels_first(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, 1, 1)


def _as_channels_last(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(1, 1, 1, -1)


# ---------------------------------------------------------------------------------------------- torchvision
_TORCHVISION_BLOCK = {'0': 'dwconv', '2': 'norm', '3': 'pwconv1', '5': 'pwconv2'}
_OUR_BLOCK_IN_TORCHVISION = {ours: index for index, ours in _TORCHVISION_BLOCK.items()}


def is_torchvision(state_dict: Mapping[str, object]) -> bool:
    """Whether backbone-level keys are torchvision's ConvNeXt (``features.S.J.block.*`` or ``layer_scale``)."""
    return any(re.match(r'^features\.\d+\.\d+\.(block\.\d+\.|layer_scale$)', k) for k in state_dict)


def torchvision_key_to_ours(key: str) -> Optional[str]:
    """A torchvision key under our name; its ``classifier.*`` is ignored."""
    if key.startswith('classifier.'):  # the classifier's pooled norm and linear
        return None
    match = re.match(r'^features\.(\d+)\.(\d+)\.(.*)$', key)
    if not match:
        return key
    index, inner, rest = int(match.group(1)), match.group(2), match.group(3)
    if index % 2 == 0:  # the stem (0) and downsampling i (2i): Conv2d and LayerNorm2d, or the reverse
        return f'downsample_layers.{index // 2}.{inner}.{rest}'
    stage = f'stages.{(index - 1) // 2}.{inner}.'
    if rest == 'layer_scale':
        return stage + 'gamma'
    block = re.match(r'^block\.(\d+)\.(weight|bias)$', rest)
    if block and block.group(1) in _TORCHVISION_BLOCK:
        return f'{stage}{_TORCHVISION_BLOCK[block.group(1)]}.{block.group(2)}'
    return key


def _torchvision_key_from_ours(key: str) -> Optional[str]:
    match = re.match(r'^downsample_layers\.(\d+)\.(.*)$', key)
    if match:
        return f'features.{2 * int(match.group(1))}.{match.group(2)}'
    match = re.match(r'^stages\.(\d+)\.(\d+)\.(gamma|(dwconv|norm|pwconv1|pwconv2)\.(weight|bias))$', key)
    if not match:
        return None  # the output norms norm{i} (torchvision has no per-stage norms) and GRN (no V2)
    prefix = f'features.{2 * int(match.group(1)) + 1}.{match.group(2)}.'
    if match.group(3) == 'gamma':
        return prefix + 'layer_scale'
    return f'{prefix}block.{_OUR_BLOCK_IN_TORCHVISION[match.group(4)]}.{match.group(5)}'


def to_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone in torchvision's names, layer scale (C, 1, 1); the output norms are left out (pure).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return rename_from_ours(state_dict, _torchvision_key_from_ours, (('.gamma', _as_channels_first),))


# ------------------------------------------------------------------------------ Hugging Face transformers
_TRANSFORMERS_NAMES = KeyRenames(
    (('downsample_layers.0.0.', 'embeddings.patch_embeddings.'),
     ('downsample_layers.0.1.', 'embeddings.layernorm.'),
     ('downsample_layers.{i}.', 'encoder.stages.{i}.downsampling_layer.'),
     ('stages.{i}.{j}.norm.', 'encoder.stages.{i}.layers.{j}.layernorm.'),
     ('stages.{i}.{j}.gamma', 'encoder.stages.{i}.layers.{j}.layer_scale_parameter'),
     ('stages.{i}.{j}.grn.gamma', 'encoder.stages.{i}.layers.{j}.grn.weight'),
     ('stages.{i}.{j}.grn.beta', 'encoder.stages.{i}.layers.{j}.grn.bias'),
     ('stages.{i}.{j}.', 'encoder.stages.{i}.layers.{j}.')),
    # *ForImageClassification models hold the backbone under their base_model_prefix.
    wrappers=('convnext.', 'convnextv2.'),
    # The classifier, the final pooled norm, and a Backbone's norm of the stem (out_features 'stem', which is
    # no output of ours).
    ignored=('classifier.', 'layernorm.', 'hidden_states_norms.stem.'))


def is_transformers(state_dict: Mapping[str, object]) -> bool:
    """Whether backbone-level keys are transformers' ConvNext / ConvNextV2 (``embeddings.``, ``.layers.``).

    FCMAE files start with ``encoder.`` too; their blocks are ``encoder.stages.i.j``, without ``layers``.
    """
    return any(re.match(r'^((convnext|convnextv2)\.)?(embeddings\.patch_embeddings\.'
                        r'|encoder\.stages\.\d+\.layers\.\d+\.)', k) for k in state_dict)


def transformers_key_to_ours(key: str) -> Optional[str]:
    """A transformers key under our name: a Backbone's ``hidden_states_norms.stageN`` is our ``normN-1``."""
    stage_norm = re.match(r'^hidden_states_norms\.stage(\d+)\.(weight|bias)$', key)
    if stage_norm:
        return f'norm{int(stage_norm.group(1)) - 1}.{stage_norm.group(2)}'
    return _TRANSFORMERS_NAMES.to_ours(key)


def _transformers_key_from_ours(key: str) -> Optional[str]:
    output_norm = _OUTPUT_NORM.match(key)
    if output_norm:  # a ConvNextBackbone's norms, named after its out_features
        return f'hidden_states_norms.stage{int(output_norm.group(1)) + 1}.{output_norm.group(2)}'
    return _TRANSFORMERS_NAMES.from_ours(key)


def to_transformers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone as a transformers ``ConvNextBackbone`` / ``ConvNextV2Backbone`` file holds it (pure):
    the output norms as ``hidden_states_norms.stage{i+1}``, GRN (1, 1, 1, C).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return rename_from_ours(state_dict, _transformers_key_from_ours,
                            (('.grn.gamma', _as_channels_last), ('.grn.beta', _as_channels_last)))


_DINOV3_NAMES = KeyRenames(
    (('downsample_layers.{i}.', 'stages.{i}.downsample_layers.'),
     ('stages.{i}.{j}.dwconv.', 'stages.{i}.layers.{j}.depthwise_conv.'),
     ('stages.{i}.{j}.norm.', 'stages.{i}.layers.{j}.layer_norm.'),
     ('stages.{i}.{j}.pwconv{k}.', 'stages.{i}.layers.{j}.pointwise_conv{k}.'),
     ('stages.{i}.{j}.gamma', 'stages.{i}.layers.{j}.gamma')),
    wrappers=('dinov3_convnext.', 'model.'),
    ignored=('layer_norm.',))  # the final norm of the pooled and patch tokens


def is_transformers_dinov3(state_dict: Mapping[str, object]) -> bool:
    """Whether backbone-level keys are transformers' DINOv3ConvNextModel (``stages.i.layers.j.depthwise_conv``)."""
    return any(re.match(r'^((dinov3_convnext|model)\.)?stages\.\d+\.(downsample_layers\.\d+\.'
                        r'|layers\.\d+\.depthwise_conv\.)', k) for k in state_dict)


def transformers_dinov3_key_to_ours(key: str) -> Optional[str]:
    """A DINOv3ConvNextModel key under our name; its final ``layer_norm`` is ignored."""
    return _DINOV3_NAMES.to_ours(key)


def to_transformers_dinov3(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our backbone in DINOv3ConvNextModel's names; the output norms are left out (pure).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return rename_from_ours(state_dict, _DINOV3_NAMES.from_ours)
