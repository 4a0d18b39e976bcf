"""Start-up hook of convnext_dense: provides ``mmcv._ext`` where mmcv is installed without its compiled ops.

The package installs ``convnext_dense_mmcv_ext.pth`` into site-packages beside this module, and Python runs
that file's one line, :func:`install`, at every start-up: so the provider is in place whatever a script imports
first (mmdet, mmseg, mmcv or convnext_dense). Start-up only appends :class:`MmcvExtFinder` to ``sys.meta_path``
(this module imports nothing else); the ops and torch load when something imports ``mmcv._ext``. Being last,
the finder is asked only after Python's own finders found no ``_ext`` in mmcv's folder: a compiled mmcv is
always used where it is installed. ``CONVNEXT_DENSE_MMCV_EXT=0`` turns the hook off. Why a start-up hook:
docs/design.md, "mmcv ops without compiling mmcv".
"""
import importlib
import os
import sys
from importlib.machinery import ModuleSpec

MODULE = 'mmcv._ext'
IMPLEMENTATION = 'convnext_dense.mmcv_ops.ext'
ENV_VAR = 'CONVNEXT_DENSE_MMCV_EXT'


class MmcvExtFinder:
    """Finds and loads ``mmcv._ext`` as a module holding ``convnext_dense.mmcv_ops.ext.OPS``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != MODULE:
            return None
        return ModuleSpec(fullname, self, origin=IMPLEMENTATION)

    def create_module(self, spec):
        return None  # a plain module, filled by exec_module

    def exec_module(self, module) -> None:
        implementation = importlib.import_module(IMPLEMENTATION)
        module.__dict__.update(implementation.OPS)
        module.__file__ = implementation.__file__
        module.__doc__ = implementation.__doc__


def install() -> None:
    """Appends the finder to ``sys.meta_path`` once, unless ``CONVNEXT_DENSE_MMCV_EXT=0``."""
    if os.environ.get(ENV_VAR, '1').strip().lower() in ('0', 'false', 'off', 'no'):
        return
    if not any(isinstance(finder, MmcvExtFinder) for finder in sys.meta_path):
        sys.meta_path.append(MmcvExtFinder())
