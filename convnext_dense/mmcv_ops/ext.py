"""What ``mmcv._ext`` holds where mmcv is installed without its compiled ops: :data:`OPS`.

The start-up hook (``_convnext_dense_mmcv_ext.py``, see :mod:`convnext_dense.mmcv_ops`) copies :data:`OPS` into
the ``mmcv._ext`` module it creates. Only these names are answered, with no module ``__getattr__``: tools that
walk ``sys.modules`` (``inspect``, mmengine's registry) read dunder names such as ``__file__`` of every module
and must get the real ones.
"""
from typing import Callable, Dict

from convnext_dense.mmcv_ops.nms import nms, softnms
from convnext_dense.mmcv_ops.roi_align import roi_align_backward, roi_align_forward
from convnext_dense.mmcv_ops.unavailable import unavailable_ops

#: What mmcv's compiled-op queries answer here (mmcv.ops.get_compiler_version, mmengine's environment report).
COMPILER = 'none: mmcv-lite with convnext_dense ops on torchvision (RoIAlign, NMS, soft-NMS)'


def get_compiler_version() -> str:
    """The compiler mmcv's ops were built with: none here."""
    return COMPILER


def get_compiling_cuda_version() -> str:
    """The CUDA version mmcv's ops were built for: none here (torchvision's ops run on CUDA tensors anyway)."""
    return 'not available'


#: The ops computed here, by their names in mmcv's ``_ext``.
PROVIDED: Dict[str, Callable] = {
    'roi_align_forward': roi_align_forward,
    'roi_align_backward': roi_align_backward,
    'nms': nms,
    'softnms': softnms,
    'get_compiler_version': get_compiler_version,
    'get_compiling_cuda_version': get_compiling_cuda_version,
}

#: Every name mmcv 2.1.0's Python modules ask ``_ext`` for.
OPS: Dict[str, Callable] = {**unavailable_ops(), **PROVIDED}
