"""The C++ kernels run on PyTorch's threads: built with OpenMP, so ATen's parallel_for splits their work, and
the results do not depend on how many threads share it."""
import contextlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.ops import dwconv, extension
from convnext_dense.ops.gelu import GELU


@contextlib.contextmanager
def threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_the_kernels_are_built_with_openmp():
    """Without OpenMP, ATen's parallel_for (inlined from its headers) runs every kernel on one thread."""
    module = extension.load()
    assert module is not None, 'the C++ kernels did not build on this machine'
    binary = open(module.__file__, 'rb').read()
    assert b'GOMP_parallel' in binary and b'libgomp.so.1' in binary
    assert '-fopenmp' in extension.CFLAGS and '-fopenmp' in extension.LDFLAGS


def test_gelu_is_the_same_on_one_and_two_threads():
    x = torch.linspace(-8, 8, 200_001)  # many grains of the kernel's parallel_for
    upstream = torch.cos(x)
    results = []
    for count in (1, 2):
        with threads(count):
            leaf = x.clone().requires_grad_()
            out = GELU(kernel=True)(leaf)
            out.backward(upstream)
            results.append((out.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    torch.testing.assert_close(results[1][0], F.gelu(x), rtol=0, atol=1e-6)


def test_depthwise_weight_gradient_on_two_threads_matches_onednn():
    torch.manual_seed(0)
    fast = dwconv.DepthwiseConv2d(24, 7, weight_grad_kernel=True)
    reference = nn.Conv2d(24, 24, 7, padding=3, groups=24)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(4, 24, 14, 14).contiguous(memory_format=torch.channels_last)  # 56 rows for the threads
    upstream = torch.linspace(-1, 1, x.numel()).reshape(x.shape)
    with threads(2):
        assert fast.uses_kernel(x)
        fast(x).backward(upstream)
        reference(x).backward(upstream)
    want = reference.weight.grad
    assert (fast.weight.grad - want).abs().max().item() <= 1e-5 * want.abs().max().item()


@pytest.mark.parametrize('rows', [5, 700])
def test_mlp_tail_on_two_threads_equals_the_modules(rows):
    torch.manual_seed(0)
    channels, hidden = 16, 64
    x, shortcut = torch.randn(rows, channels), torch.randn(rows, channels)
    w1, b1 = torch.randn(hidden, channels) / 4, torch.randn(hidden)
    w2, b2 = torch.randn(channels, hidden) / 8, torch.randn(channels)
    with threads(2):
        out = extension.load().mlp_tail(x, shortcut, w1, b1, w2, b2)
    want = shortcut + F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
