"""CPU fast paths of the ConvNeXt block, as drop-in ops that compute what the reference modules compute.

- :class:`~convnext_dense.ops.dwconv.DepthwiseConv2d`: an ``nn.Conv2d`` (same ``weight`` / ``bias``) whose
  float32 CPU training computes the weight gradient with a C++ kernel (``csrc/dwconv_weight_grad.cpp``).
- :mod:`~convnext_dense.ops.fused_mlp`: the block's MLP tail (pwconv1, GELU, GRN, pwconv2, layer scale,
  residual) through oneDNN's fused linears for float32 CPU inference, and the layer-scale fold into pwconv2.

Each op is chosen when the module is built (or switched with :func:`set_cpu_kernels`) and steps aside where
it would change what a user observes: inside traces (FLOP counters, ONNX export), under ``torch.compile``, and
while a forward hook is registered on a module it fuses. One switch turns every CPU kernel off:
``ConvNeXt(cpu_kernels=False)``, :func:`set_cpu_kernels`, or the environment variable
``CONVNEXT_DENSE_CPU_KERNELS=0`` (read when a model is built). Results are the same either way, to float
rounding; only the speed differs.
"""
import os
from typing import Optional

import torch.nn as nn

#: Environment variable read by :func:`cpu_kernels_default`; ``0``, ``false``, ``off`` or ``no`` disable.
ENV_VAR = 'CONVNEXT_DENSE_CPU_KERNELS'


def cpu_kernels_default(requested: Optional[bool] = None) -> bool:
    """Whether a model being built uses the CPU kernels.

    Args:
        requested: An explicit choice (a constructor argument); ``None`` reads :data:`ENV_VAR` (default on).
    """
    if requested is not None:
        return bool(requested)
    return os.environ.get(ENV_VAR, '1').strip().lower() not in ('0', 'false', 'off', 'no')


def set_cpu_kernels(model: nn.Module, enabled: bool) -> nn.Module:
    """Turns the CPU kernels of every block and depthwise conv in ``model`` on or off; returns ``model``.

    Args:
        model: A ConvNeXt, a detector holding one, or any module tree.
        enabled: The new setting.
    """
    for module in model.modules():
        if hasattr(module, 'cpu_kernels'):
            module.cpu_kernels = bool(enabled)
    return model
