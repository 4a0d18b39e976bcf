"""``init_model`` / ``inference_model`` for detectors and segmentors, in the style of mmdet's ``init_detector`` /
``inference_detector``, on top of them (and mmseg's ``init_model`` / ``inference_model``)::

    from convnext_dense.apis import inference_model, init_model

    model = init_model('det/mask_rcnn_convnext_t_3x', 'epoch_36.pth', device='cpu')
    result = inference_model(model, 'street.jpg')          # a DetDataSample
    print(result.pred_instances.bboxes, model.dataset_meta['classes'])

The config's ``default_scope`` (``mmdet`` or ``mmseg``) picks the task. Unlike mmdet's and mmseg's helpers,
the checkpoint must fit the model (every tensor present, same shapes) and the class names and colours come
from the checkpoint's ``dataset_meta``, else from the config's dataset, never from COCO or Cityscapes by
default.
"""
import copy
import os.path as osp
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from convnext_dense.errors import CheckpointError, CheckpointMismatchError, ConfigError

ImageInput = Union[str, Path, np.ndarray]


def task_of(cfg) -> str:
    """``'det'`` or ``'seg'`` from a config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ConfigError(f"{cfg.filename}: default_scope is {scope!r}; set default_scope='mmdet' (detection) "
                          f"or 'mmseg' (segmentation)")
    return 'det' if scope == 'mmdet' else 'seg'


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Loads a local checkpoint (safely, see :mod:`convnext_dense.io`); a folder or a missing file is refused."""
    if osp.isdir(path):
        raise CheckpointError(f'checkpoint {path} is a folder; pass a .pth file in it')
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} not found; pass an existing .pth file')
    from convnext_dense.io import safe_torch_load
    loaded = safe_torch_load(path)
    if not isinstance(loaded, dict):
        raise CheckpointError(f'checkpoint {path} holds a {type(loaded).__name__}, not a state dict')
    return loaded


def state_dict_of(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """The model weights of a loaded checkpoint, unwrapped, without DDP's ``module.`` prefix."""
    from convnext_dense.models.checkpoint import strip_wrapper_prefixes, unwrap_checkpoint
    try:
        state_dict, _ = unwrap_checkpoint(checkpoint)
    except ValueError as error:
        raise CheckpointError(f'{error} Pass a checkpoint written by tools/train.py.') from error
    return strip_wrapper_prefixes(state_dict)


def check_fits(model: torch.nn.Module, state_dict: Dict[str, Any], checkpoint: str, purpose: str) -> None:
    """Raises :class:`CheckpointMismatchError` unless ``state_dict`` holds every tensor of ``model`` with its shape.

    A backbone saved in another known layout (mmdet 3.x / mmseg 1.x with mmpretrain's names, the authors'
    releases) is renamed first, as the backbone itself does when the file loads (``whole_model.py``).

    Args:
        model: The built model (a DDP or TTA wrapper is looked through).
        state_dict: The checkpoint's weights.
        checkpoint: Its path, for the message.
        purpose: How it is used, for the message (``'--resume'``, ``'CHECKPOINT'``).
    """
    from convnext_dense.models.whole_model import (backbone_prefixes, compare_whole_model, explain_misfit,
                                                   rename_whole_model)
    while hasattr(model, 'module'):
        model = model.module
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefixes = backbone_prefixes(model)
    renamed, renames = rename_whole_model(state_dict, prefixes)
    report = compare_whole_model(renamed, renames, expected, checkpoint)
    if report.fits:
        return
    first = ([f'{k} {list(s)} vs {list(m)}' for k, s, m in report.mismatched] + report.missing)[:2]
    problem = (f'checkpoint {checkpoint} ({purpose}) does not fit the model of this config: '
               f'{len(report.mismatched)} shape mismatches, {len(report.missing)} missing of {len(expected)} '
               f'tensors (first: {", ".join(first)})')
    explanation = explain_misfit(state_dict, report, prefixes)
    raise CheckpointMismatchError(f'{problem}; {explanation}' if explanation else
                                  f'{problem}; it was trained with another arch or config: pass the matching '
                                  f'config or checkpoint')


def config_dataset_meta(cfg) -> Dict[str, Any]:
    """``classes`` and ``palette`` of the config's test dataset (built lazily: no annotation file is read)."""
    dataset_cfg = copy.deepcopy(cfg.get('test_dataloader', {}) or {}).get('dataset')
    if not dataset_cfg:
        return {}
    while 'dataset' in dataset_cfg and 'type' in dataset_cfg.get('dataset', {}):
        dataset_cfg = dataset_cfg['dataset']  # wrappers (RepeatDataset, ...) hold the metainfo inside
    if task_of(cfg) == 'det':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    dataset_cfg['lazy_init'] = True
    try:
        metainfo = DATASETS.build(dataset_cfg).metainfo
    except Exception:  # noqa: BLE001 - a dataset that cannot even be built lazily names no classes
        metainfo = dict(dataset_cfg.get('metainfo') or {})
    return {k: v for k, v in metainfo.items() if k in ('classes', 'palette')}


def init_model(config, checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Builds a detector or segmentor from a config and loads a checkpoint into it.

    Args:
        config: A config path, a shipped config's name (``det/mask_rcnn_convnext_t_3x``) or an mmengine
            ``Config``.
        checkpoint: Local checkpoint file; None keeps the initial weights (and loads no pretrained backbone).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        cfg_options: ``key=value`` overrides of the config, as ``--cfg-options``.

    Returns:
        The model in eval mode, with ``.cfg`` and ``.dataset_meta`` (``classes``, ``palette``).

    Raises:
        ConvNeXtDenseError: A config or checkpoint problem, named in one line.
    """
    from mmengine.config import Config
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.runner.checkpoint import load_state_dict

    from convnext_dense.config_paths import load_config
    cfg = copy.deepcopy(config) if isinstance(config, Config) else load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    task = task_of(cfg)
    loaded = read_checkpoint(str(checkpoint)) if checkpoint else None
    if task == 'det':
        from mmdet.apis import init_detector
        builder = init_detector
    else:
        from mmseg.apis import init_model as builder
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        model = builder(cfg, None, device='cpu')
    for warning in caught:  # all but "checkpoint is None, use COCO classes": the classes are set below
        if 'COCO classes' not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    model = revert_sync_batchnorm(model)  # SyncBN needs a process group; in eval mode BN is the same
    meta = {}
    if loaded is not None:
        state_dict = state_dict_of(loaded)
        check_fits(model, state_dict, str(checkpoint), 'CHECKPOINT')
        load_state_dict(model, state_dict)  # every tensor is there (checked); extra keys are ignored
        meta = (loaded.get('meta') or {}).get('dataset_meta') or {}
    model.dataset_meta = {str(k).lower(): v for k, v in (meta or config_dataset_meta(cfg)).items()}
    model.cfg = cfg
    return model.to(device).eval()


def _det_pipeline(model, arrays: bool):
    """The config's test pipeline without annotation loading, reading arrays when ``arrays``."""
    from mmcv.transforms import Compose
    pipeline = [step for step in copy.deepcopy(model.cfg.test_dataloader.dataset.pipeline)
                if 'LoadAnnotations' not in step['type']]
    if arrays:
        pipeline[0] = dict(pipeline[0], type='mmdet.LoadImageFromNDArray')
    return Compose(pipeline)


def _detect_batch(model, images: List[np.ndarray]) -> list:
    """One ``test_step`` over a batch of BGR arrays (mmdet's ``inference_detector`` runs one image at a time)."""
    pipeline = _det_pipeline(model, arrays=True)
    packed = [pipeline(dict(img=image, img_id=i)) for i, image in enumerate(images)]
    with torch.no_grad():
        return model.test_step(dict(inputs=[p['inputs'] for p in packed],
                                    data_samples=[p['data_samples'] for p in packed]))


def _same_shape_runs(images: list) -> List[list]:
    """Consecutive images of one shape (mmseg's test mode refuses a batch of different sizes); paths alone."""
    runs: List[list] = []
    for image in images:
        shape = image.shape if isinstance(image, np.ndarray) else None
        if runs and shape is not None and getattr(runs[-1][-1], 'shape', None) == shape:
            runs[-1].append(image)
        else:
            runs.append([image])
    return runs


def inference_model(model, images: Union[ImageInput, Sequence[ImageInput]], batch_size: int = 1):
    """Predicts on one image or a list: paths, or BGR ``uint8`` arrays as ``mmcv.imread`` returns them.

    Args:
        model: A model from :func:`init_model`.
        images: One image or a sequence of images.
        batch_size: Images per forward pass.

    Returns:
        A ``DetDataSample`` / ``SegDataSample`` for one image, a list of them for a sequence.
    """
    single = isinstance(images, (str, Path, np.ndarray))
    batch = [str(images) if isinstance(images, Path) else images] if single else \
        [str(image) if isinstance(image, Path) else image for image in images]
    results = []
    for start in range(0, len(batch), max(1, batch_size)):
        chunk = batch[start:start + max(1, batch_size)]
        arrays = isinstance(chunk[0], np.ndarray)
        if task_of(model.cfg) == 'seg':
            from mmseg.apis import inference_model as segment
            config = model.cfg
            model.cfg = copy.deepcopy(config)  # mmseg edits the test pipeline in place for array inputs
            try:
                for run in _same_shape_runs(chunk):
                    with torch.no_grad():
                        results += segment(model, run)
            finally:
                model.cfg = config
        elif len(chunk) == 1 or not arrays:
            from mmdet.apis import inference_detector
            results += inference_detector(model, chunk, test_pipeline=_det_pipeline(model, arrays))
        else:
            results += _detect_batch(model, chunk)
    return results[0] if single else results
