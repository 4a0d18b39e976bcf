"""The ConvNeXt backbone (registered as ``convnext_dense.ConvNeXt``) and, for convenience, the checkpoint
functions users call beside it (their home is :mod:`convnext_dense.checkpoint`)."""
from convnext_dense.arch import ARCH_SETTINGS
from convnext_dense.checkpoint import LoadReport, convert_state_dict, load_pretrained
from convnext_dense.errors import CheckpointMismatchError
from convnext_dense.models.convnext import ConvNeXt, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'CheckpointMismatchError', 'ConvNeXt', 'LayerNorm2d', 'LoadReport',
           'convert_state_dict', 'load_pretrained']
