from convnext_dense.models.convnext import ARCH_SETTINGS, ConvNeXt, LayerNorm2d

__all__ = ['ARCH_SETTINGS', 'ConvNeXt', 'LayerNorm2d']
