"""Whole-model checkpoints (detectors, segmentors) whose ConvNeXt backbone is stored in another layout.

Released dense-prediction checkpoints hold the backbone under a ``backbone.`` prefix in one of two layouts:

- mmdet 3.x / mmseg 1.x models built with ``mmpretrain.ConvNeXt``: ``stages.i.j.depthwise_conv``,
  ``pointwise_conv{1,2}``, GRN ``gamma``/``beta`` of shape (C,) as ours. Renamed here.
- the paper authors' mmdet 2.x / mmseg 0.x releases: the official (facebook) backbone names, which are ours,
  so nothing is renamed (a V2 GRN stored (1, 1, 1, C) is flattened). Their neck and head keys go through
  :func:`~convnext_dense.checkpoint.legacy.rename_legacy_keys` here, whose table is empty: FPN, RPN, RoI heads
  (``Shared4Conv1FCBBoxHead``, ``FCNMaskHead``), UPerHead and FCNHead carry the same names in mmdet 3.x and
  mmseg 1.x (see ``legacy.py``).

Apart from the legacy table's renames, only the keys under a backbone's prefix change; every other key (neck,
heads, buffers) is kept. The renaming is :func:`~convnext_dense.checkpoint.convert.convert_state_dict`'s, so a
whole model and a pretrained backbone follow the same rules (classifier final norm, V2 shapes). Everything here is pure; the backbones of a model
are found by their parameter names, so this package never imports the model.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from convnext_dense.checkpoint.convert import convert_state_dict
from convnext_dense.checkpoint.legacy import LEGACY_KEY_RENAMES, rename_legacy_keys
from convnext_dense.errors import CheckpointError

# Two parameters every ConvNeXt of this package has under its prefix (mmpretrain's has depthwise_conv).
_STEM_KEY = 'downsample_layers.0.0.weight'
_BLOCK_KEY = 'stages.0.0.dwconv.weight'


@dataclass
class BackboneRename:
    """The keys under one backbone prefix after renaming (see :func:`rename_backbone`).

    Args:
        prefix: The backbone's prefix in the whole model, e.g. ``'backbone.'``; ``''`` for a bare backbone.
        layout: The layout its keys were found in.
        state_dict: Its keys after renaming, prefix included; unrecognised keys kept under their names.
        renamed: ``(source key, new key)``, both prefixed, for every key whose name changed.
        reshaped: New keys whose tensor changed shape (layer scale and GRN to (C,), 1x1 convs to linear).
        ignored: Source keys dropped (a classifier's final norm, a classifier head under the prefix).
        notes: Rules that decided what was ignored.
        our_keys: The backbone's tensors under our names without the prefix (for naming its arch).
    """

    prefix: str
    layout: str
    state_dict: Dict[str, Any]
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    our_keys: Dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def changes_anything(self) -> bool:
        """Whether the renamed keys differ from the source's in any name, shape or count."""
        return bool(self.renamed or self.reshaped or self.ignored)


def backbone_prefixes(model: Union[nn.Module, Iterable[str]]) -> List[str]:
    """The prefixes (``'backbone.'``, ...) of every ConvNeXt of this package in a model (``''`` for a bare one).

    Args:
        model: A module, or the keys of its state dict.
    """
    keys = set(model.state_dict() if isinstance(model, nn.Module) else model)
    return [key[:-len(_STEM_KEY)] for key in sorted(keys)
            if key.endswith(_STEM_KEY) and key[:-len(_STEM_KEY)] + _BLOCK_KEY in keys]


def rename_backbone(state_dict: Mapping[str, Any], prefix: str) -> Optional[BackboneRename]:
    """Renames the keys under ``prefix`` from any known ConvNeXt layout to ours (pure).

    Args:
        state_dict: A whole model's state dict (no wrapper).
        prefix: Where the backbone sits, e.g. ``'backbone.'``; ``''`` for a bare backbone.

    Returns:
        The renamed keys, or None when no key is under ``prefix`` or they are of no ConvNeXt layout.
    """
    if not any(k.startswith(prefix) for k in state_dict):
        return None
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    try:
        conversion = convert_state_dict(tensors, prefix=prefix)
    except CheckpointError:  # keys of no ConvNeXt layout: not ours to rename
        return None
    result = BackboneRename(prefix=prefix, layout=conversion.layout, state_dict={}, ignored=conversion.ignored,
                            notes=conversion.notes, our_keys=conversion.state_dict,
                            reshaped=[prefix + key for key in conversion.reshaped])
    sources = {prefix + ours: source for source, ours in conversion.renamed}
    for ours, value in conversion.state_dict.items():
        key = prefix + ours
        result.state_dict[key] = value
        if sources.get(key, key) != key:
            result.renamed.append((sources[key], key))
    for key in conversion.leftover:  # left for the model's own missing / unexpected bookkeeping
        if key in state_dict:
            result.state_dict[key] = state_dict[key]
    return result


def rename_whole_model(state_dict: Mapping[str, Any], prefixes: Sequence[str] = ('backbone.',),
                       legacy_renames: Tuple[Tuple[str, str], ...] = LEGACY_KEY_RENAMES
                       ) -> Tuple[Dict[str, Any], List[BackboneRename]]:
    """Renames every backbone of a whole model, and mmdet 2.x / mmseg 0.x neck and head names; all other keys
    are kept (pure).

    Args:
        state_dict: A whole model's state dict (no wrapper).
        prefixes: The prefixes of the model's ConvNeXt backbones (:func:`backbone_prefixes`).
        legacy_renames: The mmdet 2.x / mmseg 0.x to 3.x / 1.x rules (:data:`legacy.LEGACY_KEY_RENAMES`).

    Returns:
        The renamed state dict (the keys outside the backbones, then each backbone's) and one
        :class:`BackboneRename` per prefix that holds ConvNeXt keys.
    """
    state_dict, _ = rename_legacy_keys(state_dict, legacy_renames)
    renames = [r for r in (rename_backbone(state_dict, p) for p in prefixes) if r is not None]
    renamed_prefixes = tuple(r.prefix for r in renames)
    renamed_state = {k: v for k, v in state_dict.items() if not k.startswith(renamed_prefixes)}
    for rename in renames:
        renamed_state.update(rename.state_dict)
    return renamed_state, renames
