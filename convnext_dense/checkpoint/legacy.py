"""Whole-model files written by mmcv 1.x: the ConvNeXt authors' mmdet 2.x / mmseg 0.x releases and OpenMMLab's
model zoos of that era (which mmdet 3.x and mmseg 1.x still link), as mmdet 3.x / mmseg 1.x read them.

What those files hold, read from the code that wrote them (mmcv 1.3-1.7 ``runner/checkpoint.py``
``save_checkpoint``, the runners' ``save_checkpoint``, ``CheckpointHook``; the ``tools/train.py`` of mmdet 2.11
(the Swin detection code the authors built on) and 2.28 and of mmseg 0.30 (mmseg 0.11's, which the authors'
BEiT-based segmentation code used, was not at hand: only the BEiT-style copies of it); the authors'
``EpochBasedRunnerAmp`` / ``IterBasedRunnerAmp`` in facebookresearch/ConvNeXt):

- ``state_dict``: an ``OrderedDict`` of CPU tensors (parameters and buffers, BN ``num_batches_tracked``
  included) with its ``_metadata``, under the model's own names (no ``module.``).
- ``meta``: ``mmcv_version`` and ``time`` (strings); ``CLASSES`` (a tuple of strings); ``epoch`` and ``iter``;
  ``env_info``, ``config`` (the config's text), ``seed`` (an int or None), ``exp_name``; ``mmdet_version`` or
  ``mmseg_version``; for mmseg also ``PALETTE`` (a list of ``[r, g, b]`` lists); ``hook_msgs`` (``last_ckpt``,
  a string, and with ``save_best`` also ``best_score`` and ``best_ckpt``); with mmcv's AMP hook
  ``fp16.loss_scaler`` (numbers).
- ``optimizer``: the optimizer's ``state_dict()``: per parameter index ``step``, ``exp_avg``, ``exp_avg_sq``;
  param groups with ``lr``, ``betas`` (a tuple), ``eps``, ``weight_decay``, ``amsgrad``, ``params`` (ints)
  and, from the layer-decay constructor, ``param_names``, ``lr_scale``, ``group_name``. OpenMMLab's
  published files went through ``publish_model.py``: the optimizer removed, written in torch's legacy
  (non-zip) format, the file named ``NAME-<first 8 hex digits of its SHA-256>.pth``.

Nothing in them is code: ``io.safe_torch_load`` reads them with ``weights_only=True`` (numpy scalars, which a
``best_score`` computed by numpy would be, are in its allow-list under their numpy 1.x names as well).

**Renames from mmdet 2.x to 3.x and mmseg 0.x to 1.x: none.** Compared module by module (``_init_layers`` /
``__init__`` of mmdet 2.28.2 and 3.3.0, mmseg 0.30.0 and 1.2.2), the parameter and buffer names are the same:
``FPN`` (``lateral_convs.i.conv``, ``fpn_convs.i.conv``), ``RPNHead`` (``rpn_conv``, ``rpn_cls``,
``rpn_reg``), ``Shared2FCBBoxHead`` / ``Shared4Conv1FCBBoxHead`` (``shared_convs.i.{conv,bn}``, ``shared_fcs.i``,
``fc_cls``, ``fc_reg``), ``FCNMaskHead`` (``convs.i.conv``, ``upsample``, ``conv_logits``), ``UPerHead``
(``psp_modules.i.1``, ``bottleneck``, ``lateral_convs``, ``fpn_convs``, ``fpn_bottleneck``, ``conv_seg``) and
``FCNHead`` (``convs.i``, ``conv_seg``), with ``ConvModule``'s ``conv`` / ``bn`` in both mmcv 1.x and 2.x;
the data preprocessors' ``mean`` / ``std`` buffers of 3.x / 1.x are not persistent. The authors' backbone
names are the official ones, which ours are. ``tests/fixtures/legacy_key_names.json`` records the keys that
mmdet 2.28.2 / mmseg 0.30.0 themselves give the demo-sized models, and the tests compare them with ours, so
a future difference shows there and gets its rule in :data:`LEGACY_KEY_RENAMES`.
"""
import re
from typing import Any, Dict, List, Mapping, Tuple

#: ``(pattern, replacement)`` regular expressions, applied in order, from an mmdet 2.x / mmseg 0.x key to its
#: mmdet 3.x / mmseg 1.x name. Empty: no neck or head key differs (see the module docstring).
LEGACY_KEY_RENAMES: Tuple[Tuple[str, str], ...] = ()

#: The ``meta`` keys that only mmcv 1.x's ``save_checkpoint`` writes (mmengine writes ``mmengine_version``).
_MMCV1_META_KEYS = ('mmcv_version', 'CLASSES', 'PALETTE', 'hook_msgs')


def is_mmcv1_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` (a loaded file) was written by mmcv 1.x (mmdet 2.x, mmseg 0.x and their era).

    Args:
        checkpoint: What ``torch.load`` returned.
    """
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get('meta'), Mapping):
        return False
    meta = checkpoint['meta']
    return 'mmengine_version' not in meta and 'dataset_meta' not in meta and any(k in meta for k in _MMCV1_META_KEYS)


def written_by(checkpoint: Mapping[str, Any]) -> str:
    """Which toolkit wrote a whole-model file, from its meta (``'mmdet 2.11.0+6a979e2, mmcv 1.3.8'``), or ``''``.

    Args:
        checkpoint: What ``torch.load`` returned.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return ''
    names = ('mmdet_version', 'mmseg_version', 'mmcv_version', 'mmengine_version')
    return ', '.join(f'{name[:-len("_version")]} {meta[name]}' for name in names if meta.get(name))


def rename_legacy_keys(state_dict: Mapping[str, Any],
                       renames: Tuple[Tuple[str, str], ...] = LEGACY_KEY_RENAMES
                       ) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    """Renames an mmdet 2.x / mmseg 0.x whole model's keys to mmdet 3.x / mmseg 1.x names (pure).

    Args:
        state_dict: The file's state dict (no wrapper).
        renames: ``(pattern, replacement)`` rules; the first one that matches a key renames it.

    Returns:
        The renamed state dict (same order) and ``(old key, new key)`` for every key that changed.
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in renames]
    renamed_state, renamed = {}, []
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in compiled:
            if pattern.search(key):
                new_key = pattern.sub(replacement, key)
                break
        if new_key != key:
            renamed.append((key, new_key))
        renamed_state[new_key] = value
    return renamed_state, renamed


def dataset_meta_of(checkpoint: Any) -> Dict[str, Any]:
    """The classes and palette a whole-model file was trained with, as mmengine's ``dataset_meta`` (pure).

    mmengine files carry ``meta['dataset_meta']`` (mmdet 3.0 pre-releases with upper-case keys); mmcv 1.x
    files carry ``meta['CLASSES']`` and, from mmseg, ``meta['PALETTE']``. Keys come back lower-case, as
    mmdet's and mmseg's ``init_model`` read them: ``{'classes': (...), 'palette': [(r, g, b), ...]}``, each
    only when the file has it; ``{}`` for a file without any.

    Args:
        checkpoint: What ``torch.load`` returned.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return {}
    source = meta.get('dataset_meta')
    if not isinstance(source, Mapping):
        source = {key: meta[key] for key in ('CLASSES', 'PALETTE') if meta.get(key) is not None}
    dataset_meta = {str(key).lower(): value for key, value in source.items()}
    if dataset_meta.get('classes') is not None:
        classes = dataset_meta['classes']
        dataset_meta['classes'] = (classes,) if isinstance(classes, str) else tuple(classes)
    if dataset_meta.get('palette') is not None:
        dataset_meta['palette'] = [tuple(int(channel) for channel in color) for color in dataset_meta['palette']]
    return dataset_meta
