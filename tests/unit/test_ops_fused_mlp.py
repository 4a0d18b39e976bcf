"""The block's inference MLP tail (oneDNN and the tiled C++ kernel) and the layer-scale fold give the reference
block's numbers, run only where they should, and step aside for hooks."""
import copy

import pytest
import torch

from convnext_dense.models.convnext import Block, ConvNeXt
from convnext_dense.ops import CpuKernels, fused_mlp, set_cpu_kernels

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


@pytest.mark.parametrize('kind', ['tiled', 'onednn'])
@pytest.mark.parametrize('use_grn, layer_scale', [(False, 1.0), (True, 1.0), (False, 0.0)])
@pytest.mark.parametrize('size', [(64, 96), (544, 512)])
def test_fused_inference_equals_the_reference(monkeypatch, kind, use_grn, layer_scale, size):
    torch.manual_seed(0)
    model = ConvNeXt(SMALL, use_grn=use_grn, layer_scale_init_value=layer_scale,
                     cpu_kernels=CpuKernels(mlp=kind)).eval()
    model.init_weights()
    _randomized(model)
    reference = set_cpu_kernels(copy.deepcopy(model), False)
    x = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        calls = _record(monkeypatch, 'forward')
        fused = model(x)
        want = reference(x)
    # the tiled kernel needs the whole hidden map of a GRN block: those run the modules one by one
    assert len(calls) == (0 if use_grn and kind == 'tiled' else sum(SMALL['depths']))
    for got, ref in zip(fused, want):
        assert got.is_contiguous() == ref.is_contiguous()
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-5 * ref.abs().max().item())


def test_tiled_kernel_equals_the_reference_single_threaded_too():
    """One thread runs the rows tile by tile (more than one tile here), more threads as one: same numbers."""
    torch.manual_seed(0)
    block = _randomized(Block(32, layer_scale_init_value=1.0, cpu_kernels=CpuKernels(mlp='tiled'))).eval()
    reference = set_cpu_kernels(copy.deepcopy(block), False)
    x = torch.randn(2, 32, 24, 40).contiguous(memory_format=torch.channels_last)  # 1920 rows: 4 tiles of 512
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.no_grad():
                torch.testing.assert_close(block(x), reference(x), rtol=0, atol=1e-5 * reference(x).abs().max())
    finally:
        torch.set_num_threads(threads)


def test_layer_scale_fold_only_where_rows_outnumber_hidden_channels():
    block = Block(8, layer_scale_init_value=1.0, cpu_kernels=CpuKernels(fold_layer_scale=True))  # hidden 32
    assert fused_mlp.folds_layer_scale(block, torch.randn(1, 8, 8, 32))  # 64 rows
    assert not fused_mlp.folds_layer_scale(block, torch.randn(1, 4, 8, 32))  # 32 rows: not more than 32
    no_scale = Block(8, layer_scale_init_value=0.0, cpu_kernels=CpuKernels(fold_layer_scale=True))
    assert not fused_mlp.folds_layer_scale(no_scale, torch.randn(1, 16, 16, 32))
    assert not fused_mlp.folds_layer_scale(Block(8, cpu_kernels=False), torch.randn(1, 8, 8, 32))


def test_training_outputs_and_gradients_equal_the_reference_block():
    torch.manual_seed(0)
    block = _randomized(Block(16, drop_path=0.3, layer_scale_init_value=1.0, cpu_kernels=True))
    reference = set_cpu_kernels(copy.deepcopy(block), False)
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


def test_mlp_kernel_only_for_float32_cpu_inference():
    block = Block(8, cpu_kernels=CpuKernels(mlp='onednn')).eval()
    x = torch.randn(1, 4, 4, 8)  # NHWC activations
    with torch.no_grad():
        assert fused_mlp.applies(block, x)
        assert not fused_mlp.applies(block.train(), x)  # drop path is active in training mode
        block.eval()
        assert not fused_mlp.applies(block, x.double())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_mlp.applies(block, x)
        traced = []
        torch.jit.trace(lambda t: traced.append(fused_mlp.applies(block, t)) or t, x, check_trace=False)
        assert traced == [False]  # FLOP counters and ONNX export trace: the plain linears are what they count
    assert not fused_mlp.applies(block, x)  # autograd on: training or input gradients


def test_steps_aside_while_a_fused_module_is_hooked():
    block = Block(8, layer_scale_init_value=1.0, cpu_kernels=CpuKernels(mlp='tiled')).eval()
    normed = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        assert fused_mlp.applies(block, normed)
        for name in fused_mlp.FUSED_MODULES:
            handle = getattr(block, name).register_forward_hook(lambda *args: None)
            assert not fused_mlp.applies(block, normed), name
            handle.remove()
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
        try:
            assert not fused_mlp.applies(block, normed)  # a global hook sees every module too
        finally:
            handle.remove()
        assert fused_mlp.applies(block, normed)


def test_onednn_missing_is_probed_once_with_a_warning(monkeypatch):
    class Unsupported:
        def __call__(self, *args):
            raise RuntimeError('mkldnn linear is not supported on this CPU')
        binary = __call__
    monkeypatch.setattr(torch.ops.mkldnn, '_linear_pointwise', Unsupported(), raising=False)
    with pytest.warns(UserWarning, match='not supported on this CPU.*eager MLP'):
        assert fused_mlp.onednn_available.__wrapped__() is False
    monkeypatch.setattr(fused_mlp, 'onednn_available', lambda: False)
    block = Block(8, cpu_kernels=CpuKernels(mlp='onednn')).eval()
    with torch.no_grad():
        assert not fused_mlp.applies(block, torch.randn(1, 4, 4, 8))
