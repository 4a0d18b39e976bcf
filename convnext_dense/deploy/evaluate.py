"""The metric of an exported detector or segmentor on a config's test split, with the config's own evaluator.

:func:`evaluate_onnx` runs :class:`~convnext_dense.deploy.predictor.OnnxPredictor` on each image of the config's
test dataset and hands its data samples, with the dataset's ground truth, to the evaluator the config's
``test_evaluator`` builds (mmdet's ``CocoMetric``, mmseg's ``IoUMetric``, ...): the numbers are computed by
the same code as ``convnext-dense test`` computes them for the PyTorch model. The dataset's test pipeline
supplies the ground truth and the image's meta; the image itself is read from its file as ``infer`` reads it,
so the predictor applies the resize stored in the ONNX file.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from convnext_dense.errors import DeployError


def load_test_split(config: Union[str, Path, Any], data_root: Optional[str] = None):
    """The config, its test dataset and its test evaluator (built, with the dataset's meta).

    Args:
        config: A config path or a shipped config's name, or a loaded mmengine ``Config``.
        data_root: Where the data lies, when not where the config says.
    """
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DATASETS, init_default_scope

    import convnext_dense  # noqa: F401  (registers the package's modules)
    from convnext_dense.config import load_config
    from convnext_dense.config_edits import move_data_root
    cfg = config if isinstance(config, Config) else load_config(config)
    if data_root:
        move_data_root(cfg, data_root)
    if not cfg.get('test_dataloader') or not cfg.get('test_evaluator'):
        raise DeployError(f'{cfg.filename or config}: no test_dataloader / test_evaluator; give the config the '
                          f'model was trained and tested with')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    return cfg, dataset, evaluator


def evaluate_onnx(config: Union[str, Path, Any], onnx_path: Union[str, Path], data_root: Optional[str] = None,
                  max_images: Optional[int] = None, num_threads: Optional[int] = None) -> Dict[str, Any]:
    """Evaluates an exported model on the test split of ``config`` with the config's ``test_evaluator``.

    Args:
        config: The config the model was trained with (a path, a shipped config's name or a loaded ``Config``).
        onnx_path: A detector or segmentor file written by ``convnext-dense export`` (float or INT8).
        data_root: Where the data lies, when not where the config says (as ``test --data-root``).
        max_images: Evaluate the first this many images only (None: the whole split).
        num_threads: ONNX Runtime's intra-op threads (None: its default).

    Returns:
        The evaluator's metrics (e.g. ``mIoU``, ``coco/bbox_mAP``).
    """
    from convnext_dense.deploy.predictor import OnnxPredictor, read_rgb
    predictor = OnnxPredictor(onnx_path, num_threads=num_threads)
    _, dataset, evaluator = load_test_split(config, data_root)
    count = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    for index in range(count):
        sample = dataset[index]['data_samples']
        predicted = predictor(read_rgb(sample.img_path))
        # The ground-truth sample carries the dataset's meta (img_id, ori_shape, gt_sem_seg ...); the predictor's
        # carries only the prediction, so the prediction joins the ground truth.
        for key in ('pred_instances', 'pred_sem_seg', 'seg_logits'):
            if key in predicted:
                sample.set_field(predicted.get(key), key)
        evaluator.process(data_samples=[sample])
    return evaluator.evaluate(count)
