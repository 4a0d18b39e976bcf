"""The one report of a checkpoint against a model: what loads, what is renamed, ignored, missing, and why a
file does not fit.

:func:`compare` sorts a checkpoint (already under the model's names) against the model's ``{key: shape}``
into a :class:`LoadReport`; :func:`explain_misfit` turns a report that does not fit into one line naming the
counts, the first offending keys and what the file seems to be. Both are pure.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from convnext_dense.checkpoint.layouts import LAYOUTS, OUTPUT_NORM

Shape = Tuple[int, ...]
Mismatch = Tuple[str, Shape, Shape]
#: Offending keys named in a misfit message before the rest is counted.
FIRST_NAMED = 3


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


@dataclass
class LoadReport:
    """A checkpoint sorted against a model: what loads, what was renamed, ignored or is missing.

    Args:
        source: The checkpoint path or URL.
        layouts: ``{backbone prefix in the model: layout found}`` (``''`` for a bare backbone).
        archs: ``{backbone prefix: arch the tensors describe}`` (``'tiny'``, ``dict(depths=...)``).
        model_prefixes: The prefixes of the model's ConvNeXt backbones.
        renamed: ``(source key, model key)`` for every renamed key.
        reshaped: Model keys whose tensors were reshaped.
        loaded: Model keys the checkpoint fills with their shapes.
        ignored: Source keys deliberately not loaded (classifier head, final norm, output norms of stages
            the model does not return, non-backbone modules of a pretrained file).
        initialized: Output norms ``norm{i}`` of a pretrained backbone absent from the file, left at init.
        missing: Other model keys absent from the checkpoint.
        unexpected: Checkpoint keys the model has no place for.
        mismatched: ``(model key, checkpoint shape, model shape)``.
        notes: Rules that decided what was ignored.
    """

    source: str = ''
    layouts: Dict[str, str] = field(default_factory=dict)
    archs: Dict[str, str] = field(default_factory=dict)
    model_prefixes: Tuple[str, ...] = ()
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)
    loaded: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    initialized: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Mismatch] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def layout(self) -> str:
        """The layout of a single backbone; several are joined with commas."""
        return ', '.join(dict.fromkeys(self.layouts.values())) or 'none'

    @property
    def foreign(self) -> List[str]:
        """Unexpected keys of a backbone's blocks or downsampling layers: the file has another arch."""
        return [k for k in self.unexpected for p in self.model_prefixes
                if k.startswith((p + 'stages.', p + 'downsample_layers.'))]

    @property
    def fits(self) -> bool:
        """Every model key loads with its shape, and no backbone block of the file is left out."""
        return not (self.missing or self.mismatched or self.foreign)

    def summary(self) -> str:
        """A compact multi-line description, one category per line."""
        layouts = ', '.join(f'{prefix} {layout}' if prefix else layout for prefix, layout in self.layouts.items())
        telling = sorted(self.renamed, key=lambda pair: pair[0].endswith(pair[1]))[:2]
        examples = ''.join(f'{source} -> {ours}, ' for source, ours in telling)
        return '\n'.join([
            f'ConvNeXt weights{" from " + self.source if self.source else ""} (backbone layout: '
            f'{layouts or "none"}): renamed {len(self.renamed)} keys{f" ({examples}...)" if examples else ""}, '
            f'reshaped {len(self.reshaped)}, loaded {len(self.loaded)} tensors',
            f'  ignored (classifier head / final norm / not backbone): {summarize_keys(self.ignored)}',
            f'  initialized (output norms not in the checkpoint): {summarize_keys(self.initialized)}',
            f'  missing: {summarize_keys(self.missing)}',
            f'  unexpected: {summarize_keys(self.unexpected)}',
            f'  shape mismatched: {summarize_mismatches(self.mismatched)}',
        ] + [f'  note: {note}' for note in self.notes])


def _is_output_norm(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) and OUTPUT_NORM.match(key[len(p):]) for p in prefixes)


def compare(state_dict: Mapping[str, Any], model_shapes: Mapping[str, Shape], report: LoadReport,
            output_norms_optional: bool = False) -> LoadReport:
    """Sorts a checkpoint under the model's names against the model into ``report`` (the one comparison).

    Args:
        state_dict: The checkpoint's tensors, renamed to the model's names.
        model_shapes: The model's keys and shapes (buffers included).
        report: Filled in place: its renames, layouts and prefixes are already set.
        output_norms_optional: A pretrained backbone: output norms ``norm{i}`` the file lacks stay at their
            init (``initialized``, not ``missing``); facebook and timm classifiers have none.

    Returns:
        ``report``.
    """
    prefixes = report.model_prefixes
    for key, value in state_dict.items():
        shape = tuple(getattr(value, 'shape', ()))
        if key not in model_shapes:
            (report.ignored if _is_output_norm(key, prefixes) else report.unexpected).append(key)
        elif shape != tuple(model_shapes[key]):
            report.mismatched.append((key, shape, tuple(model_shapes[key])))
        else:
            report.loaded.append(key)
    for key in model_shapes:
        if key not in state_dict:
            optional = output_norms_optional and _is_output_norm(key, prefixes)
            (report.initialized if optional else report.missing).append(key)
    return report


def _diagnosis(report: LoadReport) -> str:
    """What the file seems to be, and what to pass instead."""
    backbones = tuple(p for p in report.model_prefixes if p)
    if backbones and report.layouts and not any(not k.startswith(backbones) for k in report.loaded):
        prefix, layout = next(iter(report.layouts.items()))
        return (f'it holds a ConvNeXt backbone only ({layout} layout, arch {report.archs[prefix]}), not a trained '
                f"detector or segmentor; start a training from it with model.backbone.init_cfg=dict(type="
                f"'Pretrained', checkpoint=FILE) (converted as it loads), or pass a whole-model checkpoint")
    misfit = report.missing + [key for key, _, _ in report.mismatched] + report.foreign
    prefix = next((p for p in report.layouts if p in report.model_prefixes
                   and any(k.startswith(p) for k in misfit)), None)
    if prefix is None:
        return 'it was trained with another arch or config: pass the matching config or checkpoint'
    layout = LAYOUTS[report.layouts[prefix]]
    where = f'its {prefix}* keys' if prefix else 'its keys'
    verb = 'are in' if layout.keeps_our_names else 'were renamed from'
    return (f'{where} {verb} {layout.description}; the checkpoint seems to be arch {report.archs[prefix]}: pick '
            f'that arch (for ConvNeXt V2, use_grn=True and layer_scale_init_value=0) or another checkpoint')


def explain_misfit(report: LoadReport, purpose: str, target: str) -> Optional[str]:
    """Why a checkpoint does not fit a model, in one line; None when it fits (the one explanation).

    Args:
        report: :func:`compare`'s report.
        purpose: How the file was given, e.g. ``'CHECKPOINT'``, ``'--resume'``, ``'init_cfg'``.
        target: What it was loaded into, e.g. ``'the model of this config'``, ``"ConvNeXt(arch='tiny')"``.
    """
    if report.fits:
        return None
    total = len(report.loaded) + len(report.mismatched) + len(report.missing)
    counts = f'{len(report.mismatched)} shape mismatches, {len(report.missing)} missing of {total} tensors'
    if report.foreign:
        counts += f', {len(report.foreign)} backbone keys the model lacks'
    first = ([f'{key} checkpoint {list(src)} vs model {list(dst)}' for key, src, dst in report.mismatched]
             + [f'{key} missing from the checkpoint' for key in report.missing]
             + [f'{key} not in the model' for key in report.foreign])[:FIRST_NAMED]
    return (f'checkpoint {report.source} ({purpose}) does not fit {target}: {counts} (first: {", ".join(first)}); '
            f'{_diagnosis(report)}')
