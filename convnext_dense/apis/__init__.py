"""Python API: build a detector or segmentor from a config and predict on images (mmdet's
``init_detector`` / ``inference_detector`` style), and write predictions as the ``infer`` command does.

An entry point of the toolkit: importing it installs our mmengine patches (:mod:`convnext_dense.runtime`).
"""
from convnext_dense import runtime  # noqa: F401  (installs the mmengine patches)
from convnext_dense.apis.inference import inference_model, init_model
from convnext_dense.apis.predictions import PredictionWriter

__all__ = ['init_model', 'inference_model', 'PredictionWriter']
