"""The CPU depthwise-conv weight-gradient kernel: same gradients as oneDNN's, used only where it should be."""
import copy

import pytest
import torch
import torch.nn as nn

from convnext_dense.models import dwconv_cpu
from convnext_dense.models.convnext import ConvNeXt


def _grads(fn, x, conv):
    x = x.detach().clone().requires_grad_()
    conv.zero_grad()
    out = fn(x)
    # a non-uniform upstream gradient, so that every tap and channel gets a distinct weight gradient
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
    return out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()


@pytest.mark.parametrize('memory_format', [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize('shape', [(2, 8, 9, 13), (1, 20, 5, 3), (3, 33, 7, 7)])
def test_gradients_match_onednn(shape, memory_format):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], shape[1], 7, padding=3, groups=shape[1])
    x = torch.randn(shape).contiguous(memory_format=memory_format)
    assert dwconv_cpu.fast_depthwise_grad_applies(x, conv), 'the C++ kernel did not build on this machine'
    fast = _grads(lambda t: dwconv_cpu.depthwise_conv2d(t, conv), x, conv)
    reference = _grads(conv, x, conv)
    for name, got, want in zip(('output', 'input grad', 'weight grad', 'bias grad'), fast, reference):
        scale = want.abs().max().item()
        assert (got - want).abs().max().item() <= 1e-5 * scale, name


def test_backbone_gradients_equal_with_and_without_the_kernel():
    torch.manual_seed(0)
    fast = ConvNeXt(dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128)), layer_scale_init_value=1.0)
    fast.init_weights()
    slow = copy.deepcopy(fast)
    for block in slow.modules():
        if hasattr(block, 'fast_dwconv_grad'):
            block.fast_dwconv_grad = False
    x = torch.randn(2, 3, 96, 160).contiguous(memory_format=torch.channels_last)
    for model in (fast, slow):
        sum(o.square().mean() for o in model(x)).backward()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert (p.grad - q.grad).abs().max().item() <= 1e-5 * q.grad.abs().max().item() + 1e-12, name
    # the comparison means something only if the fast model did take the kernel's path
    stem_out = fast.downsample_layers[0](x)
    assert type(dwconv_cpu.depthwise_conv2d(stem_out, fast.stages[0][0].dwconv).grad_fn).__name__.startswith(
        '_DepthwiseConv2d')


def test_used_only_for_float32_training_on_cpu():
    conv = nn.Conv2d(8, 8, 7, padding=3, groups=8)
    x = torch.randn(1, 8, 6, 6)
    assert dwconv_cpu.fast_depthwise_grad_applies(x, conv)
    with torch.no_grad():
        assert not dwconv_cpu.fast_depthwise_grad_applies(x, conv)
    assert not dwconv_cpu.fast_depthwise_grad_applies(x.double(), conv.double())
    conv.weight.requires_grad_(False)  # frozen stage: nothing to gain
    assert not dwconv_cpu.fast_depthwise_grad_applies(x, conv)
    # convolutions the kernel does not compute take the ordinary path
    for other in (nn.Conv2d(8, 8, 7, padding=3), nn.Conv2d(8, 8, 7, stride=2, padding=3, groups=8),
                  nn.Conv2d(8, 8, 7, padding=2, groups=8), nn.Conv2d(8, 8, 7, padding=3, groups=8,
                                                                     padding_mode='reflect')):
        assert not dwconv_cpu.fast_depthwise_grad_applies(x, other)


def test_falls_back_with_a_warning_when_the_kernel_cannot_be_built(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError('no C++ compiler found')
    monkeypatch.setattr(torch.utils.cpp_extension, 'load_inline', no_compiler)
    with pytest.warns(UserWarning, match='no C\\+\\+ compiler found.*fast_dwconv_grad=False'):
        assert dwconv_cpu._extension.__wrapped__() is None
    monkeypatch.setattr(dwconv_cpu, '_extension', lambda: None)
    conv = nn.Conv2d(8, 8, 7, padding=3, groups=8)
    x = torch.randn(1, 8, 6, 6)
    assert not dwconv_cpu.fast_depthwise_grad_applies(x, conv)
    out = dwconv_cpu.depthwise_conv2d(x, conv)
    assert 'Convolution' in type(out.grad_fn).__name__
    assert torch.equal(out, conv(x))
