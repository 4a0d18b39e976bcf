"""mmcv's compiled ops that convnext_dense's models use, without compiling mmcv.

mmdet 3.3 and mmseg 1.2 need mmcv 2.1.0, which PyPI has only as source (22 minutes of compiling on 2 cores,
and no build at all on some newer torch / CUDA pairs). ``mmcv-lite`` 2.1.0 is the same Python code without
the compiled ``mmcv._ext``; this package provides that module with the three ops our models call, on
torchvision's compiled kernels (CPU and CUDA):

- ``roi_align_forward`` / ``roi_align_backward`` (:mod:`~convnext_dense.mmcv_ops.roi_align`): the RoI heads and
  mask targets of Mask R-CNN and Cascade Mask R-CNN;
- ``nms`` (:mod:`~convnext_dense.mmcv_ops.nms`): RPN proposals and detections, ``batched_nms``;
- ``softnms``: the ConvNeXt V2 detectors' test-time soft-NMS (naive, linear, gaussian).

Every other name mmcv asks for is answered with a function that raises one line naming the op, what uses it
and how to get the compiled mmcv (:mod:`~convnext_dense.mmcv_ops.unavailable`). The module appears as
``mmcv._ext`` through a start-up hook installed with the package (``_convnext_dense_mmcv_ext.py``), only where
mmcv has no compiled ``_ext`` of its own.
"""
import importlib
from typing import Tuple

COMPILED, OURS = 'compiled', 'convnext_dense'


def ext_provider() -> Tuple[str, str]:
    """``(kind, file)`` of the ``mmcv._ext`` in use: kind :data:`COMPILED` (mmcv's own) or :data:`OURS`.

    Raises ImportError (or what loading a broken compiled module raises) when there is none.
    """
    ext = importlib.import_module('mmcv._ext')
    file = str(getattr(ext, '__file__', ''))
    from convnext_dense.mmcv_ops import ext as ours
    return (OURS if file == ours.__file__ else COMPILED), file
