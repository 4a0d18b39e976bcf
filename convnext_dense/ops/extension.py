"""The C++ CPU kernels (``csrc/*.cpp``), compiled once on first use and cached.

``torch.utils.cpp_extension.load`` builds them (1-2 min on 2 cores; then cached by PyTorch under
``~/.cache/torch_extensions`` or ``TORCH_EXTENSIONS_DIR``) into a folder of its own per torch installation,
package location and source list: PyTorch rebuilds a cached extension whenever its include paths or source paths
change, so two environments on one machine sharing a folder would rebuild each other's. Without a working
compiler the build fails once, one warning says why, and every op falls back to PyTorch's own path (same
results, PyTorch's speed).
"""
import functools
import hashlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

CSRC = Path(__file__).with_name('csrc')
SOURCES = ('bindings.cpp', 'dwconv_weight_grad.cpp', 'gelu.cpp', 'mlp_tail.cpp')
HEADERS = ('kernels.h', 'gelu.h')
# -march=native: built on the machine that runs it (the AVX2 paths of gelu.h compile only where the CPU has
# AVX2). A home directory shared by machines with different CPUs needs TORCH_EXTENSIONS_DIR set per machine.
# -fopenmp: ATen's parallel_for is inlined from its headers and runs serially unless the extension is compiled
# with OpenMP; the extension then links libgomp.so.1, which resolves to the one PyTorch already loaded (same
# soname), so torch.set_num_threads sets the kernels' threads too.
CFLAGS = ('-O3', '-march=native', '-fopenmp-simd', '-fopenmp')
LDFLAGS = ('-fopenmp',)


def source_paths() -> list:
    return [str(CSRC / name) for name in SOURCES]


def extension_name() -> str:
    """The extension's name, which names its cache folder: one per torch installation, source folder, flags and
    header contents (PyTorch rebuilds when a source changes, but does not look at the headers)."""
    key = '\n'.join([torch.__file__, torch.__version__, str(CSRC), *SOURCES, *CFLAGS, *LDFLAGS]).encode()
    headers = b''.join((CSRC / name).read_bytes() for name in HEADERS if (CSRC / name).is_file())
    return f'convnext_dense_cpu_kernels_{hashlib.sha256(key + headers).hexdigest()[:12]}'


@functools.lru_cache(maxsize=None)
def load() -> Optional[ModuleType]:
    """The compiled kernels, or None (with one warning naming the reason) where they cannot be built."""
    from convnext_dense.ops import ENV_VAR
    try:
        from torch.utils.cpp_extension import load as build
        return build(extension_name(), sources=source_paths(), extra_cflags=list(CFLAGS),
                     extra_ldflags=list(LDFLAGS), extra_include_paths=[str(CSRC)])
    except Exception as err:  # no compiler, no headers, read-only cache: PyTorch's own paths still work
        warnings.warn(f'convnext_dense: could not build the C++ CPU kernels ({err}); the model runs PyTorch\'s '
                      f'own ops instead (same results, slower). Install a C++ compiler (g++), or set {ENV_VAR}=0 '
                      f'or pass cpu_kernels=False to ConvNeXt to silence this.')
        return None
