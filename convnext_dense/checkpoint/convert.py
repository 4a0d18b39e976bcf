"""A checkpoint of any known layout as our backbone's tensors (pure): unwrapping, prefixes, renaming.

Wrappers (``state_dict``, ``model``, ``module``, ``state_dict_ema``, ``model_ema``) and the ``module.``
(DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are removed first; a ``backbone.`` prefix is detected
(or an init_cfg ``prefix`` selects the keys); the layout is detected in the one table
(:data:`~convnext_dense.checkpoint.layouts.LAYOUTS`) and its renames applied. The result, a
:class:`Conversion`, says what was renamed, reshaped, ignored and left over.
"""
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from convnext_dense.arch import ARCH_SETTINGS
from convnext_dense.checkpoint.layouts import LAYOUTS, OUR_KEY, OUTPUT_NORM, Layout, detect_layout
from convnext_dense.errors import CheckpointFormatError, CheckpointKeyError

#: Top-level wrappers of a state dict, main weights first (the official weights are the non-EMA ones).
STATE_DICT_KEYS = ('state_dict', 'model', 'module')
EMA_STATE_DICT_KEYS = ('state_dict_ema', 'model_ema')
_ORIG_MOD = re.compile(r'(^|\.)_orig_mod\.')
_BLOCK_DWCONV = re.compile(r'stages\.(\d+)\.(\d+)\.dwconv\.weight$')

CLASSIFIER_FINAL_NORM_NOTE = (
    "norm3 of an mmpretrain classifier (a file with head.* beside the backbone) is its post-pooling final "
    "norm, not an output norm: ignored with or without init_cfg prefix, like the official classifier's norm")


@dataclass
class Conversion:
    """The result of :func:`convert_state_dict`: a backbone's tensors under our names.

    Args:
        layout: Name of the detected source layout (a key of ``LAYOUTS``).
        state_dict: Backbone tensors under our parameter names (no prefix).
        renamed: ``(source key, our key)`` for every key whose name changed (prefix removal included).
        ignored: Source keys deliberately dropped: classifier head, final norm, non-backbone modules.
        leftover: Source keys that match no known backbone parameter (not in ``state_dict``).
        notes: Rules that decided what was ignored, for the report.
        reshaped: Our keys whose tensor changed shape (GRN vectors, 1x1-conv MLPs, FCMAE kernels).
    """

    layout: str
    state_dict: Dict[str, torch.Tensor]
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    leftover: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)


def unwrap_checkpoint(checkpoint: Mapping[str, Any], ema: bool = False) -> Tuple[Dict[str, Any], str]:
    """Returns the state dict inside a checkpoint and the wrapper key it came from (``''`` if bare).

    Args:
        checkpoint: What ``torch.load`` returned.
        ema: Prefer the EMA weights (``state_dict_ema`` / ``model_ema``) when both are present.

    Raises:
        CheckpointFormatError: No state dict found; the message lists the checkpoint's top-level keys.
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
    raise CheckpointFormatError(f'no state dict in checkpoint: top-level keys are '
                                f'{sorted(map(str, checkpoint))[:10]}; expected a dict of tensors or one under '
                                f'{list(order)}.')


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Removes DDP's leading ``module.`` and every ``_orig_mod.`` segment that ``torch.compile`` adds."""
    stripped = {}
    for key, value in state_dict.items():
        key = _ORIG_MOD.sub(r'\1', key)
        while key.startswith('module.'):
            key = key[len('module.'):]
        stripped[key] = value
    return stripped


def model_state_dict(checkpoint: Mapping[str, Any], ema: bool = False) -> Dict[str, Any]:
    """The weights of a loaded checkpoint: unwrapped, without DDP's and ``torch.compile``'s prefixes.

    The ``_metadata`` that ``torch.save`` keeps beside a state dict (module versions) is carried over.
    """
    state_dict, _ = unwrap_checkpoint(checkpoint, ema=ema)
    return with_metadata_of(state_dict, strip_wrapper_prefixes(state_dict))


def with_metadata_of(source: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """``state_dict`` as an ``OrderedDict`` carrying the ``_metadata`` of ``source`` (if it has one)."""
    result = OrderedDict(state_dict)
    metadata = getattr(source, '_metadata', None)
    if metadata is not None:
        result._metadata = metadata
    return result


def select_prefix(state_dict: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """Keeps the keys under ``prefix`` with the prefix removed (mmengine's init_cfg ``prefix`` semantics).

    Raises:
        CheckpointKeyError: No key starts with ``prefix``; the message lists the prefixes that exist.
    """
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        roots = sorted({k.split('.')[0] + '.' for k in state_dict})
        raise CheckpointKeyError(f'init_cfg prefix {prefix!r} matches no key of the checkpoint; its top-level '
                                 f'prefixes are {roots[:10]}. Fix the prefix or remove it.')
    return selected


def _sibling(prefix: str, name: str) -> str:
    """``name`` beside the module at ``prefix``: ``('backbone.', 'head.')`` -> ``'head.'``,
    ``('model.backbone.', 'head.')`` -> ``'model.head.'``, ``('', 'head.')`` -> ``'head.'``."""
    parent = prefix.rstrip('.').rpartition('.')[0]
    return f'{parent}.{name}' if parent else name


def convert_with(layout: Layout, state_dict: Mapping[str, Any], source_prefix: str = '',
                 has_classifier_head: bool = False) -> Conversion:
    """Renames backbone-level keys of a known layout to ours (pure: inputs unchanged).

    Args:
        layout: The layout of ``state_dict``.
        state_dict: Backbone-level keys (prefix removed) and tensors.
        source_prefix: Put back on reported source keys so they read as in the file.
        has_classifier_head: The file holds a classifier ``head.*`` beside the backbone, so the layout's
            ``classifier_norm`` is the classifier's final norm when it is the only output norm.
    """
    output_norms = {k for k in state_dict if OUTPUT_NORM.match(k)}
    final_norm = (layout.classifier_norm is not None and has_classifier_head
                  and {k.split('.')[0] for k in output_norms} == {layout.classifier_norm})
    conversion = Conversion(layout.name, {}, notes=[CLASSIFIER_FINAL_NORM_NOTE] if final_norm else [])
    for key, value in state_dict.items():
        source_key = source_prefix + key
        our_key = None if (final_norm and key in output_norms) else layout.key_to_ours(key)
        if our_key is None:
            conversion.ignored.append(source_key)
        elif not OUR_KEY.match(our_key) or not isinstance(value, torch.Tensor):
            conversion.leftover.append(source_key)
        else:
            converted = layout.tensor_to_ours(key, our_key, value)
            conversion.state_dict[our_key] = converted
            if source_key != our_key:
                conversion.renamed.append((source_key, our_key))
            if tuple(converted.shape) != tuple(value.shape):
                conversion.reshaped.append(our_key)
    return conversion


def convert_fcmae(state_dict: Mapping[str, Any], source_prefix: str = '') -> Conversion:
    """Converts a ConvNeXt V2 FCMAE pre-training checkpoint as the official fine-tuning does (see ``fcmae.py``).

    Args:
        state_dict: Unwrapped tensors (a pure function: not modified).
        source_prefix: Put back on reported source keys so they read as in the file.
    """
    return convert_with(LAYOUTS['fcmae'], state_dict, source_prefix)


def convert_state_dict(checkpoint: Mapping[str, Any], prefix: Optional[str] = None,
                       ema: bool = False) -> Conversion:
    """Converts a checkpoint of any known layout to our parameter names (pure: inputs unchanged).

    Args:
        checkpoint: A loaded checkpoint or state dict, wrapped or not.
        prefix: Take only the keys under this prefix (init_cfg ``prefix``; ``''``: every key, as it is); by
            default a ``backbone.`` prefix is detected and every other key is ignored as not belonging to
            the backbone. The classifier's final norm is recognised the same way in every case.
        ema: Prefer EMA weights when the checkpoint holds both.

    Returns:
        The converted tensors with the renames, ignored keys and leftovers.

    Raises:
        CheckpointFormatError: No state dict in ``checkpoint``; UnknownCheckpointLayoutError (a subclass)
            when its keys are of no known layout.
        CheckpointKeyError: ``prefix`` matches no key.
    """
    state_dict = model_state_dict(checkpoint, ema=ema)
    outside: List[str] = []
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        outside = [k for k in state_dict if not k.startswith('backbone.')]
        prefix = 'backbone.'
    source_prefix = (prefix if prefix.endswith('.') else prefix + '.') if prefix else ''
    # The classifier head sits beside the backbone (``head.*`` next to ``backbone.*``, or at the top of a
    # bare file): looked up there whatever the prefix, so one file loads the same norms with or without it.
    has_classifier_head = any(k.startswith(_sibling(source_prefix, 'head.')) for k in state_dict)
    if source_prefix:
        state_dict = select_prefix(state_dict, source_prefix)
    conversion = convert_with(detect_layout(state_dict), state_dict, source_prefix, has_classifier_head)
    conversion.ignored[:0] = outside
    return conversion


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Describes the arch of converted tensors: an ``ARCH_SETTINGS`` name or its depths and channels."""
    depths: Dict[int, int] = defaultdict(int)
    channels: Dict[int, int] = {}
    for key, value in state_dict.items():
        match = _BLOCK_DWCONV.match(key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths[stage], block + 1)
            channels[stage] = value.shape[0]
    if not depths:
        return 'unknown: it holds no ConvNeXt block (stages.<i>.<j>.dwconv.weight)'
    shape = (tuple(depths[s] for s in sorted(depths)), tuple(channels[s] for s in sorted(channels)))
    version = ' (V2, GRN)' if any('.grn.' in k for k in state_dict) else ''
    for name, setting in ARCH_SETTINGS.items():
        if tuple(map(tuple, setting)) == shape:
            return f'{name!r}{version}'
    return f'dict(depths={shape[0]}, channels={shape[1]}){version}'


def from_ours(state_dict: Mapping[str, torch.Tensor], layout: str) -> Dict[str, torch.Tensor]:
    """Our backbone's tensors in another layout (pure).

    Args:
        state_dict: A state dict of our ConvNeXt.
        layout: A name of ``LAYOUTS`` whose entry can be written.

    Raises:
        CheckpointFormatError: An unknown layout or one that is read only.
    """
    entry = LAYOUTS.get(layout)
    if entry is None or entry.from_ours is None:
        writable = [name for name, known in LAYOUTS.items() if known.from_ours is not None]
        raise CheckpointFormatError(f'cannot write layout {layout!r}; choose one of {writable}.')
    return entry.from_ours(state_dict)

