"""Registries of the ``convnext_dense`` scope, children of mmengine's roots.

Because they hang under mmengine's root registries, mmdet's and mmseg's builders find them by scope:
``type='convnext_dense.ConvNeXt'`` and ``constructor='convnext_dense.<Name>'`` resolve from configs whose
default scope is ``mmdet`` or ``mmseg``, once ``convnext_dense`` is imported (``custom_imports``). The dataset
and metric registries import their module (which needs mmdet) only when a config asks for one of them, so
importing ``convnext_dense`` still imports neither mmdet nor mmseg.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='convnext_dense',
                  locations=['convnext_dense.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='convnext_dense', locations=['convnext_dense.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='convnext_dense', locations=['convnext_dense.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='convnext_dense',
                    locations=['convnext_dense.datasets.coco'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='convnext_dense',
                   locations=['convnext_dense.datasets.coco'])
