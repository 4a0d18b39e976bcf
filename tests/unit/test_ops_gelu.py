"""The block's GELU with the C++ kernel: PyTorch's exact GELU and gradient to float rounding, where it should run."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.ops.gelu import GELU

X = torch.linspace(-8, 8, 200_001)


def test_forward_equals_the_exact_gelu():
    got = GELU(kernel=True)(X)
    want = F.gelu(X.double())
    error = (got.double() - want).abs()
    # PyTorch's own float32 GELU: 2.6e-7, 1.9e-7 relative, 2.6e-7
    assert error[(X >= -3) & (X <= 1)].max() < 4e-7
    assert (error / want.abs())[X > 1].max() < 2.5e-7  # a float32 rounding or two
    assert error[X < -3].max() < 1.2e-6  # below -3 GELU is under 4e-3 in size
    assert GELU(kernel=True).uses_kernel(X)


def test_gradient_equals_pytorchs():
    x = X.clone().requires_grad_()
    upstream = torch.cos(X)
    GELU(kernel=True)(x).backward(upstream)
    reference = X.double().requires_grad_()
    F.gelu(reference).backward(upstream.double())
    assert (x.grad.double() - reference.grad).abs().max() < 1e-6


def test_odd_sizes_and_views_take_the_scalar_tail():
    x = torch.randn(3, 5, 7).permute(2, 0, 1)  # 105 elements, not contiguous
    torch.testing.assert_close(GELU(kernel=True)(x), F.gelu(x), rtol=0, atol=1e-6)


def test_kernel_only_for_float32_cpu_untraced():
    gelu = GELU(kernel=True)
    assert isinstance(gelu, nn.GELU) and gelu.approximate == 'none'
    x = torch.randn(4, 8)
    assert gelu.uses_kernel(x) and not gelu.uses_kernel(x.double())
    traced = []
    torch.jit.trace(lambda t: traced.append(gelu.uses_kernel(t)) or t, x, check_trace=False)
    assert traced == [False]  # ONNX export writes the standard ops
    assert not GELU(kernel=False).uses_kernel(x)
    assert type(gelu(x.requires_grad_()).grad_fn).__name__.startswith('_GeluFunction')


@pytest.mark.parametrize('kernel', [False, True])
def test_hooks_see_the_modules_input_and_output(kernel):
    gelu, seen = GELU(kernel=kernel), []
    gelu.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    x = torch.randn(2, 16)
    out = gelu(x)
    assert seen[0][0] is x and seen[0][1] is out
