from convnext_dense.errors import CheckpointMismatchError
from convnext_dense.models.arch import ARCH_SETTINGS
from convnext_dense.models.checkpoint import LoadReport, convert_state_dict, load_pretrained
from convnext_dense.models.convnext import ConvNeXt, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'CheckpointMismatchError', 'ConvNeXt', 'LayerNorm2d', 'LoadReport',
           'convert_state_dict', 'load_pretrained']
