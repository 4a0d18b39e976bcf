"""CPU fast paths of the ConvNeXt block, each computing what the reference modules compute, chosen per machine.

The kernels (:class:`CpuKernels` names them):

- ``dwconv_weight_grad``: :class:`~convnext_dense.ops.dwconv.DepthwiseConv2d` computes the depthwise convs'
  weight gradient in C++ for float32 CPU training (oneDNN's took a quarter of a ConvNeXt-T training step).
- ``gelu``: :class:`~convnext_dense.ops.gelu.GELU` runs the exact GELU and its gradient in C++ (float32 CPU).
- ``mlp``: the block's inference MLP tail (:mod:`~convnext_dense.ops.fused_mlp`) as one op: ``'onednn'``
  (oneDNN's fused linears) or ``'tiled'`` (C++, the hidden activations kept in cache, tile by tile).
- ``fold_layer_scale``: in training, the layer scale folded into pwconv2's weight where that is cheaper than
  scaling its output (``Block.forward``).

Which pay off depends on the CPU: oneDNN's fused linears are faster than PyTorch's eager MLP with AVX-512 and
slower with AVX2, for one. :func:`machine_kernels` decides once per process from the instruction set PyTorch
reports (``torch.backends.cpu.get_cpu_capability()``), with the table :data:`BY_CPU_CAPABILITY` measured by
``convnext-dense benchmark kernels`` (docs/performance.md). Not a timing at start-up: per-kernel ratios on a
shared 2-core machine move by up to 0.15 from run to run (docs/performance.md), more than most kernels gain,
so a short calibration would flip its verdicts with the neighbours' load, while the instruction set does not.

A model takes its kernels when it is built, or when :func:`set_cpu_kernels` switches them: ``ConvNeXt(
cpu_kernels=None)`` (the default) reads :data:`ENV_VAR`, and without it takes the machine's choice;
``True`` turns every kernel on, ``False`` every kernel off, and a sequence of :data:`KERNEL_NAMES` picks.
:data:`ENV_VAR` takes the same: ``auto``, ``1``, ``0`` or names separated by commas. Each op steps aside where
it would change what a user observes (traces, ``torch.compile``, a forward hook on a module it fuses), and
results are the same either way, to float rounding; only the speed differs.
"""
import dataclasses
import functools
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from convnext_dense.errors import ConfigError

#: Environment variable read by :func:`resolve_cpu_kernels` when a model is built without ``cpu_kernels``.
ENV_VAR = 'CONVNEXT_DENSE_CPU_KERNELS'
#: The inference MLP tail's formulations (``CpuKernels.mlp``).
MLP_KERNELS = ('onednn', 'tiled')
#: Kernel names accepted by ``cpu_kernels=(...)`` and :data:`ENV_VAR`.
KERNEL_NAMES = ('dwconv_weight_grad', 'gelu', 'mlp_onednn', 'mlp_tiled', 'fold_layer_scale')


@dataclasses.dataclass(frozen=True)
class CpuKernels:
    """Which CPU kernels a model uses (see the module docstring for each).

    Args:
        dwconv_weight_grad: C++ weight gradient of the depthwise convs (float32 CPU training).
        gelu: C++ GELU forward and backward (float32 CPU).
        mlp: The inference MLP tail as one op, ``'onednn'`` or ``'tiled'``; None runs the modules one by one.
        fold_layer_scale: Fold the layer scale into pwconv2 where rows outnumber hidden channels (training).
    """

    dwconv_weight_grad: bool = False
    gelu: bool = False
    mlp: Optional[str] = None
    fold_layer_scale: bool = False

    def __post_init__(self) -> None:
        if self.mlp not in (None,) + MLP_KERNELS:
            raise ConfigError(f'CpuKernels: mlp={self.mlp!r}; choose one of {MLP_KERNELS} or None')

    @property
    def names(self) -> tuple:
        """The kernels that are on, as :data:`KERNEL_NAMES` entries."""
        flags = dict(dwconv_weight_grad=self.dwconv_weight_grad, gelu=self.gelu, mlp_onednn=self.mlp == 'onednn',
                     mlp_tiled=self.mlp == 'tiled', fold_layer_scale=self.fold_layer_scale)
        return tuple(name for name in KERNEL_NAMES if flags[name])


NO_KERNELS = CpuKernels()
#: The kernels that pay off, by ``torch.backends.cpu.get_cpu_capability()``: each entry measured with
#: ``convnext-dense benchmark kernels`` on such a CPU (docs/performance.md). Unmeasured instruction sets get none.
BY_CPU_CAPABILITY = {
    # Intel Xeon (AVX-512, no AMX): oneDNN's fused MLP 1.00-1.43x per stage, the fold -16% training time.
    'AVX512': CpuKernels(dwconv_weight_grad=True, mlp='onednn', fold_layer_scale=True),
    # AMD EPYC (Zen, AVX2): oneDNN's fused linears lose to MKL there; the tiled tail and the GELU kernel win.
    'AVX2': CpuKernels(dwconv_weight_grad=True, gelu=True, mlp='tiled', fold_layer_scale=True),
}


def cpu_capability() -> str:
    """The instruction set PyTorch's CPU kernels use here (``'AVX2'``, ``'AVX512'``, ``'DEFAULT'``, ...)."""
    return torch.backends.cpu.get_cpu_capability()


@functools.lru_cache(maxsize=None)
def machine_kernels() -> CpuKernels:
    """The kernels that pay off on this machine's CPU: decided once per process, by its instruction set."""
    return BY_CPU_CAPABILITY.get(cpu_capability(), NO_KERNELS)


def _from_names(names: Sequence[str], where: str) -> CpuKernels:
    unknown = [name for name in names if name not in KERNEL_NAMES]
    if unknown:
        raise ConfigError(f'{where}: unknown CPU kernel {unknown[0]!r}; choose from {", ".join(KERNEL_NAMES)} '
                          f'(or auto, 1, 0)')
    if 'mlp_onednn' in names and 'mlp_tiled' in names:
        raise ConfigError(f'{where}: mlp_onednn and mlp_tiled are two forms of one op; pick one')
    mlp = 'onednn' if 'mlp_onednn' in names else 'tiled' if 'mlp_tiled' in names else None
    return CpuKernels(dwconv_weight_grad='dwconv_weight_grad' in names, gelu='gelu' in names, mlp=mlp,
                      fold_layer_scale='fold_layer_scale' in names)


def _all_kernels() -> CpuKernels:
    return CpuKernels(dwconv_weight_grad=True, gelu=True, mlp=machine_kernels().mlp or 'tiled',
                      fold_layer_scale=True)


Requested = Union[None, bool, str, Sequence[str], CpuKernels]


def resolve_cpu_kernels(requested: Requested = None) -> CpuKernels:
    """The kernels a model built with ``cpu_kernels=requested`` uses.

    Args:
        requested: None (read :data:`ENV_VAR`; unset or ``auto``: :func:`machine_kernels`), True (all),
            False (none), ``'auto'``, a sequence of :data:`KERNEL_NAMES`, or a :class:`CpuKernels`.
    """
    if isinstance(requested, CpuKernels):
        return requested
    where = 'cpu_kernels'
    if requested is None:
        requested, where = os.environ.get(ENV_VAR, 'auto'), ENV_VAR
    if isinstance(requested, str):
        text = requested.strip().lower()
        if text in ('', 'auto'):
            return machine_kernels()
        if text in ('0', 'false', 'off', 'no', 'none'):
            return NO_KERNELS
        if text in ('1', 'true', 'on', 'yes', 'all'):
            return _all_kernels()
        return _from_names([name.strip() for name in text.split(',') if name.strip()], f'{where}={requested}')
    if isinstance(requested, bool):
        return _all_kernels() if requested else NO_KERNELS
    return _from_names(list(requested), f'{where}={tuple(requested)}')


def set_cpu_kernels(model: nn.Module, requested: Requested) -> nn.Module:
    """Switches the CPU kernels of every block, depthwise conv and GELU in ``model``; returns ``model``.

    Args:
        model: A ConvNeXt, a detector holding one, or any module tree.
        requested: As ``ConvNeXt(cpu_kernels=...)`` (see :func:`resolve_cpu_kernels`).
    """
    kernels = resolve_cpu_kernels(requested)
    for module in model.modules():
        if hasattr(module, 'use_cpu_kernels'):
            module.use_cpu_kernels(kernels)
    return model


def cpu_kernels_of(model: nn.Module) -> tuple:
    """The names of the CPU kernels some module of ``model`` uses (for reports and benchmarks)."""
    names = set()
    for module in model.modules():
        if hasattr(module, 'cpu_kernel_names'):
            names.update(module.cpu_kernel_names())
    return tuple(name for name in KERNEL_NAMES if name in names)
