"""Does this checkpoint fit this model: the one check, and the loads built on it.

:func:`check_fit` renames a loaded checkpoint to a model's names, compares it with the model and refuses,
with one line saying why, a file that would load partially or with other shapes. Every loader uses it:
``init_cfg`` pretrained weights (:func:`load_pretrained`), ``apis.init_model`` (and through it ``infer`` and
``export``), the up-front checks of ``test`` and ``--resume``, and ``convert --arch``.
"""
import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from convnext_dense.checkpoint.convert import convert_state_dict, guess_arch, model_state_dict, with_metadata_of
from convnext_dense.checkpoint.read import read_checkpoint
from convnext_dense.checkpoint.report import LoadReport, compare, explain_misfit
from convnext_dense.checkpoint.whole_model import backbone_prefixes, rename_backbone, rename_whole_model
from convnext_dense.errors import CheckpointError, CheckpointMismatchError


def _unwrapped(model: nn.Module) -> nn.Module:
    while hasattr(model, 'module') and isinstance(model.module, nn.Module):  # DDP, TTA wrappers
        model = model.module
    return model


def _describe_bare_backbone(state_dict: Mapping[str, Any], report: LoadReport) -> None:
    """Records the layout and arch of a file that holds a ConvNeXt backbone at its top level, if it does."""
    try:
        conversion = convert_state_dict(state_dict)
    except CheckpointError:
        return
    report.layouts[''] = conversion.layout
    report.archs[''] = guess_arch(conversion.state_dict)


def match(checkpoint: Mapping[str, Any], model: nn.Module, source: str = '', prefix: Optional[str] = None,
          ema: bool = False) -> Tuple[LoadReport, Dict[str, Any]]:
    """Renames a loaded checkpoint to ``model``'s names and compares them (pure: nothing is loaded).

    A bare ConvNeXt takes a pretrained file of any layout as :func:`convert_state_dict` reads it (a
    ``backbone.`` prefix detected, other modules ignored, output norms optional). A model holding ConvNeXt
    backbones (a detector, a segmentor) takes a whole-model file: each backbone renamed in place, every other
    key compared as it is.

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        model: The model to fill (a DDP or TTA wrapper is looked through).
        source: The checkpoint's path or URL, for the report.
        prefix: A bare ConvNeXt only: take the keys under this prefix (init_cfg ``prefix``).
        ema: Prefer EMA weights when the checkpoint holds both.

    Returns:
        The report and the checkpoint's tensors under the model's names, ready for ``load_state_dict``.
    """
    model = _unwrapped(model)
    model_shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    prefixes = backbone_prefixes(model_shapes)
    report = LoadReport(source=source, model_prefixes=tuple(prefixes))
    if prefixes == ['']:
        conversion = convert_state_dict(checkpoint, prefix=prefix, ema=ema)
        report.layouts[''], report.archs[''] = conversion.layout, guess_arch(conversion.state_dict)
        report.renamed, report.reshaped = conversion.renamed, conversion.reshaped
        report.ignored, report.unexpected, report.notes = conversion.ignored, conversion.leftover, conversion.notes
        return compare(conversion.state_dict, model_shapes, report, output_norms_optional=True), conversion.state_dict
    state_dict = model_state_dict(checkpoint, ema=ema)
    renamed, renames = rename_whole_model(state_dict, prefixes)
    for rename in renames:
        report.layouts[rename.prefix], report.archs[rename.prefix] = rename.layout, guess_arch(rename.our_keys)
        report.renamed += rename.renamed
        report.reshaped += rename.reshaped
        report.ignored += rename.ignored
        report.notes += [note for note in rename.notes if note not in report.notes]
    if not renames:
        _describe_bare_backbone(state_dict, report)
    return compare(renamed, model_shapes, report), with_metadata_of(state_dict, renamed)


def check_fit(checkpoint: Mapping[str, Any], model: nn.Module, *, source: str, purpose: str,
              target: str = 'the model of this config', prefix: Optional[str] = None,
              ema: bool = False) -> Tuple[LoadReport, Dict[str, Any]]:
    """The one "does this checkpoint fit this model" check; see :func:`match`.

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        model: The model to fill.
        source: The checkpoint's path or URL.
        purpose: How the file was given (``'CHECKPOINT'``, ``'--resume'``, ``'init_cfg'``), for the message.
        target: What it is loaded into, for the message.
        prefix: See :func:`match`.
        ema: See :func:`match`.

    Returns:
        The report and the tensors under the model's names. The report of a whole model whose backbone was
        renamed is logged (a pretrained backbone's by :func:`load_pretrained`, after loading).

    Raises:
        CheckpointMismatchError: Shape mismatches, missing keys, or backbone blocks the model lacks; the
            one-line message names the counts, the first keys and what the file seems to be.
    """
    report, state_dict = match(checkpoint, model, source=source, prefix=prefix, ema=ema)
    problem = explain_misfit(report, purpose, target)
    if problem:
        raise CheckpointMismatchError(problem)
    if report.model_prefixes != ('',) and (report.renamed or report.reshaped or report.ignored):
        # A whole model renamed here loads under our names, so the load_state_dict hook has nothing to report.
        print_log(report.summary(), logger='current')
    return report, state_dict


def load_pretrained(model: nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location: Any = 'cpu', ema: bool = False) -> LoadReport:
    """Loads a pretrained checkpoint of any known layout into a ConvNeXt and logs one report.

    Args:
        model: The backbone to fill.
        checkpoint: Local path or URL.
        prefix: Only keys under this prefix, stripped (mmengine init_cfg ``prefix``).
        map_location: Passed to ``torch.load``.
        ema: Prefer EMA weights when the checkpoint holds both.

    Returns:
        The :class:`LoadReport` that was logged.

    Raises:
        CheckpointNotFoundError: ``checkpoint`` is a local path that does not exist.
        CheckpointMismatchError: Shape mismatches, missing backbone keys or backbone keys the model lacks
            (e.g. a base checkpoint into a tiny model); the model is left untouched.
    """
    loaded = read_checkpoint(checkpoint, map_location, purpose='init_cfg')
    report, state_dict = check_fit(loaded, model, source=str(checkpoint), purpose='init_cfg',
                                   target=f'ConvNeXt(arch={getattr(model, "arch", "?")!r})', prefix=prefix, ema=ema)
    model_state = model.state_dict()
    with torch.no_grad():
        for key in report.loaded:
            model_state[key].copy_(state_dict[key])
    print_log(report.summary(), logger=MMLogger.get_current_instance())
    return report


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
    report = LoadReport(layouts={prefix: rename.layout}, model_prefixes=(prefix,), renamed=rename.renamed,
                        reshaped=rename.reshaped, ignored=list(rename.ignored), notes=list(rename.notes))
    compare(rename.state_dict, {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}, report)
    print_log(report.summary(), logger='current', level=logging.INFO if report.fits else logging.WARNING)
