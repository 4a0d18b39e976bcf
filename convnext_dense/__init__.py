"""ConvNeXt for dense prediction on the OpenMMLab stack.

Importing the package registers the backbone, the optimizer constructor and the hooks in the
``convnext_dense`` scope (child registries of mmengine's roots) and changes nothing else: mmengine's own
registries, file backends and checkpoint loaders stay as they are, so any mm-style project can use the
backbone with ``custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)``. It never
imports mmdet or mmseg. Our training and test runs also install a few mmengine patches
(:mod:`convnext_dense.runtime`): the command line, :mod:`convnext_dense.apis` and our configs do so.
"""
from convnext_dense import engine, models  # noqa: F401  (registers modules)
from convnext_dense.version import __version__

__all__ = ['__version__']
