"""``init_model`` / ``inference_model`` for detectors and segmentors, in the style of mmdet's ``init_detector`` /
``inference_detector``, on top of them (and mmseg's ``init_model`` / ``inference_model``)::

    from convnext_dense.apis import inference_model, init_model

    model = init_model('det/mask_rcnn_convnext_t_3x', 'epoch_36.pth', device='cpu')
    model = init_model('mask_rcnn_convnext_t_3x')          # a zoo name: the released trained weights
    result = inference_model(model, 'street.jpg')          # a DetDataSample
    print(result.pred_instances.bboxes, model.dataset_meta['classes'])

The config's ``default_scope`` (``mmdet`` or ``mmseg``) picks the task. Unlike mmdet's and mmseg's helpers,
the checkpoint must fit the model (every tensor present, same shapes) and the class names and colours come
from the checkpoint (``dataset_meta``, or an mmdet 2.x / mmseg 0.x file's ``CLASSES`` / ``PALETTE``), else
from the config's dataset, never from COCO or Cityscapes by default. A model name of the zoo stands for its
config and released weights (:func:`convnext_dense.zoo.resolve`).
"""
import copy
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.runner.checkpoint import load_state_dict

from convnext_dense.checkpoint import check_fit, read_checkpoint
from convnext_dense.checkpoint.legacy import dataset_meta_of
from convnext_dense.config import load_config, task_of
from convnext_dense.zoo import resolve

ImageInput = Union[str, Path, np.ndarray]


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


def _build(cfg: Config) -> torch.nn.Module:
    """The config's detector or segmentor on the CPU, built by mmdet's or mmseg's own helper."""
    if task_of(cfg) == 'det':
        from mmdet.apis import init_detector as builder
    else:
        from mmseg.apis import init_model as builder
    with warnings.catch_warnings(record=True) as caught:
        model = builder(cfg, None, device='cpu')
    for warning in caught:  # all but "checkpoint is None, use COCO classes": the classes are set by the caller
        if 'COCO classes' not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return revert_sync_batchnorm(model)  # SyncBN needs a process group; in eval mode BN is the same


def resolve_device(device: Optional[str]) -> str:
    """``device``, or when None ``'cuda:0'`` if CUDA is available, else ``'cpu'``."""
    return device or ('cuda:0' if torch.cuda.is_available() else 'cpu')


def init_model(config, checkpoint: Optional[str] = None, device: Optional[str] = None,
               cfg_options: Optional[dict] = None, weights_mirror: Optional[str] = None) -> torch.nn.Module:
    """Builds a detector or segmentor from a config and loads a checkpoint into it.

    Args:
        config: A model name of the zoo (``upernet_convnext_t_512_160k``: its config and released weights), a
            config path, a shipped config's name (``det/mask_rcnn_convnext_t_3x``) or an mmengine ``Config``
            (see :func:`convnext_dense.zoo.resolve`).
        checkpoint: Checkpoint path or URL (downloaded into the weights cache); None keeps a config's initial
            weights (and loads no pretrained backbone), a model name's released file.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...; None: ``'cuda:0'`` when CUDA is available, else the
            CPU (mmdet's ``init_detector`` and mmseg's ``init_model`` default to ``'cuda:0'`` and fail without one).
        cfg_options: ``key=value`` overrides of the config, as ``--cfg-options``.
        weights_mirror: As ``--weights-mirror``; None reads ``$CONVNEXT_DENSE_WEIGHTS_MIRROR``.

    Returns:
        The model in eval mode, with ``.cfg`` and ``.dataset_meta`` (``classes``, ``palette``).

    Raises:
        ConvNeXtDenseError: A config or checkpoint problem, named in one line; a checkpoint that does not
            fit the model (:func:`convnext_dense.checkpoint.check_fit`) is refused before anything loads.
    """
    if not isinstance(config, Config):
        resolved = resolve(config, checkpoint, mirror=weights_mirror)  # a model name: its released weights
        config, checkpoint = resolved.config, resolved.checkpoint
    cfg = copy.deepcopy(config) if isinstance(config, Config) else load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    task_of(cfg)  # an unknown scope fails before the checkpoint is read
    loaded = read_checkpoint(str(checkpoint), purpose='CHECKPOINT') if checkpoint else None
    model = _build(cfg)
    meta = {}
    if loaded is not None:
        _, state_dict = check_fit(loaded, model, source=str(checkpoint), purpose='CHECKPOINT')
        load_state_dict(model, state_dict)  # every tensor is there (checked); extra keys are ignored
        meta = dataset_meta_of(loaded)  # mmengine's dataset_meta, or an mmcv 1.x file's CLASSES / PALETTE
    model.dataset_meta = {str(k).lower(): v for k, v in (meta or config_dataset_meta(cfg)).items()}
    model.cfg = cfg
    return model.to(resolve_device(device)).eval()


def _det_pipeline(model, arrays: bool):
    """The config's test pipeline without annotation loading, reading arrays when ``arrays``."""
    from mmcv.transforms import Compose  # mmcv: an optional dependency, as mmdet and mmseg
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
