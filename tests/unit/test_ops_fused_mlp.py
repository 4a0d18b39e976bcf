"""The block's fused MLP tail: oneDNN for CPU inference and the layer-scale fold give the reference block's
numbers, are used only where they should be, and step aside for hooks."""
import copy

import pytest
import torch

from convnext_dense.models.convnext import Block, ConvNeXt
from convnext_dense.ops import ENV_VAR, fused_mlp, set_cpu_kernels

SMALL = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128))


def _randomized(model):
    with torch.no_grad():  # init leaves biases 0, layer scales 1 and GRN the identity: make every one count
        for name, p in model.named_parameters():
            if p.dim() == 1 or 'grn' in name:
                p.uniform_(-1.0, 1.0)
    return model


def _record(monkeypatch, name):
    calls, original = [], getattr(fused_mlp, name)
    monkeypatch.setattr(fused_mlp, name, lambda *args: calls.append(original(*args)) or calls[-1])
    return calls


@pytest.mark.parametrize('use_grn, layer_scale', [(False, 1.0), (True, 1.0), (False, 0.0)])
@pytest.mark.parametrize('size', [(64, 96), (544, 512)])
def test_fused_inference_equals_the_reference(monkeypatch, use_grn, layer_scale, size):
    torch.manual_seed(0)
    model = ConvNeXt(SMALL, use_grn=use_grn, layer_scale_init_value=layer_scale).eval()
    model.init_weights()
    _randomized(model)
    reference = set_cpu_kernels(copy.deepcopy(model), False)
    for module in reference.modules():  # a hook on every module: the reference lines everywhere
        module.register_forward_hook(lambda *args: None)
    x = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        calls = _record(monkeypatch, 'uses_onednn')
        fused = model(x)
        want = reference(x)
    assert calls and all(calls), 'every block should have taken the oneDNN branch'
    for got, ref in zip(fused, want):
        assert got.is_contiguous(memory_format=torch.channels_last) == ref.is_contiguous(
            memory_format=torch.channels_last)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5 * ref.abs().max().item())


def test_layer_scale_fold_only_where_rows_outnumber_hidden_channels():
    block = Block(8, layer_scale_init_value=1.0)  # hidden 32
    assert fused_mlp.folds_layer_scale(block, torch.randn(1, 8, 8, 8))  # 64 rows
    assert not fused_mlp.folds_layer_scale(block, torch.randn(1, 4, 8, 8))  # 32 rows: not more than 32
    assert not fused_mlp.folds_layer_scale(Block(8, layer_scale_init_value=0.0), torch.randn(1, 16, 16, 8))


def test_training_outputs_and_gradients_equal_the_reference_block():
    torch.manual_seed(0)
    block = _randomized(Block(16, drop_path=0.3, layer_scale_init_value=1.0))
    reference = copy.deepcopy(block)
    reference.pwconv2.register_forward_hook(lambda *args: None)
    x = torch.randn(2, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    results = []
    for model in (block, reference):
        torch.manual_seed(1)  # same drop-path mask
        xi = x.clone().requires_grad_()
        out = model(xi)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        results.append((out.detach(), xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (out, x_grad, grads), (ref_out, ref_x_grad, ref_grads) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_grad, ref_x_grad, rtol=1e-5, atol=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_onednn_only_for_float32_cpu_inference():
    block = Block(8).eval()
    x = torch.randn(1, 4, 4, 8)  # NHWC activations
    shortcut = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert fused_mlp.uses_onednn(block, x, shortcut)
        assert not fused_mlp.uses_onednn(block.train(), x, shortcut)  # drop path is active in training mode
        block.eval()
        assert not fused_mlp.uses_onednn(block, x.double(), shortcut.double())
        assert not fused_mlp.uses_onednn(block, x, shortcut.contiguous())  # NCHW shortcut: a copy
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_mlp.uses_onednn(block, x, shortcut)
        traced = []
        torch.jit.trace(lambda t: traced.append(fused_mlp.uses_onednn(block, t, shortcut)) or t, x,
                        check_trace=False)
        assert traced == [False]  # FLOP counters trace the model: the plain linears are what they count
        block.cpu_kernels = False
        assert not fused_mlp.uses_onednn(block, x, shortcut)
    block.cpu_kernels = True
    assert not fused_mlp.uses_onednn(block, x, shortcut)  # autograd on: training or input gradients


def test_steps_aside_while_a_fused_module_is_hooked():
    block = Block(8, layer_scale_init_value=1.0).eval()
    x = torch.randn(1, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    normed = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        assert fused_mlp.applies(block, normed, x)
        handle = block.act.register_forward_hook(lambda *args: None)
        assert not fused_mlp.applies(block, normed, x)
        handle.remove()
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
        try:
            assert not fused_mlp.applies(block, normed, x)  # a global hook sees every module too
        finally:
            handle.remove()
        assert fused_mlp.applies(block, normed, x)


def test_onednn_missing_is_probed_once_with_a_warning(monkeypatch):
    class Unsupported:
        def __call__(self, *args):
            raise RuntimeError('mkldnn linear is not supported on this CPU')
        binary = __call__
    monkeypatch.setattr(torch.ops.mkldnn, '_linear_pointwise', Unsupported(), raising=False)
    with pytest.warns(UserWarning, match='not supported on this CPU.*eager MLP'):
        assert fused_mlp.onednn_available.__wrapped__() is False
    monkeypatch.setattr(fused_mlp, 'onednn_available', lambda: False)
    block = Block(8).eval()
    with torch.no_grad():
        assert not fused_mlp.uses_onednn(block, torch.randn(1, 4, 4, 8),
                                         torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last))


def test_one_switch_for_every_cpu_kernel(monkeypatch):
    def switches(model):
        return {m.cpu_kernels for m in model.modules() if hasattr(m, 'cpu_kernels')}
    assert switches(ConvNeXt(SMALL)) == {True}
    assert switches(ConvNeXt(SMALL, cpu_kernels=False)) == {False}
    assert switches(ConvNeXt(SMALL, fast_dwconv_grad=False)) == {False}  # the older name
    monkeypatch.setenv(ENV_VAR, '0')
    model = ConvNeXt(SMALL)
    assert switches(model) == {False}
    assert switches(set_cpu_kernels(model, True)) == {True}
    assert len([m for m in model.modules() if hasattr(m, 'cpu_kernels')]) == 2 * sum(SMALL['depths'])
