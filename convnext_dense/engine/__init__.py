"""Training-side pieces registered in the ``convnext_dense`` scope."""
from convnext_dense.engine.hooks import FiniteLossHook, NonFiniteLossError
from convnext_dense.engine.layer_decay import LearningRateDecayOptimizerConstructor

__all__ = ['FiniteLossHook', 'NonFiniteLossError', 'LearningRateDecayOptimizerConstructor']
