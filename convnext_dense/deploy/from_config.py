"""``convnext-dense export CONFIG CHECKPOINT``: the model of a config with trained weights, to an ONNX file.

The model comes from :func:`convnext_dense.apis.init_model` (the checkpoint must fit the config; classes and
palette from the checkpoint's ``dataset_meta``, else the config's dataset). The config also gives the test
pipeline's ``Resize``, stored in the file for the predictor, and the default input shape of a static file
(:func:`default_shape`): one that every image the test pipeline can produce fits in.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from convnext_dense.deploy.export import (DEFAULT_OPSET, check_batch, check_opset, check_shape, export_backbone,
                                          export_model)
from convnext_dense.deploy.preprocess import preprocess_from
from convnext_dense.errors import DeployError

WHAT = ('model', 'backbone')


def pipeline_resize(cfg: Any) -> Optional[Dict[str, Any]]:
    """The arguments of the test pipeline's ``Resize`` (None without one)."""
    pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline') or []
    for transform in pipeline:
        if str(transform.get('type', '')).split('.')[-1] == 'Resize':
            return {key: (list(value) if isinstance(value, tuple) else value)
                    for key, value in transform.items() if key != 'type'}
    return None


def _round_up(value: int, divisor: int) -> int:
    return -(-int(value) // divisor) * divisor


def default_shape(cfg: Any, resize: Optional[Dict[str, Any]], what: str) -> Tuple[int, int]:
    """The input shape of a static file when ``--shape`` is not given: one every test image fits in.

    A backbone: 224 x 224. A model: a segmentor's fixed test padding (``data_preprocessor.test_cfg.size``);
    else the test ``Resize`` scale (w, h) as H x W, square on its longer side where the resize keeps the aspect
    ratio (portrait and landscape images both fit; the graph computes only the batch's padded extent, so a
    landscape image costs no more in it), except for sliding-window inference, which runs over the whole input;
    else the training pad size; padded to the size divisor.
    """
    if what == 'backbone':
        return 224, 224
    preprocessor = cfg.model.get('data_preprocessor', {}) or {}
    test_pad = (preprocessor.get('test_cfg') or {})
    if test_pad.get('size'):
        return tuple(int(s) for s in test_pad['size'])
    divisor = int(preprocessor.get('pad_size_divisor') or test_pad.get('size_divisor') or 32)
    if resize and resize.get('scale'):
        scale = resize['scale']
        width, height = (scale, scale) if isinstance(scale, int) else scale
        sliding = (cfg.model.get('test_cfg') or {}).get('mode') == 'slide'
        if resize.get('keep_ratio') and not sliding:
            height = width = max(height, width)
    elif preprocessor.get('size'):
        height, width = preprocessor['size']
    else:
        height = width = 512
    return _round_up(height, divisor), _round_up(width, divisor)


def export_from_config(config: Union[str, Path], checkpoint: Union[str, Path], out: Union[str, Path],
                       shape: Optional[Sequence[int]] = None, dynamic: bool = False, opset: int = DEFAULT_OPSET,
                       what: str = 'model', batch_size: int = 1) -> Path:
    """Exports the model of ``config`` with the weights of ``checkpoint`` (what ``convnext-dense export`` runs).

    Args:
        config: A detector or segmentor config (a path or a shipped config's name).
        checkpoint: A whole-model checkpoint trained with it.
        out: Path of the ``.onnx`` file.
        shape: Input H, W of a static file (default: :func:`default_shape`).
        dynamic: Any input size instead of ``shape`` only.
        opset: ONNX opset version.
        what: ``'model'`` (images to predictions) or ``'backbone'`` (normalized images to features).
        batch_size: Images per call.

    Returns:
        The written path.
    """
    from convnext_dense.apis import init_model
    if what not in WHAT:
        raise DeployError(f'--what {what}: choose model or backbone')
    check_opset(opset)
    check_batch(batch_size)
    model = init_model(str(config), str(checkpoint), device='cpu')
    resize = pipeline_resize(model.cfg)
    shape = check_shape(shape or default_shape(model.cfg, resize, what))
    if what == 'backbone':
        preprocess = preprocess_from(model.data_preprocessor, 1, 0.0).describe()
        return export_backbone(model.backbone, out, shape, dynamic=dynamic, opset=opset, batch_size=batch_size,
                               preprocess=dict(preprocess, input='input: N x 3 x H x W float32, normalized'))
    return export_model(model, out, shape, dynamic=dynamic, opset=opset, dataset_meta=model.dataset_meta,
                        resize=resize, batch_size=batch_size)
