"""Whole-model checkpoints (detectors, segmentors) whose ConvNeXt backbone is stored under another layout.

Released dense-prediction checkpoints hold the backbone under a ``backbone.`` prefix in one of two layouts:

- mmdet 3.x / mmseg 1.x models built with ``mmpretrain.ConvNeXt``: ``stages.i.j.depthwise_conv``,
  ``pointwise_conv{1,2}``, GRN ``gamma``/``beta`` of shape (C,). Renamed and reshaped here.
- the paper authors' mmdet 2.x / mmseg 0.x releases: the official (facebook) backbone names, which are ours,
  so nothing is renamed. Their FPN, RPN, RoI heads (``Shared4Conv1FCBBoxHead``, ``FCNMaskHead``), UPerHead and
  FCNHead parameters carry the same names in mmdet 3.x and mmseg 1.x, so neck and heads load as they are.

Only the keys under a backbone's prefix change; every other key (neck, heads, buffers) is kept. The renaming
reuses ``checkpoint.convert_state_dict``, so a whole model and a pretrained backbone follow the same rules
(classifier final norm, V2 shapes). Everything here is pure but :func:`rename_foreign_keys_hook`, which
``ConvNeXt`` registers as a load_state_dict pre-hook, so mmengine's ``load_from``, ``--resume`` and
``load_checkpoint`` all see our names.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from convnext_dense.checkpoint.public_layouts import PUBLIC_LAYOUTS
from convnext_dense.models.checkpoint import convert_state_dict, summarize_keys, summarize_mismatches

#: Backbone layouts whose keys are renamed inside a whole model (ours and facebook's need nothing).
FOREIGN_LAYOUTS = ('mmpretrain', 'timm') + tuple(PUBLIC_LAYOUTS)
#: How each known layout is described in reports and errors.
LAYOUT_ORIGINS = {
    'mmpretrain': 'mmpretrain names, as mmdet 3.x / mmseg 1.x save models built with mmpretrain.ConvNeXt',
    'timm': 'timm names',
    'facebook': "the official names, as the authors' mmdet 2.x / mmseg 0.x releases",
    'convnext_dense': "this package's names (the official ones)",
    **{name: f'{name} names ({layout.description})' for name, layout in PUBLIC_LAYOUTS.items()},
}


@dataclass
class BackboneRename:
    """The keys under one backbone prefix after renaming (see :func:`rename_backbone`).

    Args:
        prefix: The backbone's prefix in the whole model, e.g. ``'backbone.'``.
        layout: The layout its keys were found in.
        state_dict: Its keys after renaming, prefix included; unrecognised keys kept under their names.
        renamed: ``(source key, new key)``, both prefixed, for every key whose name changed.
        reshaped: New keys whose tensor changed shape (GRN (C,) to (1, 1, 1, C), 1x1 convs to linear).
        ignored: Source keys dropped (a classifier's final norm, a classifier head under the prefix).
        notes: Rules that decided what was ignored.
    """

    prefix: str
    layout: str
    state_dict: Dict[str, Any]
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        """Whether the renamed keys differ from the source's in any name, shape or count."""
        return bool(self.renamed or self.reshaped or self.ignored)


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
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        state_dict = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    try:
        conversion = convert_state_dict(state_dict, prefix=prefix)
    except (KeyError, ValueError):  # keys of no ConvNeXt layout: not ours to rename
        return None
    result = BackboneRename(prefix=prefix, layout=conversion.layout, state_dict={},
                            ignored=list(conversion.ignored), notes=list(conversion.notes))
    sources = {prefix + ours: source for source, ours in conversion.renamed}
    for ours, value in conversion.state_dict.items():
        key = prefix + ours
        source = sources.get(key, key)
        result.state_dict[key] = value
        if source != key:
            result.renamed.append((source, key))
        original = state_dict.get(source)
        if original is not None and tuple(value.shape) != tuple(original.shape):
            result.reshaped.append(key)
    for key in conversion.leftover:  # left for the model's own missing / unexpected bookkeeping
        if key in state_dict:
            result.state_dict[key] = state_dict[key]
    return result


def rename_whole_model(state_dict: Mapping[str, Any], prefixes: Iterable[str] = ('backbone.',)
                       ) -> Tuple[Dict[str, Any], List[BackboneRename]]:
    """Renames every backbone of a whole model; all keys outside the backbones are kept (pure).

    Args:
        state_dict: A whole model's state dict (no wrapper).
        prefixes: The prefixes of the model's ConvNeXt backbones (:func:`backbone_prefixes`).

    Returns:
        The renamed state dict (the keys outside the backbones, then each backbone's) and one
        :class:`BackboneRename` per prefix that holds ConvNeXt keys.
    """
    renames = [r for r in (rename_backbone(state_dict, p) for p in prefixes) if r is not None]
    renamed_prefixes = tuple(r.prefix for r in renames)
    renamed_state = {k: v for k, v in state_dict.items() if not k.startswith(renamed_prefixes)}
    for rename in renames:
        renamed_state.update(rename.state_dict)
    return renamed_state, renames


def rename_foreign_keys_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook of ConvNeXt: renames its keys of another known layout in place, logs a report.

    It runs inside every ``load_state_dict`` (mmengine's ``load_from``, ``--resume``, ``load_checkpoint``),
    which would otherwise skip the foreign keys with a warning, or fail on them when strict. The state dict
    it gets holds this module's keys only (torch and mmengine hand each child its own part).
    """
    rename = rename_backbone(state_dict, prefix)
    if rename is None or not rename.changes_anything:
        return
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    state_dict.update(rename.state_dict)
    shapes = {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}
    report = compare_whole_model(rename.state_dict, [rename], shapes)
    print_log(report.summary(), logger='current', level=logging.INFO if report.fits else logging.WARNING)


def backbone_prefixes(model: nn.Module) -> List[str]:
    """The prefixes (``'backbone.'``, ...) of every ConvNeXt inside ``model`` (``''`` for the model itself)."""
    from convnext_dense.models.convnext import ConvNeXt
    return [f'{name}.' if name else '' for name, module in model.named_modules() if isinstance(module, ConvNeXt)]


@dataclass
class WholeModelReport:
    """What loading a whole-model checkpoint into a model renames, loads, ignores and misses.

    Args:
        source: The checkpoint path, for the message.
        layouts: ``{backbone prefix: layout found}``.
        renamed: ``(source key, our key)`` for every renamed key.
        reshaped: Our keys whose tensors were reshaped.
        ignored: Source keys dropped on purpose.
        loaded: Model keys the checkpoint fills, with their shapes.
        missing: Model keys the checkpoint lacks.
        unexpected: Checkpoint keys the model has no place for.
        mismatched: ``(key, checkpoint shape, model shape)``.
        notes: Rules that decided what was ignored.
    """

    source: str
    layouts: Dict[str, str] = field(default_factory=dict)
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Every model key loaded with its shape."""
        return not (self.missing or self.mismatched)

    def summary(self) -> str:
        """One line per category, as :class:`~convnext_dense.models.checkpoint.LoadReport` writes them."""
        layouts = ', '.join(f'{prefix or "(root)"} {layout}' for prefix, layout in self.layouts.items())
        examples = ''.join(f'{s} -> {d}, ' for s, d in self.renamed[:2])
        return '\n'.join([
            f'ConvNeXt weights{" from " + self.source if self.source else ""} (backbone layout: '
            f'{layouts or "none"}): renamed {len(self.renamed)} keys{f" ({examples}...)" if examples else ""}, '
            f'reshaped {len(self.reshaped)}, loaded {len(self.loaded)} tensors',
            f'  ignored: {summarize_keys(self.ignored)}',
            f'  missing: {summarize_keys(self.missing)}',
            f'  unexpected: {summarize_keys(self.unexpected)}',
            f'  shape mismatched: {summarize_mismatches(self.mismatched)}',
        ] + [f'  note: {note}' for note in self.notes])


def compare_whole_model(state_dict: Mapping[str, Any], renames: Sequence[BackboneRename],
                        model_shapes: Mapping[str, Tuple[int, ...]], source: str = '') -> WholeModelReport:
    """Sorts a renamed whole-model state dict against a model's ``{key: shape}`` (pure).

    Args:
        state_dict: The state dict after :func:`rename_whole_model`.
        renames: What :func:`rename_whole_model` renamed.
        model_shapes: The model's keys and shapes (buffers included).
        source: The checkpoint path, for the message.
    """
    report = WholeModelReport(source=source, layouts={r.prefix: r.layout for r in renames})
    for rename in renames:
        report.renamed += rename.renamed
        report.reshaped += rename.reshaped
        report.ignored += rename.ignored
        report.notes += [n for n in rename.notes if n not in report.notes]
    for key, value in state_dict.items():
        if key not in model_shapes:
            report.unexpected.append(key)
        elif tuple(getattr(value, 'shape', ())) != tuple(model_shapes[key]):
            report.mismatched.append((key, tuple(getattr(value, 'shape', ())), tuple(model_shapes[key])))
        else:
            report.loaded.append(key)
    report.missing = [k for k in model_shapes if k not in state_dict]
    return report


def explain_misfit(state_dict: Mapping[str, Any], report: WholeModelReport, prefixes: Sequence[str]
                   ) -> Optional[str]:
    """Why a checkpoint of a known ConvNeXt layout does not fit a whole model, and what to do instead.

    Args:
        state_dict: The checkpoint's state dict, as in the file.
        report: :func:`compare_whole_model`'s report of it against the model.
        prefixes: The model's ConvNeXt prefixes.

    Returns:
        One sentence, or None when the file is of no known ConvNeXt layout or only its neck or heads differ.
    """
    from convnext_dense.models.checkpoint import guess_arch
    backbones = tuple(p for p in prefixes if p)
    if not any(not k.startswith(backbones) for k in report.loaded):  # no neck, no head: a backbone file
        try:
            conversion = convert_state_dict(state_dict)
        except (KeyError, ValueError):
            return None
        return (f'it holds a ConvNeXt backbone only ({conversion.layout} layout, arch '
                f'{guess_arch(conversion.state_dict)}), not a trained detector or segmentor; start a training '
                f"from it with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=FILE) (converted as "
                f'it loads), or pass a whole-model checkpoint')
    misfit = [k for k in report.missing + [key for key, _, _ in report.mismatched] if k.startswith(backbones)]
    prefix = next((p for p in report.layouts if any(k.startswith(p) for k in misfit)), None)
    if prefix is None:
        return None
    layout = report.layouts[prefix]
    backbone = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    arch = guess_arch(convert_state_dict(backbone, prefix='').state_dict)
    verb = 'were renamed from' if layout in FOREIGN_LAYOUTS else 'are in'
    return (f'its {prefix}* keys {verb} {LAYOUT_ORIGINS[layout]}, and that backbone seems to be arch {arch}: '
            f'pass the config of that arch (for ConvNeXt V2, use_grn=True and layer_scale_init_value=0)')
