from convnext_dense.models.checkpoint import (CheckpointMismatchError, LoadReport, convert_state_dict,
                                              load_pretrained)
from convnext_dense.models.convnext import ARCH_SETTINGS, ConvNeXt, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'CheckpointMismatchError', 'ConvNeXt', 'LayerNorm2d', 'LoadReport',
           'convert_state_dict', 'load_pretrained']
