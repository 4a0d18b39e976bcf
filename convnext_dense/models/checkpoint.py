"""Pretrained ConvNeXt checkpoints: layout detection, pure key conversion and a checked, reported load.

Four layouts load without a manual conversion step (docs/design.md, "Checkpoints"):

- ``facebook``: the official release, ``{'model': state_dict}``; backbone keys already match ours, the final
  ``norm.*`` and ``head.*`` of the classifier are ignored.
- ``timm``: ``stem.*``, ``stages.i.downsample.*``, ``stages.i.blocks.j.{conv_dw, mlp.fc1, mlp.fc2, gamma}``,
  V2 ``mlp.grn.{weight, bias}`` of shape (C,); ``head.norm`` / ``head.fc`` are ignored.
- ``mmpretrain``: ``{'state_dict': ...}`` with a ``backbone.`` prefix and ``depthwise_conv`` /
  ``pointwise_conv{1,2}`` / ``grn.{gamma,beta}`` of shape (C,). Its ``norm{i}`` are the same channels-first
  output norms as ours, except in a classifier (a checkpoint with ``head.*``) whose only ``norm3`` is the
  post-pooling final norm: that one is ignored, like facebook's ``norm``, whether the file is loaded with
  an init_cfg ``prefix`` or not (the head is looked up beside the backbone), and the report says so.
- ``convnext_dense``: our own names, bare or inside an mmdet / mmseg model (``backbone.`` prefix).
- ``fcmae``: ConvNeXt V2 masked-autoencoder pre-training (:func:`convert_fcmae`): the sparse encoder under
  ``encoder.`` as the official ``fcmae.py`` saves it, or the released ``*_fcmae.pt`` files with dense names
  and GRN of shape (1, C) or (C,); the decoder, ``proj``, ``pred`` and ``mask_token`` are ignored.
- ``torchvision``, ``transformers`` (Hugging Face ConvNext / ConvNextV2 / their Backbones), ``transformers_dinov3``
  and ``open_clip`` (timm's names under ``visual.trunk.``): ``convnext_dense.checkpoint.public_layouts``.

Files are read by ``convnext_dense.checkpoint.formats`` (safetensors files and torch pickles); a source
``hf-hub:ORG/NAME[@REVISION]`` is resolved through the Hugging Face cache by ``convnext_dense.checkpoint.hub``.

Wrappers (``state_dict``, ``model``, ``module``, ``state_dict_ema``, ``model_ema``) and the ``module.``
(DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are removed first. :func:`convert_state_dict` is a
pure function from a checkpoint to our names, and :func:`to_timm`, :func:`to_mmpretrain` and
:func:`to_facebook` convert back; :func:`load_pretrained` compares the result with a model, refuses a
partial or mis-shaped load, loads, and logs one report.
"""
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from convnext_dense.checkpoint import public_layouts
from convnext_dense.checkpoint.formats import read_weights_file
from convnext_dense.checkpoint.hub import is_hub_name, resolve_hub_name
from convnext_dense.errors import (CheckpointFormatError, CheckpointKeyError, CheckpointMismatchError,
                                   CheckpointNotFoundError, UnknownCheckpointLayoutError)
from convnext_dense.models.arch import ARCH_SETTINGS

LAYOUTS = ('facebook', 'timm', 'mmpretrain', 'convnext_dense', 'fcmae') + tuple(public_layouts.PUBLIC_LAYOUTS)

#: Top-level wrappers of a state dict, main weights first (the official weights are the non-EMA ones).
STATE_DICT_KEYS = ('state_dict', 'model', 'module')
EMA_STATE_DICT_KEYS = ('state_dict_ema', 'model_ema')

# Every parameter name our backbone can have; anything else after conversion is a leftover.
_OUR_KEY = re.compile(
    r'^(downsample_layers\.\d+\.[01]\.(weight|bias)'
    r'|stages\.\d+\.\d+\.((dwconv|norm|pwconv1|pwconv2)\.(weight|bias)|gamma|grn\.(gamma|beta))'
    r'|norm\d+\.(weight|bias))$')
_OUTPUT_NORM = re.compile(r'^norm(\d+)\.')
_ORIG_MOD = re.compile(r'(^|\.)_orig_mod\.')
# Names only an FCMAE checkpoint has: the encoder/decoder split, MinkowskiEngine's ``kernel`` and the
# ``ln`` / ``linear`` modules its sparse LayerNorm and Linear wrap.
_FCMAE_KEY = re.compile(r'^(encoder|decoder|proj|pred)\.|^mask_token$|\.kernel$|\.(ln|linear)\.')
#: FCMAE modules outside the encoder; the official fine-tuning drops them too.
FCMAE_PRETRAINING_ONLY = ('decoder.', 'proj.', 'pred.', 'mask_token')
#: One example key per layout, for messages about a file of no known layout.
LAYOUT_EXAMPLES = {
    'facebook': "{'model': {'downsample_layers.0.0.weight', ..., 'head.weight'}}",
    'timm': "'stem.0.weight', 'stages.0.blocks.0.conv_dw.weight'",
    'mmpretrain': "{'state_dict': {'backbone.stages.0.0.depthwise_conv.weight', ...}}",
    'convnext_dense': "'downsample_layers.0.0.weight', 'stages.0.0.dwconv.weight' (bare or under backbone.)",
    'fcmae': "'encoder.stages.0.0.dwconv.kernel', 'decoder.0.dwconv.weight', 'mask_token'",
    **{name: layout.example for name, layout in public_layouts.PUBLIC_LAYOUTS.items()},
}

CLASSIFIER_FINAL_NORM_NOTE = (
    "norm3 of an mmpretrain classifier (a file with head.* beside the backbone) is its post-pooling final "
    "norm, not an output norm: ignored with or without init_cfg prefix, like the official classifier's norm")


@dataclass
class Conversion:
    """The result of :func:`convert_state_dict`.

    Args:
        layout: Detected source layout, one of :data:`LAYOUTS`.
        state_dict: Backbone tensors under our parameter names.
        renamed: ``(source key, our key)`` for every key whose name changed.
        ignored: Source keys deliberately dropped: classifier head, final norm, non-backbone modules.
        leftover: Source keys that match no known backbone parameter (not in ``state_dict``).
        notes: Rules that decided what was ignored, for the report.
    """

    layout: str
    state_dict: Dict[str, torch.Tensor]
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    leftover: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, also logged as one message.

    Args:
        source: The checkpoint path or URL.
        layout: Detected source layout.
        loaded: Our keys copied from the checkpoint.
        ignored: Source keys deliberately not loaded (head, final norm, output norms of unused stages,
            non-backbone modules).
        initialized: Our output norms ``norm{i}`` absent from the checkpoint, left at their init (1, 0).
        missing: Other model keys absent from the checkpoint (a load with any is refused).
        unexpected: Checkpoint keys the model has no place for.
        mismatched: ``(our key, checkpoint shape, model shape)`` (a load with any is refused).
        notes: Rules that decided what was ignored.
    """

    source: str
    layout: str
    loaded: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    initialized: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """A compact multi-line description, one category per line."""
        return '\n'.join([
            f'ConvNeXt checkpoint {self.source} (layout: {self.layout}): loaded {len(self.loaded)} tensors',
            f'  ignored (classifier head / final norm / not backbone): {summarize_keys(self.ignored)}',
            f'  initialized (output norms not in the checkpoint): {summarize_keys(self.initialized)}',
            f'  missing: {summarize_keys(self.missing)}',
            f'  unexpected: {summarize_keys(self.unexpected)}',
            f'  shape mismatched: {summarize_mismatches(self.mismatched)}',
        ] + [f'  note: {note}' for note in self.notes])


def summarize_mismatches(mismatched: Sequence[Tuple[str, Sequence[int], Sequence[int]]], limit: int = 5) -> str:
    """Names up to ``limit`` shape mismatches as ``KEY [checkpoint shape] vs model [model shape]``.

    Args:
        mismatched: ``(key, checkpoint shape, model shape)`` triples.
        limit: Most mismatches named before the rest is counted.
    """
    if not mismatched:
        return 'none'
    named = ', '.join(f'{key} {list(src)} vs model {list(dst)}' for key, src, dst in mismatched[:limit])
    return named + (f' ... ({len(mismatched)} in all)' if len(mismatched) > limit else '')


def summarize_keys(keys: Sequence[str], limit: int = 8) -> str:
    """Names up to ``limit`` keys, grouping parameters of one module (``head.fc.{weight,bias}``) and
    large subtrees (``neck.* (12)``) so a report stays readable.

    Args:
        keys: Parameter names.
        limit: Most groups named before the rest is counted.
    """
    if not keys:
        return 'none'
    groups: Dict[str, List[str]] = defaultdict(list)
    for key in keys:
        module, _, _ = key.rpartition('.')
        groups[module or key].append(key)
    if len(groups) > limit:  # many modules: fold to the first name segment
        folded: Dict[str, List[str]] = defaultdict(list)
        for key in keys:
            folded[key.split('.')[0] + '.*' if '.' in key else key].append(key)
        groups = folded
    names = []
    for module, members in groups.items():
        if module.endswith('.*'):
            names.append(f'{module} ({len(members)})')
        elif len(members) == 1:
            names.append(members[0])
        else:
            names.append(f'{module}.{{{",".join(k.rpartition(".")[2] for k in members)}}}')
    shown = ', '.join(names[:limit])
    return shown + (f' ... ({len(keys)} keys in all)' if len(names) > limit else '')


def unwrap_checkpoint(checkpoint: Mapping[str, Any], ema: bool = False) -> Tuple[Dict[str, Any], str]:
    """Returns the state dict inside a checkpoint and the wrapper key it came from (``''`` if bare).

    Args:
        checkpoint: What ``torch.load`` returned.
        ema: Prefer the EMA weights (``state_dict_ema`` / ``model_ema``) when both are present.

    Raises:
        ValueError: No state dict found; the message lists the checkpoint's top-level keys.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(f'expected a checkpoint dict, got {type(checkpoint).__name__}.')
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return dict(checkpoint), ''
    order = EMA_STATE_DICT_KEYS + STATE_DICT_KEYS if ema else STATE_DICT_KEYS + EMA_STATE_DICT_KEYS
    for key in order:
        if isinstance(checkpoint.get(key), Mapping):
            inner, _ = unwrap_checkpoint(checkpoint[key], ema=ema)
            return inner, key
    raise CheckpointFormatError(f'no state dict in checkpoint: top-level keys are {sorted(map(str, checkpoint))[:10]}; '
                     f'expected a dict of tensors or one under {list(order)}.')


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Removes DDP's leading ``module.`` and every ``_orig_mod.`` segment that ``torch.compile`` adds."""
    stripped = {}
    for key, value in state_dict.items():
        key = _ORIG_MOD.sub(r'\1', key)
        while key.startswith('module.'):
            key = key[len('module.'):]
        stripped[key] = value
    return stripped


def select_prefix(state_dict: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """Keeps the keys under ``prefix`` with the prefix removed (mmengine's init_cfg ``prefix`` semantics).

    Raises:
        KeyError: No key starts with ``prefix``; the message lists the prefixes that exist.
    """
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        roots = sorted({k.split('.')[0] + '.' for k in state_dict})
        raise CheckpointKeyError(f'init_cfg prefix {prefix!r} matches no key of the checkpoint; its top-level '
                       f'prefixes are {roots[:10]}. Fix the prefix or remove it.')
    return selected


def detect_layout(keys: Sequence[str]) -> str:
    """Names the layout of backbone-level keys (any ``backbone.`` prefix already removed).

    A released FCMAE file with dense names is told from ``convnext_dense`` by its GRN shapes, which keys
    alone do not show: :func:`is_fcmae` looks at both.

    Raises:
        UnknownCheckpointLayoutError: The keys match none of :data:`LAYOUTS`; the message shows the first
            of them and an example of every known layout.
    """
    if any(_FCMAE_KEY.search(k) for k in keys):
        return 'fcmae'
    if any(k.startswith('stem.') or '.blocks.' in k or '.downsample.' in k for k in keys):
        return 'timm'
    if any('.depthwise_conv.' in k or '.pointwise_conv' in k for k in keys):
        return 'mmpretrain'
    if any(k.startswith('downsample_layers.') for k in keys):
        if any(k.startswith('head.') or k.startswith('norm.') for k in keys):
            return 'facebook'
        return 'convnext_dense'
    raise UnknownCheckpointLayoutError(
        f'not a ConvNeXt checkpoint of any known layout; its first keys are {list(keys)[:6]}. Known layouts: '
        + '; '.join(f'{name} ({example})' for name, example in LAYOUT_EXAMPLES.items())
        + '. Pass init_cfg prefix=... if the backbone sits under another prefix.')


def _rename_timm(key: str) -> Optional[str]:
    if key.startswith(('head.', 'norm_pre.')):
        return None
    key = re.sub(r'^stem\.', 'downsample_layers.0.', key)
    key = re.sub(r'^stages\.(\d+)\.downsample\.', r'downsample_layers.\1.', key)
    key = re.sub(r'^stages\.(\d+)\.blocks\.(\d+)\.', r'stages.\1.\2.', key)
    return (key.replace('.conv_dw.', '.dwconv.').replace('.mlp.fc1.', '.pwconv1.')
            .replace('.mlp.fc2.', '.pwconv2.').replace('.mlp.grn.weight', '.grn.gamma')
            .replace('.mlp.grn.bias', '.grn.beta'))


def _rename_mmpretrain(key: str) -> Optional[str]:
    return (key.replace('.depthwise_conv.', '.dwconv.').replace('.pointwise_conv1.', '.pwconv1.')
            .replace('.pointwise_conv2.', '.pwconv2.'))


def _rename_official(key: str) -> Optional[str]:
    return None if key.startswith(('head.', 'norm.')) else key


def _to_our_shape(key: str, value: torch.Tensor) -> torch.Tensor:
    # GRN is (1, 1, 1, C) in the official V2 code and ours, (C,) in timm and mmpretrain; timm's small
    # models and mmpretrain's non-linear pw convs store the MLP as 1x1 convs (O, I, 1, 1).
    if '.grn.' in key and value.dim() == 1:
        return value.reshape(1, 1, 1, -1)
    if ('.pwconv1.weight' in key or '.pwconv2.weight' in key) and value.dim() == 4:
        return value.flatten(1)
    return value


def _sibling(prefix: str, name: str) -> str:
    """``name`` beside the module at ``prefix``: ``('backbone.', 'head.')`` -> ``'head.'``,
    ``('model.backbone.', 'head.')`` -> ``'model.head.'``, ``('', 'head.')`` -> ``'head.'``."""
    parent = prefix.rstrip('.').rpartition('.')[0]
    return f'{parent}.{name}' if parent else name


def _from_our_shape(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1) if '.grn.' in key else value  # timm and mmpretrain store GRN as (C,)


def to_timm(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our backbone keys in timm's layout (pure); the output norms ``norm{i}``, which timm lacks, keep their names.

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    out = {}
    for key, value in state_dict.items():
        new = re.sub(r'^downsample_layers\.0\.', 'stem.', key)
        new = re.sub(r'^downsample_layers\.(\d+)\.', r'stages.\1.downsample.', new)
        new = re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', new)
        new = (new.replace('.dwconv.', '.conv_dw.').replace('.pwconv1.', '.mlp.fc1.')
               .replace('.pwconv2.', '.mlp.fc2.').replace('.grn.gamma', '.mlp.grn.weight')
               .replace('.grn.beta', '.mlp.grn.bias'))
        out[new] = _from_our_shape(key, value)
    return out


def to_mmpretrain(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our backbone keys in mmpretrain's ConvNeXt layout (pure; no ``backbone.`` prefix).

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return {key.replace('.dwconv.', '.depthwise_conv.').replace('.pwconv1.', '.pointwise_conv1.')
            .replace('.pwconv2.', '.pointwise_conv2.'): _from_our_shape(key, value)
            for key, value in state_dict.items()}


def to_facebook(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our backbone keys in the official layout (pure): the same names, without the output norms ``norm{i}``.

    Args:
        state_dict: A state dict of our ConvNeXt.
    """
    return {key: value for key, value in state_dict.items() if not _OUTPUT_NORM.match(key)}


#: The layouts :func:`to_layout` writes (every one but FCMAE pre-training).
WRITABLE_LAYOUTS = ('convnext_dense', 'facebook', 'timm', 'mmpretrain') + tuple(public_layouts.PUBLIC_LAYOUTS)


def to_layout(layout: str, state_dict: Mapping[str, torch.Tensor]
              ) -> Tuple[Dict[str, torch.Tensor], Tuple[str, ...]]:
    """Our backbone tensors in one of :data:`WRITABLE_LAYOUTS`, names and shapes as its publisher stores them.

    Args:
        layout: The target layout.
        state_dict: A state dict of our ConvNeXt.

    Returns:
        The converted tensors, and our keys the layout has no place for (the output norms ``norm{i}`` of
        layouts without per-stage norms); both pure.

    Raises:
        CheckpointFormatError: ``layout`` is not one of :data:`WRITABLE_LAYOUTS`.
    """
    if layout not in WRITABLE_LAYOUTS:
        raise CheckpointFormatError(f'cannot write the {layout!r} layout; choose one of {list(WRITABLE_LAYOUTS)}.')
    if layout in public_layouts.PUBLIC_LAYOUTS:
        public = public_layouts.PUBLIC_LAYOUTS[layout]
        if not public.nested:
            return public_layouts.from_ours(public, state_dict)
        prefix, inner = public.nested
        converted, dropped = to_layout(inner, state_dict)
        return {prefix + key: value for key, value in converted.items()}, dropped
    keeps_output_norms = layout in ('convnext_dense', 'mmpretrain')
    dropped = tuple(k for k in state_dict if _OUTPUT_NORM.match(k) and not keeps_output_norms)
    kept = {k: v for k, v in state_dict.items() if k not in dropped}
    convert = {'convnext_dense': dict, 'facebook': to_facebook, 'timm': to_timm, 'mmpretrain': to_mmpretrain}[layout]
    return convert(kept), dropped


def minkowski_kernel_to_conv_weight(kernel: torch.Tensor) -> torch.Tensor:
    """A MinkowskiEngine 2-D convolution kernel as the ``nn.Conv2d`` weight the official fine-tuning makes of it.

    Args:
        kernel: ``(k*k, C_in, C_out)`` for a convolution or ``(k*k, C)`` for a depthwise one.

    Returns:
        ``(C_out, C_in, k, k)``, or ``(C, 1, k, k)`` for a depthwise kernel; the same values, reordered.

    Raises:
        UnknownCheckpointLayoutError: The first axis is not a square number of kernel offsets.
    """
    size = math.isqrt(kernel.shape[0])
    if kernel.dim() not in (2, 3) or size * size != kernel.shape[0]:
        raise UnknownCheckpointLayoutError(
            f'FCMAE kernel of shape {list(kernel.shape)} is not (k*k, C) or (k*k, C_in, C_out).')
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(1)  # depthwise: one input channel per group
    # The first axis enumerates kernel offsets with the width offset outermost (as the official
    # remap_checkpoint_keys reads it), hence (kw, kh, C_in, C_out) -> (C_out, C_in, kh, kw).
    return kernel.reshape(size, size, *kernel.shape[1:]).permute(3, 2, 1, 0).contiguous()


def _remap_fcmae_tensor(name: str, value: torch.Tensor) -> Tuple[str, torch.Tensor]:
    """One encoder tensor of an FCMAE checkpoint under our name and shape (``encoder.`` already removed)."""
    parts = name.split('.')
    if parts[-1] == 'kernel':
        return '.'.join(parts[:-1] + ['weight']), minkowski_kernel_to_conv_weight(value)
    if len(parts) > 1 and parts[-2] in ('ln', 'linear'):  # MinkowskiLayerNorm / MinkowskiLinear wrappers
        del parts[-2]
    key = '.'.join(parts)
    if key.endswith('.bias') and value.dim() != 1:  # sparse conv biases are (1, C)
        return key, value.reshape(-1)
    if '.grn.' in key:  # sparse GRN is (1, C), some released files (C,); dense GRN is (1, 1, 1, C)
        return key, value.reshape(1, 1, 1, -1)
    return key, value


def is_fcmae(state_dict: Mapping[str, Any]) -> bool:
    """Whether backbone-level keys are an FCMAE pre-training checkpoint, sparse or with dense names.

    Args:
        state_dict: Unwrapped tensors, any ``backbone.`` prefix removed.
    """
    if any(_FCMAE_KEY.search(k) for k in state_dict):
        return True
    # The released pre-trained-only files use the dense names but keep GRN as (1, C) or (C,); the
    # fine-tuned files (and ours) store (1, 1, 1, C), and mmpretrain's vectors sit beside depthwise_conv.
    dense_names = any(k.startswith('downsample_layers.') for k in state_dict) and not any(
        '.depthwise_conv.' in k for k in state_dict)
    return dense_names and any('.grn.' in k and isinstance(v, torch.Tensor) and v.dim() < 4
                               for k, v in state_dict.items())


def convert_fcmae(state_dict: Mapping[str, Any], source_prefix: str = '') -> Conversion:
    """Converts a ConvNeXt V2 FCMAE pre-training checkpoint to our names, as the official fine-tuning does.

    The encoder (under ``encoder.`` when saved by ``fcmae.py``) is a MinkowskiEngine network: depthwise
    kernels ``(49, C)``, downsample kernels ``(4, C_in, C_out)``, biases ``(1, C)``, LayerNorms under
    ``.ln.``, linears under ``.linear.``, GRN ``(1, C)``. Kernels become conv weights
    (:func:`minkowski_kernel_to_conv_weight`), the wrapper names are dropped, biases flattened and GRN made
    ``(1, 1, 1, C)``; values are unchanged. The decoder, ``proj``, ``pred`` and ``mask_token`` (and any
    classifier ``head`` / ``norm``) are ignored.

    Args:
        state_dict: Unwrapped tensors (a pure function: not modified).
        source_prefix: Put back on reported source keys so they read as in the file.
    """
    converted: Dict[str, torch.Tensor] = {}
    renamed: List[Tuple[str, str]] = []
    ignored: List[str] = []
    leftover: List[str] = []
    for key, value in state_dict.items():
        name = key[len('encoder.'):] if key.startswith('encoder.') else key
        if name.startswith(FCMAE_PRETRAINING_ONLY + ('head.', 'norm.')):
            ignored.append(source_prefix + key)
            continue
        if not isinstance(value, torch.Tensor):
            leftover.append(source_prefix + key)
            continue
        new_key, new_value = _remap_fcmae_tensor(name, value)
        if not _OUR_KEY.match(new_key):
            leftover.append(source_prefix + key)
            continue
        converted[new_key] = new_value
        if source_prefix + key != new_key:
            renamed.append((source_prefix + key, new_key))
    return Conversion('fcmae', converted, renamed, ignored, leftover)


def convert_state_dict(checkpoint: Mapping[str, Any], prefix: Optional[str] = None,
                       ema: bool = False) -> Conversion:
    """Converts a checkpoint of any supported layout to our parameter names (pure: inputs unchanged).

    Args:
        checkpoint: A loaded checkpoint or state dict, wrapped or not.
        prefix: Take only the keys under this prefix (init_cfg ``prefix``; ``''``: every key, as it is); by
            default a ``backbone.`` prefix (``visual.trunk.`` in an open_clip model) is detected and every
            other key is ignored as not belonging to the backbone. The classifier's final norm is recognised
            the same way in every case.
        ema: Prefer EMA weights when the checkpoint holds both.

    Returns:
        The converted tensors with the renames, ignored keys and leftovers.
    """
    state_dict, _ = unwrap_checkpoint(checkpoint, ema=ema)
    state_dict = strip_wrapper_prefixes(state_dict)
    ignored: List[str] = []
    # A model whose backbone is another layout under a prefix of its own (open_clip's image tower).
    nesting = public_layouts.detect_public_layout(list(state_dict)) if prefix is None else None
    nesting = nesting if nesting is not None and nesting.nested else None
    backbone_prefix = nesting.nested[0] if nesting else 'backbone.'
    if prefix is None and any(k.startswith(backbone_prefix) for k in state_dict):
        ignored = [k for k in state_dict if not k.startswith(backbone_prefix)]
        prefix = backbone_prefix
    # Put back on reported source keys so they read as in the file.
    source_prefix = (prefix if prefix.endswith('.') else prefix + '.') if prefix else ''
    # The classifier head sits beside the backbone (``head.*`` next to ``backbone.*``, or at the top of a
    # bare file): looked up there whatever the prefix, so one file loads the same norms with or without it.
    has_classifier_head = any(k.startswith(_sibling(source_prefix, 'head.')) for k in state_dict)
    if source_prefix:
        state_dict = select_prefix(state_dict, source_prefix)
    public = public_layouts.detect_public_layout(list(state_dict))
    if public is not None and not public.nested:
        layout = public.name
    else:
        layout = 'fcmae' if is_fcmae(state_dict) else detect_layout(list(state_dict))
    if layout == 'fcmae':
        conversion = convert_fcmae(state_dict, source_prefix)
        conversion.ignored[:0] = ignored
        return conversion
    rename = {'timm': _rename_timm, 'mmpretrain': _rename_mmpretrain}.get(layout, _rename_official)
    reshape = public_layouts.keep_shape
    if layout in public_layouts.PUBLIC_LAYOUTS:
        rename, reshape = public.rename_to_ours, public.reshape_to_ours
    output_norms = {k for k in state_dict if _OUTPUT_NORM.match(k)}
    classifier_final_norm = (layout == 'mmpretrain' and has_classifier_head
                             and {k.split('.')[0] for k in output_norms} == {'norm3'})
    notes = [CLASSIFIER_FINAL_NORM_NOTE] if classifier_final_norm else []

    converted: Dict[str, torch.Tensor] = {}
    renamed: List[Tuple[str, str]] = []
    leftover: List[str] = []
    for key, value in state_dict.items():
        new_key = None if (classifier_final_norm and key in output_norms) else rename(key)
        if new_key is None:
            ignored.append(source_prefix + key)
        elif not _OUR_KEY.match(new_key) or not isinstance(value, torch.Tensor):
            leftover.append(source_prefix + key)
        else:
            converted[new_key] = _to_our_shape(new_key, reshape(new_key, value))
            if source_prefix + key != new_key:
                renamed.append((source_prefix + key, new_key))
    if nesting is not None and prefix == nesting.nested[0] and layout == nesting.nested[1]:
        layout = nesting.name
        notes.append(f'{nesting.name}: {nesting.description}')
    return Conversion(layout, converted, renamed, ignored, leftover, notes)


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Describes the arch of converted tensors: an ``ARCH_SETTINGS`` name or its depths and channels."""
    depths: Dict[int, int] = defaultdict(int)
    channels: Dict[int, int] = {}
    for key, value in state_dict.items():
        match = re.match(r'stages\.(\d+)\.(\d+)\.dwconv\.weight$', key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths[stage], block + 1)
            channels[stage] = value.shape[0]
    shape = (tuple(depths[s] for s in sorted(depths)), tuple(channels[s] for s in sorted(channels)))
    version = ' (V2, GRN)' if any('.grn.' in k for k in state_dict) else ''
    if not depths:
        return 'unknown: it holds no ConvNeXt block (stages.<i>.<j>.dwconv.weight)'
    for name, setting in ARCH_SETTINGS.items():
        if tuple(map(tuple, setting)) == shape:
            return f'{name!r}{version}'
    return f'dict(depths={shape[0]}, channels={shape[1]}){version}'


def compare_with_model(conversion: Conversion, model_shapes: Mapping[str, Tuple[int, ...]],
                       source: str = '') -> LoadReport:
    """Sorts converted keys against a model's ``{key: shape}`` into a :class:`LoadReport` (pure).

    Output norms ``norm{i}`` the model has but the checkpoint lacks are ``initialized`` (facebook and timm
    files have none); output norms of stages the model does not return are ``ignored``.
    """
    report = LoadReport(source=source, layout=conversion.layout, ignored=list(conversion.ignored),
                        unexpected=list(conversion.leftover), notes=list(conversion.notes))
    for key, value in conversion.state_dict.items():
        if key not in model_shapes:
            (report.ignored if _OUTPUT_NORM.match(key) else report.unexpected).append(key)
        elif tuple(value.shape) != tuple(model_shapes[key]):
            report.mismatched.append((key, tuple(value.shape), tuple(model_shapes[key])))
        else:
            report.loaded.append(key)
    for key in model_shapes:
        if key not in conversion.state_dict:
            (report.initialized if _OUTPUT_NORM.match(key) else report.missing).append(key)
    return report


def _refusal(report: LoadReport, conversion: Conversion, model_arch: Any) -> Optional[str]:
    """The error message for a load that would be partial or wrong, or None when it is sound."""
    foreign = [k for k in report.unexpected if k.startswith(('stages.', 'downsample_layers.'))]
    if not (report.mismatched or report.missing or foreign):
        return None
    lines = [f'refusing to load {report.source} ({report.layout} layout) into ConvNeXt(arch={model_arch!r}): '
             f'the checkpoint seems to be arch {guess_arch(conversion.state_dict)}; nothing was loaded.']
    if report.mismatched:
        lines.append(f'  {len(report.mismatched)} shape mismatches, first: ' + ', '.join(
            f'{k} checkpoint {list(s)} vs model {list(m)}' for k, s, m in report.mismatched[:3]))
    if report.missing:
        lines.append(f'  {len(report.missing)} model keys missing from the checkpoint, first: '
                     + ', '.join(report.missing[:3]))
    if foreign:
        lines.append(f'  {len(foreign)} backbone keys the model lacks, first: ' + ', '.join(foreign[:3]))
    lines.append('  Pick the matching arch, use_grn (V2) and layer_scale_init_value (0 for V2), or another '
                 'checkpoint.')
    return '\n'.join(lines)


def load_checkpoint_file(filename: str, map_location: Any = 'cpu') -> Any:
    """Reads a local file (safetensors or a torch pickle), a URL or a Hugging Face Hub name, pickles with
    ``weights_only=True``.

    Raises:
        FileNotFoundError: A local ``filename`` that does not exist.
    """
    if is_hub_name(filename):
        filename = resolve_hub_name(filename)
    if filename.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(filename, map_location=map_location, weights_only=True)
    if '://' in filename:  # open-mmlab://, s3://, ...: mmengine's loaders
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    path = os.path.expanduser(filename)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f'ConvNeXt init_cfg checkpoint not found: {filename}. Fix the path in '
                                f"init_cfg=dict(type='Pretrained', checkpoint=...) or download the file.")
    return read_weights_file(path, map_location=map_location)


def load_pretrained(model: nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location: Any = 'cpu', ema: bool = False) -> LoadReport:
    """Loads a pretrained checkpoint of any supported layout into a ConvNeXt and logs a report.

    Args:
        model: The backbone to fill.
        checkpoint: Local path, URL or ``hf-hub:ORG/NAME[@REVISION]``.
        prefix: Only keys under this prefix, stripped (mmengine init_cfg ``prefix``).
        map_location: Passed to ``torch.load``.
        ema: Prefer EMA weights when the checkpoint holds both.

    Returns:
        The :class:`LoadReport` that was logged.

    Raises:
        FileNotFoundError: ``checkpoint`` is a local path that does not exist.
        CheckpointMismatchError: Shape mismatches, missing backbone keys or backbone keys the model lacks
            (e.g. a base checkpoint into a tiny model); the model is left untouched.
    """
    conversion = convert_state_dict(load_checkpoint_file(checkpoint, map_location), prefix=prefix, ema=ema)
    model_state = model.state_dict()
    report = compare_with_model(conversion, {k: tuple(v.shape) for k, v in model_state.items()},
                                source=str(checkpoint))
    message = _refusal(report, conversion, getattr(model, 'arch', '?'))
    if message:
        raise CheckpointMismatchError(message)
    with torch.no_grad():
        for key in report.loaded:
            model_state[key].copy_(conversion.state_dict[key])
    print_log(report.summary(), logger=MMLogger.get_current_instance())
    return report
