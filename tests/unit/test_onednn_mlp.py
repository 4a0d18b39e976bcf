"""The block MLP's fused oneDNN path for CPU inference: same outputs as the eager path, used only where it should be."""
import pytest
import torch

from convnext_dense.models import onednn_mlp
from convnext_dense.models.convnext import ConvNeXt

SMALL = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128))


def _fused_calls(monkeypatch):
    calls = []
    original = onednn_mlp.linear_add
    monkeypatch.setattr(onednn_mlp, 'linear_add', lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.mark.parametrize('use_grn, layer_scale', [(False, 1.0), (True, 1.0), (False, 0.0)])
# 64x96: stages 3-4 have fewer pixels than hidden channels and scale their output instead of folding layer scale
# into pwconv2 (2 of 5 blocks fold); 544x512: every block folds
@pytest.mark.parametrize('size, folding_blocks', [((64, 96), 2), ((544, 512), 5)])
def test_fused_inference_equals_the_eager_path(monkeypatch, use_grn, layer_scale, size, folding_blocks):
    torch.manual_seed(0)
    model = ConvNeXt(SMALL, use_grn=use_grn, layer_scale_init_value=layer_scale).eval()
    model.init_weights()
    with torch.no_grad():  # init leaves biases 0, layer scales 1 and GRN the identity: make every one count
        for name, p in model.named_parameters():
            if p.dim() == 1 or 'grn' in name:
                p.uniform_(-1.0, 1.0)
    x = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        calls = _fused_calls(monkeypatch)
        fused = model(x)
        monkeypatch.setattr(onednn_mlp, 'applies', lambda *args: False)
        eager = model(x)
    # blocks that fold (or have no) layer scale add the residual in oneDNN; the rest scale the output first
    assert len(calls) == (folding_blocks if layer_scale else sum(SMALL['depths']))
    for got, want in zip(fused, eager):
        assert got.is_contiguous(memory_format=torch.channels_last) == want.is_contiguous(
            memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * want.abs().max().item())


def test_used_only_for_float32_cpu_inference():
    x = torch.randn(1, 4, 4, 8)  # NHWC activations
    shortcut = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert onednn_mlp.applies(x, shortcut, training=False)
        assert not onednn_mlp.applies(x, shortcut, training=True)  # drop path is active in training mode
        assert not onednn_mlp.applies(x.double(), shortcut.double(), training=False)
        assert not onednn_mlp.applies(x, shortcut.contiguous(), training=False)  # NCHW shortcut: a copy
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not onednn_mlp.applies(x, shortcut, training=False)
        traced = []
        torch.jit.trace(lambda t: traced.append(onednn_mlp.applies(t, shortcut, training=False)) or t, x,
                        check_trace=False)
        assert traced == [False]  # FLOP counters trace the model: the plain linears are what they count
    assert not onednn_mlp.applies(x, shortcut, training=False)  # autograd on: training or input gradients


def test_training_and_gradients_do_not_take_the_fused_path(monkeypatch):
    calls = _fused_calls(monkeypatch)
    model = ConvNeXt(SMALL).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    sum(o.sum() for o in model(x)).backward()  # eval mode with autograd: e.g. gradients w.r.t. the input
    assert calls == [] and x.grad is not None


def test_falls_back_with_one_warning_when_onednn_fails(monkeypatch):
    monkeypatch.setattr(onednn_mlp, '_UNAVAILABLE', [])

    def unsupported(*args):
        raise RuntimeError('mkldnn linear is not supported on this CPU')
    monkeypatch.setattr(onednn_mlp, 'linear_gelu', unsupported)
    torch.manual_seed(0)
    model = ConvNeXt(SMALL).eval()
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with pytest.warns(UserWarning, match='not supported on this CPU.*eager MLP') as record:
            first = model(x)
        assert len(record) == 1  # one warning, then the eager path for every block
        monkeypatch.setattr(onednn_mlp, 'applies', lambda *args: False)
        eager = model(x)
    assert all(torch.equal(a, b) for a, b in zip(first, eager))
