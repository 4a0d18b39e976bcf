"""ConvNeXt checkpoint layouts of torchvision, Hugging Face transformers and open_clip, as pure renames.

Each layout is one :class:`PublicLayout`: a detect predicate over key names, the rename of one key to our
names and back, the reshape of one tensor both ways, a one-line description and an example key. Renaming to
ours returns ``None`` for a key that deliberately has no place in a backbone (a classifier, a final pooled
norm, another tower) and passes any other unknown key through unchanged, so the caller reports it as left
over. Nothing here reads files or knows the model; the key lists come from each publisher's model code:

- ``torchvision``: ``torchvision.models.convnext_*`` (``features.0`` stem, ``features.{2s+1}`` stage ``s``
  of ``CNBlock`` s with ``block.{0,2,3,5}`` = dwconv, norm, pwconv1, pwconv2 and ``layer_scale`` (C, 1, 1),
  ``features.{2i}`` downsampling ``i``, ``classifier.*``).
- ``transformers``: ``ConvNextModel``, ``ConvNextV2Model``, their ``*ForImageClassification`` (under
  ``convnext.`` / ``convnextv2.``) and ``*Backbone`` as ``save_pretrained`` writes them: ``embeddings.*``,
  ``encoder.stages.i.downsampling_layer.*``, ``encoder.stages.i.layers.j.*``, ``layer_scale_parameter``,
  GRN ``weight`` / ``bias`` (1, 1, 1, C); the Backbone's per-stage output norms
  ``hidden_states_norms.stage{N}`` are our ``norm{N-1}``.
- ``transformers_dinov3``: ``DINOv3ConvNextModel`` (the ``facebook/dinov3-convnext-*`` repositories):
  ``stages.i.downsample_layers.*``, ``stages.i.layers.j.{depthwise_conv, layer_norm, pointwise_conv1,
  pointwise_conv2, gamma}``.
- ``open_clip``: a CLIP whose image tower is a timm ConvNeXt: timm's names under ``visual.trunk.``; the
  projection ``visual.head.*`` and the text tower are not backbone. Described by :attr:`PublicLayout.nested`
  (the caller renames the trunk with its timm rules).
"""
import re
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

#: Renames one source key to ours (None: deliberately not loaded) or one of our keys to the layout's.
KeyRename = Callable[[str], Optional[str]]
#: Reshapes one tensor, given our key, to our shape or to the layout's.
Reshape = Callable[[str, torch.Tensor], torch.Tensor]


def keep_shape(key: str, value: torch.Tensor) -> torch.Tensor:
    """The reshape of a layout that stores a tensor as we do: none."""
    return value


def _any_key(pattern: str) -> Callable[[Sequence[str]], bool]:
    compiled = re.compile(pattern)
    return lambda keys: any(compiled.search(k) for k in keys)


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
    def _regex(template: str) -> re.Pattern:
        pattern = re.sub(r'\\\{(\w+)\\\}', r'(?P<\1>\\d+)', re.escape(template))
        return re.compile('^' + pattern + ('' if template.endswith('.') else '$'))

    @staticmethod
    def _apply(rules: Sequence[Tuple[re.Pattern, str]], key: str) -> Optional[str]:
        for regex, target in rules:
            match = regex.match(key)
            if match:
                return target.format(**match.groupdict()) + key[match.end():]
        return None

    def to_ours(self, key: str) -> Optional[str]:
        """A key of the layout under our name; None for an ignored key, the key itself when no template fits."""
        for wrapper in self._wrappers:
            if key.startswith(wrapper):
                key = key[len(wrapper):]
                break
        if key.startswith(self._ignored):
            return None
        renamed = self._apply(self._to_ours, key)
        return key if renamed is None else renamed

    def from_ours(self, key: str) -> Optional[str]:
        """One of our keys under the layout's name; None when the layout has no place for it."""
        return self._apply(self._from_ours, key)


@dataclass(frozen=True)
class PublicLayout:
    """One checkpoint layout: how to recognise it and how its keys map to ours and back.

    Args:
        name: The layout's name in reports and for ``convert --to``.
        description: One line: whose files these are and what marks them.
        example: Typical keys, for the message about a file of no known layout.
        detect: Whether backbone-level keys (wrappers removed) are of this layout.
        rename_to_ours: A source key to ours; None for a key deliberately not loaded.
        reshape_to_ours: A source tensor, given its new (our) key, to our shape.
        rename_from_ours: One of our keys to the layout's; None where the layout has no place for it.
        reshape_from_ours: One of our tensors, given our key, to the layout's shape.
        nested: ``(prefix, layout)`` for a layout whose backbone is another layout under a prefix (every other
            key belongs to other modules); the rename and reshape fields are unused then.
    """

    name: str
    description: str
    example: str
    detect: Callable[[Sequence[str]], bool]
    rename_to_ours: KeyRename = lambda key: key
    reshape_to_ours: Reshape = keep_shape
    rename_from_ours: KeyRename = lambda key: key
    reshape_from_ours: Reshape = keep_shape
    nested: Optional[Tuple[str, str]] = None


# ---------------------------------------------------------------------------------------------- torchvision
_TORCHVISION_BLOCK = {'0': 'dwconv', '2': 'norm', '3': 'pwconv1', '5': 'pwconv2'}
_OUR_BLOCK_IN_TORCHVISION = {ours: index for index, ours in _TORCHVISION_BLOCK.items()}


def _torchvision_to_ours(key: str) -> Optional[str]:
    if key.startswith('classifier.'):  # the classifier's pooled norm and linear
        return None
    match = re.match(r'^features\.(\d+)\.(\d+)\.(.*)$', key)
    if not match:
        return key
    index, inner, rest = int(match.group(1)), match.group(2), match.group(3)
    if index % 2 == 0:  # the stem (0) and downsampling i (2i): LayerNorm2d and Conv2d, or the reverse
        return f'downsample_layers.{index // 2}.{inner}.{rest}'
    stage = f'stages.{(index - 1) // 2}.{inner}.'
    if rest == 'layer_scale':
        return stage + 'gamma'
    block = re.match(r'^block\.(\d+)\.(weight|bias)$', rest)
    if block and block.group(1) in _TORCHVISION_BLOCK:
        return f'{stage}{_TORCHVISION_BLOCK[block.group(1)]}.{block.group(2)}'
    return key


def _torchvision_from_ours(key: str) -> Optional[str]:
    match = re.match(r'^downsample_layers\.(\d+)\.(.*)$', key)
    if match:
        return f'features.{2 * int(match.group(1))}.{match.group(2)}'
    match = re.match(r'^stages\.(\d+)\.(\d+)\.(gamma|(dwconv|norm|pwconv1|pwconv2)\.(weight|bias))$', key)
    if not match:
        return None  # the output norms norm{i}: torchvision returns no per-stage norms
    prefix = f'features.{2 * int(match.group(1)) + 1}.{match.group(2)}.'
    if match.group(3) == 'gamma':
        return prefix + 'layer_scale'
    return f'{prefix}block.{_OUR_BLOCK_IN_TORCHVISION[match.group(4)]}.{match.group(5)}'


def _layer_scale_to_ours(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1) if key.endswith('.gamma') else value  # torchvision's (C, 1, 1) -> (C,)


def _layer_scale_from_ours(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, 1, 1) if key.endswith('.gamma') else value


TORCHVISION = PublicLayout(
    name='torchvision',
    description='torchvision.models.convnext_*: features.{2s+1}.{j}.block.{0,2,3,5} and layer_scale (C, 1, 1) '
                'for stage s, features.{2i} for the stem and downsampling i, classifier.* ignored',
    example="'features.0.0.weight', 'features.1.0.block.0.weight', 'features.1.0.layer_scale'",
    detect=_any_key(r'^features\.\d+\.\d+\.(block\.\d+\.|layer_scale$)'),
    rename_to_ours=_torchvision_to_ours,
    reshape_to_ours=_layer_scale_to_ours,
    rename_from_ours=_torchvision_from_ours,
    reshape_from_ours=_layer_scale_from_ours,
)

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


def _transformers_to_ours(key: str) -> Optional[str]:
    stage_norm = re.match(r'^hidden_states_norms\.stage(\d+)\.(weight|bias)$', key)
    if stage_norm:
        return f'norm{int(stage_norm.group(1)) - 1}.{stage_norm.group(2)}'
    return _TRANSFORMERS_NAMES.to_ours(key)


def _transformers_from_ours(key: str) -> Optional[str]:
    output_norm = re.match(r'^norm(\d+)\.(weight|bias)$', key)
    if output_norm:  # a ConvNextBackbone's norms, named after its out_features
        return f'hidden_states_norms.stage{int(output_norm.group(1)) + 1}.{output_norm.group(2)}'
    return _TRANSFORMERS_NAMES.from_ours(key)


def _grn_from_ours(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(1, 1, 1, -1) if '.grn.' in key else value  # ConvNextV2GRN stores (1, 1, 1, C)


TRANSFORMERS = PublicLayout(
    name='transformers',
    description='Hugging Face transformers ConvNextModel / ConvNextV2Model / *ForImageClassification / '
                '*Backbone (save_pretrained): embeddings.*, encoder.stages.i.layers.j.*, layer_scale_parameter, '
                'GRN (1, 1, 1, C), the Backbone\'s hidden_states_norms.stageN loaded as normN-1',
    example="'embeddings.patch_embeddings.weight', 'encoder.stages.0.layers.0.dwconv.weight'",
    detect=_any_key(r'^((convnext|convnextv2)\.)?(embeddings\.patch_embeddings\.'
                    r'|encoder\.stages\.\d+\.layers\.\d+\.)'),
    rename_to_ours=_transformers_to_ours,
    rename_from_ours=_transformers_from_ours,
    reshape_from_ours=_grn_from_ours,
)

_DINOV3_NAMES = KeyRenames(
    (('downsample_layers.{i}.', 'stages.{i}.downsample_layers.'),
     ('stages.{i}.{j}.dwconv.', 'stages.{i}.layers.{j}.depthwise_conv.'),
     ('stages.{i}.{j}.norm.', 'stages.{i}.layers.{j}.layer_norm.'),
     ('stages.{i}.{j}.pwconv{k}.', 'stages.{i}.layers.{j}.pointwise_conv{k}.'),
     ('stages.{i}.{j}.gamma', 'stages.{i}.layers.{j}.gamma')),
    wrappers=('dinov3_convnext.', 'model.'),
    ignored=('layer_norm.',))  # the final norm of the pooled and patch tokens

TRANSFORMERS_DINOV3 = PublicLayout(
    name='transformers_dinov3',
    description='Hugging Face transformers DINOv3ConvNextModel (facebook/dinov3-convnext-*): '
                'stages.i.downsample_layers.*, stages.i.layers.j.{depthwise_conv, layer_norm, pointwise_conv1, '
                'pointwise_conv2, gamma}, the final layer_norm ignored',
    example="'stages.0.downsample_layers.0.weight', 'stages.0.layers.0.depthwise_conv.weight'",
    detect=_any_key(r'^((dinov3_convnext|model)\.)?stages\.\d+\.(downsample_layers\.\d+\.'
                    r'|layers\.\d+\.depthwise_conv\.)'),
    rename_to_ours=_DINOV3_NAMES.to_ours,
    rename_from_ours=_DINOV3_NAMES.from_ours,
)

# -------------------------------------------------------------------------------------------------- open_clip
OPEN_CLIP_TRUNK = 'visual.trunk.'

OPEN_CLIP = PublicLayout(
    name='open_clip',
    description='open_clip CLIP with a timm ConvNeXt image tower: timm names under visual.trunk., the '
                'projection visual.head.* and the text tower ignored',
    example="'visual.trunk.stem.0.weight', 'visual.head.proj.weight', 'text_projection'",
    detect=lambda keys: any(k.startswith(OPEN_CLIP_TRUNK) for k in keys),
    nested=(OPEN_CLIP_TRUNK, 'timm'),
)

#: Every layout of this module, tried in this order.
PUBLIC_LAYOUTS: Dict[str, PublicLayout] = {
    layout.name: layout for layout in (TORCHVISION, TRANSFORMERS, TRANSFORMERS_DINOV3, OPEN_CLIP)}


def detect_public_layout(keys: Sequence[str]) -> Optional[PublicLayout]:
    """The first layout of :data:`PUBLIC_LAYOUTS` whose predicate holds for ``keys``, or None.

    Args:
        keys: Backbone-level key names, wrappers and DDP / compile prefixes removed.
    """
    return next((layout for layout in PUBLIC_LAYOUTS.values() if layout.detect(keys)), None)


def from_ours(layout: PublicLayout, state_dict: Mapping[str, torch.Tensor]
              ) -> Tuple[Dict[str, torch.Tensor], Tuple[str, ...]]:
    """Our backbone tensors in a non-nested layout's names and shapes (pure).

    Args:
        layout: One of :data:`PUBLIC_LAYOUTS` without ``nested``.
        state_dict: Tensors under our names.

    Returns:
        The renamed tensors, and our keys the layout has no place for (e.g. output norms for torchvision).
    """
    renamed: Dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in state_dict.items():
        new_key = layout.rename_from_ours(key)
        if new_key is None:
            dropped.append(key)
        else:
            renamed[new_key] = layout.reshape_from_ours(key, value)
    return renamed, tuple(dropped)
