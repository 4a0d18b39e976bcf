"""The ConvNeXt backbone: output contract, arguments, training behaviour, build through mm registries,
params / FLOPs against the V1 paper and the V2 table, and GRN in half precision."""
import copy
from typing import Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from convnext_dense.models import ARCH_SETTINGS, ConvNeXt
from convnext_dense.models.convnext import Block, GlobalResponseNorm, LayerNorm2d, is_channels_last
from convnext_dense.ops import set_cpu_kernels

SMALL_ARCH = dict(depths=(1, 1, 3, 1), channels=(8, 16, 32, 64))


def small_convnext(**kwargs) -> ConvNeXt:
    model = ConvNeXt(arch=SMALL_ARCH, **kwargs)
    model.init_weights()
    return model


def test_outputs_are_normalized_nchw_maps_at_strides_4_to_32():
    model = small_convnext(out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 4
    assert model.out_channels == (8, 16, 32, 64)
    assert model.out_strides == (4, 8, 16, 32)
    for out, channels, stride in zip(outs, model.out_channels, model.out_strides):
        assert out.shape == (2, channels, 64 // stride, 96 // stride)
        # norm{i} at init (weight 1, bias 0) leaves every pixel with zero mean over channels.
        torch.testing.assert_close(out.mean(dim=1), torch.zeros_like(out[:, 0]), atol=1e-5, rtol=0)
    assert [info['num_chs'] for info in model.feature_info] == [8, 16, 32, 64]
    assert [info['reduction'] for info in model.feature_info] == [4, 8, 16, 32]


def test_official_parameter_names():
    names = set(dict(ConvNeXt('tiny').named_parameters()))
    for name in ('downsample_layers.0.0.weight', 'downsample_layers.0.1.bias', 'downsample_layers.3.1.weight',
                 'stages.2.8.dwconv.weight', 'stages.2.8.norm.weight', 'stages.2.8.pwconv1.weight',
                 'stages.2.8.pwconv2.bias', 'stages.2.8.gamma', 'norm0.weight', 'norm3.bias'):
        assert name in names


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_arch_table(arch):
    with torch.device('meta'):
        model = ConvNeXt(arch)
    depths, channels = ARCH_SETTINGS[arch]
    assert tuple(len(stage) for stage in model.stages) == depths
    assert model.out_channels == channels


@pytest.mark.parametrize('arch', ['tinny', dict(depths=(3, 3, 9), channels=(96, 192, 384, 768)),
                                  dict(depths=(3, 3, 9, 3)), 7])
def test_bad_arch_names_the_valid_choices(arch):
    with pytest.raises(ValueError, match='tiny'):
        ConvNeXt(arch)


def test_out_indices_negative_sorted_and_caller_list_untouched():
    requested = [-1, 1]
    model = small_convnext(out_indices=requested)
    assert requested == [-1, 1]
    assert model.out_indices == (1, 3)
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 64]


@pytest.mark.parametrize('out_indices', [(4,), (-5,), (0, 0), ()])
def test_bad_out_indices(out_indices):
    with pytest.raises(ValueError, match='out_indices'):
        ConvNeXt(SMALL_ARCH, out_indices=out_indices)


def test_drop_path_rate_grows_linearly_over_all_blocks():
    model = ConvNeXt(SMALL_ARCH, drop_path_rate=0.3)
    rates = [getattr(block.drop_path, 'drop_prob', 0.0) for stage in model.stages for block in stage]
    expected = torch.linspace(0, 0.3, 6).tolist()
    assert rates == pytest.approx(expected)
    assert isinstance(model.stages[0][0].drop_path, nn.Identity)


def test_drop_path_is_active_in_training_only():
    model = small_convnext(drop_path_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    model.train()
    torch.manual_seed(1)
    train_out = model(x)[-1]
    model.eval()
    eval_out = model(x)[-1]
    assert not torch.allclose(train_out, eval_out)
    torch.testing.assert_close(model(x)[-1], eval_out)


def test_layer_scale_zero_disables_gamma_and_v2_blocks_have_grn():
    model = ConvNeXt(SMALL_ARCH, layer_scale_init_value=0.0, use_grn=True)
    names = set(dict(model.named_parameters()))
    assert not any(name.endswith('.gamma') and '.grn.' not in name for name in names)
    # 1-D, as in timm and mmpretrain: every OpenMMLab optimizer constructor leaves 1-D parameters undecayed.
    assert model.stages[0][0].grn.gamma.shape == (32,)
    assert ConvNeXt(SMALL_ARCH, layer_scale_init_value=0.5).stages[1][0].gamma.eq(0.5).all()


def test_frozen_stages_stay_frozen_and_in_eval_mode():
    model = small_convnext(frozen_stages=2, drop_path_rate=0.2)
    assert model.train() is model
    frozen = [model.downsample_layers[0], model.downsample_layers[1], model.stages[0], model.stages[1]]
    trained = [model.downsample_layers[2], model.stages[2], model.stages[3], model.norm0]
    for module in frozen:
        assert not any(m.training for m in module.modules())
        assert not any(p.requires_grad for p in module.parameters())
    for module in trained:
        assert all(m.training for m in module.modules())
        assert all(p.requires_grad for p in module.parameters())
    before = {k: v.clone() for k, v in model.stages[1].state_dict().items()}
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert model.stages[2][0].dwconv.weight.grad is not None
    model.eval().train()
    assert not model.stages[1].training and model.stages[2].training
    for key, value in model.stages[1].state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_bad_frozen_stages():
    with pytest.raises(ValueError, match='frozen_stages'):
        ConvNeXt(SMALL_ARCH, frozen_stages=5)


def _outputs_and_grads(with_cp: bool):
    torch.manual_seed(0)
    model = ConvNeXt(SMALL_ARCH, drop_path_rate=0.3, layer_scale_init_value=0.5, with_cp=with_cp).train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    saved_bytes = [0]

    def pack(tensor):
        saved_bytes[0] += tensor.numel() * tensor.element_size()
        return tensor

    torch.manual_seed(1)  # same drop-path masks with and without checkpointing
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outs = model(x)
    sum((o * torch.arange(o.numel()).reshape(o.shape).sin()).sum() for o in outs).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return outs, grads, x.grad, saved_bytes[0]


def test_with_cp_gives_identical_outputs_and_gradients_with_fewer_saved_activations():
    outs, grads, input_grad, saved = _outputs_and_grads(with_cp=False)
    cp_outs, cp_grads, cp_input_grad, cp_saved = _outputs_and_grads(with_cp=True)
    for out, cp_out in zip(outs, cp_outs):
        torch.testing.assert_close(cp_out, out, atol=0, rtol=0)
    assert grads.keys() == cp_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(cp_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(cp_input_grad, input_grad, atol=1e-6, rtol=1e-5)
    assert cp_saved < saved / 2


@pytest.mark.parametrize('height,width', [(97, 131), (32, 33), (224, 100)])
def test_any_input_size_floors_each_downsampling(height, width):
    model = small_convnext().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, height, width))
    for i, out in enumerate(outs):
        assert out.shape[-2:] == (height // 4 // 2 ** i, width // 4 // 2 ** i)


def test_too_small_or_wrong_channel_inputs_are_refused():
    model = small_convnext()
    with pytest.raises(ValueError, match='32x32'):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match='N x 3 x H x W'):
        model(torch.randn(1, 1, 64, 64))
    assert small_convnext(in_channels=1)(torch.randn(1, 1, 64, 64))[0].shape == (1, 8, 16, 16)


def test_channels_last_gives_the_same_numbers():
    model = small_convnext(layer_scale_init_value=0.5).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        reference = model(x)
        from_channels_last_input = model(x.to(memory_format=torch.channels_last))
        model = model.to(memory_format=torch.channels_last)
        channels_last_model = model(x.to(memory_format=torch.channels_last))
    for ref, a, b in zip(reference, from_channels_last_input, channels_last_model):
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-5)


def test_outputs_keep_the_input_memory_format():
    # The blocks run channels-last inside; an NCHW caller (mmdet, mmseg) must still get NCHW-contiguous maps,
    # which mmcv's RoIAlign assumes (see test_foundation.py).
    model = small_convnext().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(out.is_contiguous() for out in model(x))
        channels_last = model(x.to(memory_format=torch.channels_last))
    assert all(is_channels_last(out) for out in channels_last)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_through_mm_registries(scope):
    from mmengine.registry import DefaultScope, init_default_scope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    init_default_scope(scope)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type='convnext_dense.ConvNeXt', arch=SMALL_ARCH, out_indices=(1, 2)))
    assert isinstance(model, ConvNeXt)
    assert model.out_channels == (16, 32)


class ImageNetClassifier(nn.Module):
    """The paper's classifier: backbone, global average pool, LayerNorm, 1000-way linear head."""

    def __init__(self, arch: str, **kwargs) -> None:
        super().__init__()
        self.backbone = ConvNeXt(arch, out_indices=(3,), **kwargs)
        self.backbone.norm3 = nn.Identity()  # the classifier normalizes after pooling instead
        channels = self.backbone.channels[-1]
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.head = nn.Linear(channels, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.backbone(x)[0].mean(dim=(-2, -1))))


# Table 1 / 10 of the paper at 224x224: params and FLOPs (multiply-adds, fvcore convention).
PAPER_COMPLEXITY = {'tiny': (28.6e6, 4.5e9), 'small': (50e6, 8.7e9), 'base': (89e6, 15.4e9),
                    'large': (198e6, 34.4e9), 'xlarge': (350e6, 60.9e9)}


# large and xlarge trace a 34-61 GFLOP forward on the CPU: in the full suite only
@pytest.mark.parametrize('arch', [pytest.param(a, marks=pytest.mark.slow) if a in ('large', 'xlarge') else a
                                  for a in PAPER_COMPLEXITY])
def test_params_and_flops_match_the_paper(arch):
    with torch.device('meta'):  # skip 350M-parameter random init: FLOPs do not depend on values
        model = ImageNetClassifier(arch)
    model = model.to_empty(device='cpu').eval()
    for param in model.parameters():
        param.data.zero_()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 224, 224),))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        flops = analyzer.total()
    paper_params, paper_flops = PAPER_COMPLEXITY[arch]
    assert params == pytest.approx(paper_params, rel=0.01)
    assert flops == pytest.approx(paper_flops, rel=0.01)


MODES = {'train': (True, True), 'eval, no grad': (False, False), 'eval, grad': (False, True)}


def _own_computation(module, inputs):
    if isinstance(module, nn.Linear):
        return nn.functional.linear(inputs, module.weight, module.bias)
    if isinstance(module, nn.Conv2d):
        return nn.functional.conv2d(inputs, module.weight, module.bias, module.stride, module.padding,
                                    module.dilation, module.groups)
    if isinstance(module, (nn.GELU, nn.LayerNorm)):
        return type(module).forward(module, inputs)
    return None


@pytest.mark.parametrize('mode', list(MODES))
@pytest.mark.parametrize('use_grn', [False, True])
@pytest.mark.parametrize('hooked', ['every module', 'dwconv', 'pwconv1', 'act', 'pwconv2', 'drop_path'])
def test_every_module_hook_fires_and_sees_its_own_input_and_output(mode, use_grn, hooked):
    training, grad = MODES[mode]
    torch.manual_seed(0)
    model = small_convnext(drop_path_rate=0.2, layer_scale_init_value=1.0, use_grn=use_grn).train(training)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (module, inputs[0].detach(), output.detach())
        return hook
    names = {name for name, module in model.named_modules()  # containers are never called themselves
             if name and not isinstance(module, nn.ModuleList)
             and (hooked == 'every module' or name.endswith('.' + hooked))}
    for name in names:
        model.get_submodule(name).register_forward_hook(record(name))
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.set_grad_enabled(grad):
        model(x)
    assert set(seen) == names and len(names) >= 6
    for name, (module, inputs, output) in seen.items():
        want = _own_computation(module, inputs)
        if want is not None:
            torch.testing.assert_close(output, want.detach(), rtol=1e-5, atol=1e-5, msg=name)


def test_fast_paths_give_the_reference_blocks_outputs_and_gradients():
    torch.manual_seed(0)
    fast = small_convnext(drop_path_rate=0.2, layer_scale_init_value=0.5)
    reference = copy.deepcopy(fast)
    set_cpu_kernels(reference, False)
    for module in reference.modules():  # fused paths step aside for hooks: the reference lines everywhere
        module.register_forward_hook(lambda *args: None)
    x = torch.randn(2, 3, 96, 64).contiguous(memory_format=torch.channels_last)
    for training in (True, False):
        results = []
        for model in (fast, reference):
            torch.manual_seed(1)
            model.zero_grad()
            outs = model.train(training)(x)
            sum((o * o.detach().sin()).sum() for o in outs).backward()
            results.append(([o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()}))
        (outs, grads), (ref_outs, ref_grads) = results
        for out, ref in zip(outs, ref_outs):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        for name, grad in ref_grads.items():
            # Float rounding grows with the sums behind a gradient: the stem and downsampling convs' weight
            # gradients reach ~1e2 here, and the C++ GELU's derivative differs from PyTorch's in the 7th digit.
            atol = 1e-5 + 1e-6 * grad.abs().max().item()
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=atol, msg=name)
        with torch.no_grad():
            for out, ref in zip(fast.eval()(x), reference.eval()(x)):
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _flops(model, x, grad):
    with torch.set_grad_enabled(grad):
        analyzer = FlopAnalyzer(model, (x,))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total(), analyzer.by_module()


@pytest.mark.parametrize('training', [False, True])
def test_flops_do_not_depend_on_the_mode(training):
    model = small_convnext(layer_scale_init_value=1.0).train(training)
    x = torch.randn(1, 3, 64, 64)
    no_grad_total, no_grad_by_module = _flops(model, x, grad=False)
    grad_total, grad_by_module = _flops(model, x, grad=True)
    assert no_grad_by_module['stages.0.0.dwconv'] == 16 * 16 * 8 * 49 > 0
    assert grad_total == no_grad_total
    assert grad_by_module == no_grad_by_module


FORMATS = (torch.contiguous_format, torch.channels_last)


def reference_layer_norm_2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """The formula of the paper's channels-first LayerNorm, in float64."""
    x, weight, bias = x.double(), weight.double(), bias.double()
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight[:, None, None] + bias[:, None, None]


def reference_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """The official block, written out in float64 on NCHW tensors."""
    p = {k: v.double() for k, v in block.state_dict().items()}
    y = F.conv2d(x.double(), p['dwconv.weight'], p['dwconv.bias'], padding=3, groups=x.shape[1])
    y = reference_layer_norm_2d(y, p['norm.weight'], p['norm.bias'], block.norm.eps)
    y = torch.einsum('nchw,oc->nohw', y, p['pwconv1.weight']) + p['pwconv1.bias'][:, None, None]
    y = F.gelu(y)
    y = torch.einsum('nchw,oc->nohw', y, p['pwconv2.weight']) + p['pwconv2.bias'][:, None, None]
    return x.double() + y * p['gamma'][:, None, None]


@pytest.mark.parametrize('memory_format', FORMATS)
def test_layer_norm_2d_matches_formula_and_timm(memory_format):
    from timm.layers import LayerNorm2d as TimmLayerNorm2d

    ours, theirs = LayerNorm2d(24), TimmLayerNorm2d(24)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    theirs.load_state_dict(ours.state_dict())
    x = (torch.randn(2, 24, 9, 13) * 3 + 1).contiguous(memory_format=memory_format)

    out = ours(x)
    expected = reference_layer_norm_2d(x, ours.weight, ours.bias, ours.eps)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out, theirs(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize('memory_format', FORMATS)
def test_layer_norm_2d_gradients_match_formula(memory_format):
    norm = LayerNorm2d(16)
    x = torch.randn(2, 16, 7, 5).contiguous(memory_format=memory_format).requires_grad_()
    grad_out = torch.randn(2, 16, 7, 5)
    (norm(x) * grad_out).sum().backward()
    x64 = x.detach().double().requires_grad_()
    (reference_layer_norm_2d(x64, norm.weight, norm.bias, norm.eps) * grad_out.double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0, atol=1e-5)


@pytest.mark.parametrize('memory_format', FORMATS)
def test_block_matches_reference_and_timm(memory_format):
    from timm.models.convnext import ConvNeXtBlock

    block = Block(16, layer_scale_init_value=0.5).eval()
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(std=0.2)
    timm_block = ConvNeXtBlock(16, ls_init_value=0.5).eval()
    timm_block.load_state_dict({k.replace('dwconv.', 'conv_dw.').replace('pwconv1.', 'mlp.fc1.')
                               .replace('pwconv2.', 'mlp.fc2.'): v for k, v in block.state_dict().items()})
    x = torch.randn(2, 16, 11, 10).contiguous(memory_format=memory_format)
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out.double(), reference_block(block, x), rtol=0, atol=1e-5)
        torch.testing.assert_close(out, timm_block(x), rtol=0, atol=1e-5)


def grn_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """GRN of the V2 paper (Algorithm 1) in float64."""
    x, gamma, beta = x.double(), gamma.double(), beta.double()
    response = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    return gamma * (x * (response / (response.mean(dim=-1, keepdim=True) + 1e-6))) + beta + x


def assert_close_in(dtype: torch.dtype, out: torch.Tensor, expected: torch.Tensor) -> None:
    """Within a few roundings of ``dtype`` at the output's scale (GRN adds terms of either sign)."""
    tolerance = 8 * torch.finfo(dtype).eps * expected.abs().max().item()
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=tolerance)


def random_grn(channels: int) -> GlobalResponseNorm:
    grn = GlobalResponseNorm(channels)
    with torch.no_grad():
        grn.gamma.normal_(0, 1)
        grn.beta.normal_(0, 1)
    return grn


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grn_stays_finite_in_half_precision_where_the_norm_overflows_fp16(dtype):
    """Activations of ~300 over a 256x256 map: per-channel L2 norms near 77000 pass fp16's 65504."""
    torch.manual_seed(0)
    x = (300 + 20 * torch.randn(1, 256, 256, 16)).to(dtype)
    grn = random_grn(16).to(dtype)
    assert torch.isinf(torch.linalg.vector_norm(x, dim=(1, 2))).any() == (dtype == torch.float16)  # the trap
    out = grn(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert_close_in(dtype, out, grn_reference(x, grn.gamma, grn.beta))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grn_under_cpu_autocast_matches_float64(dtype):
    torch.manual_seed(0)
    x = 300 + 20 * torch.randn(2, 256, 256, 8)
    grn = random_grn(8)
    with torch.autocast('cpu', dtype=dtype):
        out = grn(x.to(dtype))
    assert torch.isfinite(out).all()
    assert_close_in(dtype, out, grn_reference(x.to(dtype), grn.gamma, grn.beta))


def test_grn_in_float32_is_unchanged_and_float64_stays_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 12)
    grn = random_grn(12)
    torch.testing.assert_close(grn(x).double(), grn_reference(x, grn.gamma, grn.beta), rtol=1e-6, atol=1e-6)
    grn64 = grn.double()
    assert grn64(x.double()).dtype == torch.float64
    torch.testing.assert_close(grn64(x.double()), grn_reference(x, grn.gamma, grn.beta), rtol=1e-12, atol=1e-12)


# ConvNeXt V2 README (facebookresearch/ConvNeXt-V2), ImageNet-1K models at 224 with a 1000-way head.
V2_COMPLEXITY = {'atto': (3.7e6, 0.55e9), 'femto': (5.2e6, 0.78e9), 'pico': (9.1e6, 1.37e9),
                 'nano': (15.6e6, 2.45e9), 'tiny': (28.6e6, 4.47e9), 'base': (89e6, 15.4e9),
                 'large': (198e6, 34.4e9), 'huge': (660e6, 115e9)}


def v2_complexity(arch: str, size: int = 224, classes: int = 1000) -> Tuple[int, int]:
    """Params and FLOPs (multiply-adds, fvcore convention: conv/linear MACs plus 5 per element of each affine
    LayerNorm; GRN, GELU, adds and pooling not counted) of a V2 classifier, counted analytically."""
    depths, channels = ARCH_SETTINGS[arch]
    params = flops = 0
    side = size // 4
    for i, (depth, c) in enumerate(zip(depths, channels)):
        if i == 0:
            params += 3 * c * 16 + c + 2 * c
            flops += 3 * c * 16 * side * side + 5 * c * side * side
        else:
            prev = channels[i - 1]
            params += 2 * prev + prev * c * 4 + c
            flops += 5 * prev * (2 * side) ** 2 + prev * c * 4 * side * side
        # dwconv 7x7 + bias, LayerNorm, pwconv1, GRN gamma/beta, pwconv2
        params += depth * (49 * c + c + 2 * c + 4 * c * c + 4 * c + 8 * c + 4 * c * c + c)
        flops += depth * side * side * (49 * c + 5 * c + 8 * c * c)
        side //= 2
    params += 2 * channels[-1] + channels[-1] * classes + classes
    flops += 5 * channels[-1] + channels[-1] * classes
    return params, flops


def measured_complexity(arch: str) -> Tuple[int, int]:
    with torch.device('meta'):
        model = ImageNetClassifier(arch, use_grn=True, layer_scale_init_value=0.0)
    model = model.to_empty(device='cpu').eval()
    for param in model.parameters():
        param.data.zero_()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 224, 224),))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return sum(p.numel() for p in model.parameters()), analyzer.total()


@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_v2_analytic_count_is_what_the_flop_counter_measures(arch):
    assert v2_complexity(arch) == measured_complexity(arch)


@pytest.mark.parametrize('arch', list(V2_COMPLEXITY))
def test_v2_params_and_flops_match_the_official_table(arch):
    """Measured for the small models, counted analytically (checked equal above) for B / L / H."""
    params, flops = measured_complexity(arch) if arch in ('femto', 'pico', 'nano') else v2_complexity(arch)
    official_params, official_flops = V2_COMPLEXITY[arch]
    assert params == pytest.approx(official_params, rel=0.01)
    assert flops == pytest.approx(official_flops, rel=0.01)


def test_xxlarge_is_timms_clip_convnext_xxlarge():
    """arch='xxlarge' holds timm's convnext_xxlarge (open_clip's CLIP ConvNeXt-XXLarge tower), tensor for tensor."""
    import timm

    from convnext_dense.checkpoint import match
    with torch.device('meta'):
        reference = timm.create_model('convnext_xxlarge', pretrained=False, num_classes=0)
        ours = ConvNeXt('xxlarge')
    report, _ = match(reference.state_dict(), ours)
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    assert report.ignored == ['head.norm.weight', 'head.norm.bias']
    backbone = sum(p.numel() for name, p in ours.named_parameters() if not name.startswith('norm'))
    assert backbone == sum(p.numel() for name, p in reference.named_parameters() if not name.startswith('head.'))
    assert 840e6 < backbone < 850e6
