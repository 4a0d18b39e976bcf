"""ConvNeXt for dense prediction on the OpenMMLab stack.

Importing the package registers the backbone and the optimizer constructors in the ``convnext_dense``
scope; configs only need ``custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)``.
It never imports mmdet or mmseg.
"""
from convnext_dense import mmengine_patches  # noqa: F401  (installs the checkpoint-loading fix first)
from convnext_dense import engine, models  # noqa: F401  (registers modules)
from convnext_dense.version import __version__

__all__ = ['__version__']
