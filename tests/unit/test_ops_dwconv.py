"""The depthwise conv with the CPU weight-gradient kernel: same gradients as oneDNN's, used only where it should be."""
import copy

import pytest
import torch
import torch.nn as nn

from convnext_dense.models.convnext import ConvNeXt
from convnext_dense.ops import dwconv, extension, set_cpu_kernels


def _grads(x, conv):
    x = x.detach().clone().requires_grad_()
    conv.zero_grad()
    out = conv(x)
    # a non-uniform upstream gradient, so that every tap and channel gets a distinct weight gradient
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
    return out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()


@pytest.mark.parametrize('memory_format', [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize('shape', [(2, 8, 9, 13), (1, 20, 5, 3), (3, 33, 7, 7)])
def test_gradients_match_onednn(shape, memory_format):
    torch.manual_seed(0)
    fast = dwconv.DepthwiseConv2d(shape[1], 7, weight_grad_kernel=True)
    reference = nn.Conv2d(shape[1], shape[1], 7, padding=3, groups=shape[1])
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(shape).contiguous(memory_format=memory_format)
    assert fast.uses_kernel(x), 'the C++ kernel did not build on this machine'
    for name, got, want in zip(('output', 'input grad', 'weight grad', 'bias grad'), _grads(x, fast),
                               _grads(x, reference)):
        assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item(), name


def test_is_a_conv2d_with_the_same_state_dict_keys():
    conv = dwconv.DepthwiseConv2d(8, 7)
    assert isinstance(conv, nn.Conv2d)
    assert set(conv.state_dict()) == {'weight', 'bias'}
    assert conv.weight.shape == (8, 1, 7, 7) and conv.padding == (3, 3) and conv.groups == 8
    with pytest.raises(ValueError, match='odd'):
        dwconv.DepthwiseConv2d(8, 4)


def test_backbone_gradients_equal_with_and_without_the_kernel():
    torch.manual_seed(0)
    fast = ConvNeXt(dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128)), layer_scale_init_value=1.0,
                    cpu_kernels=('dwconv_weight_grad',))
    fast.init_weights()
    slow = set_cpu_kernels(copy.deepcopy(fast), False)
    x = torch.randn(2, 3, 96, 160).contiguous(memory_format=torch.channels_last)
    outputs = {}
    for name, model in (('fast', fast), ('slow', slow)):
        outputs[name] = model(x)
        sum(o.square().mean() for o in outputs[name]).backward()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert (p.grad - q.grad).abs().max().item() <= 1e-5 * q.grad.abs().max().item() + 1e-12, name
    # the comparison means something only if the fast model did take the kernel's path, and the slow one not
    stem_out = fast.downsample_layers[0](x)
    assert type(fast.stages[0][0].dwconv(stem_out).grad_fn).__name__.startswith('_DepthwiseConv2dFunction')
    assert 'Convolution' in type(slow.stages[0][0].dwconv(stem_out).grad_fn).__name__


def test_used_only_for_float32_training_on_cpu_untraced():
    conv = dwconv.DepthwiseConv2d(8, 7, weight_grad_kernel=True)
    x = torch.randn(1, 8, 6, 6)
    assert conv.uses_kernel(x)
    with torch.no_grad():
        assert not conv.uses_kernel(x)
    assert not copy.deepcopy(conv).double().uses_kernel(x.double())
    traced = []
    torch.jit.trace(lambda t: traced.append(conv.uses_kernel(t)) or t, x, check_trace=False)
    assert traced == [False]  # FLOP counters and ONNX export trace: they must see the convolution
    conv.weight_grad_kernel = False
    assert not conv.uses_kernel(x)
    conv.weight_grad_kernel = True
    conv.weight.requires_grad_(False)  # frozen stage: nothing to gain
    assert not conv.uses_kernel(x)


def test_falls_back_with_a_warning_when_the_kernel_cannot_be_built(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError('no C++ compiler found')
    monkeypatch.setattr(torch.utils.cpp_extension, 'load', no_compiler)
    with pytest.warns(UserWarning, match='no C\\+\\+ compiler found.*CONVNEXT_DENSE_CPU_KERNELS=0'):
        assert extension.load.__wrapped__() is None
    monkeypatch.setattr(extension, 'load', lambda: None)
    conv = dwconv.DepthwiseConv2d(8, 7, weight_grad_kernel=True)
    x = torch.randn(1, 8, 6, 6)
    assert not conv.uses_kernel(x)
    out = conv(x)
    assert 'Convolution' in type(out.grad_fn).__name__


def test_the_kernel_sources_ship_as_cpp_files():
    assert all(path.endswith('.cpp') for path in extension.source_paths())
    assert 'depthwise_weight_grad' in (extension.CSRC / 'dwconv_weight_grad.cpp').read_text()


def test_each_environment_builds_into_a_cache_folder_of_its_own(monkeypatch, tmp_path):
    """PyTorch rebuilds a cached extension whose include or source paths changed: environments on one machine
    (another venv, another clone) get their own folder instead of rebuilding each other's."""
    name = extension.extension_name()
    assert name == extension.extension_name() and name.isidentifier()
    assert name.startswith('convnext_dense_cpu_kernels_')
    monkeypatch.setattr(extension, 'CSRC', tmp_path / 'other_clone' / 'csrc')
    assert extension.extension_name() != name
    monkeypatch.undo()
    monkeypatch.setattr(torch, '__file__', str(tmp_path / 'other_venv' / 'torch' / '__init__.py'))
    assert extension.extension_name() != name
