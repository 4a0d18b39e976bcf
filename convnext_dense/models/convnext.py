"""ConvNeXt backbone for dense prediction.

A ConvNet for the 2020s, Liu et al., CVPR 2022 (https://arxiv.org/abs/2201.03545), and the GRN block of
ConvNeXt V2, Woo et al., CVPR 2023 (https://arxiv.org/abs/2301.00808).

The backbone returns one normalized feature map per requested stage (strides 4, 8, 16, 32) and keeps the
official parameter names (``downsample_layers.*``, ``stages.i.j.*``, ``norm{i}``), which pretrained
checkpoints and every layer-wise learning-rate decay rule depend on. It imports torch and mmengine only, so
any mm-style project can use it.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule

from convnext_dense.arch import NUM_STAGES, STEM_STRIDE, resolve_arch
from convnext_dense.checkpoint import load_pretrained, rename_foreign_keys_hook
from convnext_dense.errors import ConfigError, InputShapeError
from convnext_dense.models.mmpretrain_args import check_mmpretrain_args
from convnext_dense.ops import CpuKernels, Requested, fused_mlp, resolve_cpu_kernels
from convnext_dense.ops.dwconv import DepthwiseConv2d
from convnext_dense.ops.gelu import GELU
from convnext_dense.registry import MODELS


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor.

    Args:
        num_channels: Number of channels C.
        eps: Added to the variance for numerical stability.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Measured faster than a hand-written mean/var over dim 1 (3-7x on CPU, forward and backward): the
        # permute is free on channels_last inputs, and the NHWC result makes the next convs channels_last.
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """Global Response Normalization of ConvNeXt V2, on channels-last (NHWC) tensors.

    Parameter names follow the official V2 code (``gamma``, ``beta``); their shape is (C,), as in timm and
    mmpretrain (the official code's is 1x1x1xC, converted as checkpoints load), so every OpenMMLab optimizer
    constructor's "1-D: no weight decay" rule leaves them undecayed, as the V2 authors do.

    Args:
        channels: Number of channels C.
        eps: Added to the mean response for numerical stability.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The L2 norm over H x W in at least fp32: in fp16 it overflows (inf, then inf / inf = NaN) once a
        # channel's norm passes 65504, e.g. activations of 256 on a 256x256 map; the ratio is O(1) again.
        response = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True,
                                            dtype=torch.promote_types(x.dtype, torch.float32))
        normalized = (response / (response.mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype)
        return self.gamma * (x * normalized) + self.beta + x


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training.

    Args:
        drop_prob: Probability of dropping the branch.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * mask.div_(keep_prob)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class Block(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, 4x MLP (with GRN in V2), layer scale, residual.

    ``forward`` is the paper's computation. The CPU kernels of ``convnext_dense/ops`` chosen for the block
    (``cpu_kernels``, decided when it is built or by ``set_cpu_kernels``) compute the same: inside ``dwconv``
    and ``act`` (their own forwards), and across modules the inference MLP tail and the layer-scale fold, which
    step aside while a forward hook is registered on a module they compute without calling.

    Args:
        channels: Input and output channels.
        drop_path: Stochastic depth rate of this block.
        layer_scale_init_value: Initial value of the per-channel ``gamma``; 0 or less disables it.
        use_grn: Insert Global Response Normalization after the activation (ConvNeXt V2).
        mlp_ratio: Hidden width of the MLP relative to ``channels``.
        cpu_kernels: Which CPU kernels to use, as ``ConvNeXt(cpu_kernels=...)`` (None: the machine's choice).
    """

    def __init__(self, channels: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 use_grn: bool = False, mlp_ratio: float = 4.0, cpu_kernels: Requested = None) -> None:
        super().__init__()
        hidden = int(mlp_ratio * channels)
        self.dwconv = DepthwiseConv2d(channels, kernel_size=7)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, hidden)
        self.act = GELU()
        self.grn = GlobalResponseNorm(hidden) if use_grn else None
        self.pwconv2 = nn.Linear(hidden, channels)
        self.gamma = (nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        kernels = resolve_cpu_kernels(cpu_kernels)
        for module in (self, self.dwconv, self.act):
            module.use_cpu_kernels(kernels)

    def use_cpu_kernels(self, kernels: CpuKernels) -> None:
        """Takes this block's part of ``kernels``: the MLP tail's form and the layer-scale fold."""
        mlp = kernels.mlp
        if mlp == 'tiled' and self.grn is not None:
            mlp = None  # GRN normalizes over the whole hidden map: no tile holds it
        self.mlp_kernel = mlp
        self.fold_layer_scale = kernels.fold_layer_scale

    def cpu_kernel_names(self) -> Tuple[str, ...]:
        return ((f'mlp_{self.mlp_kernel}',) if self.mlp_kernel else ()) + (
            ('fold_layer_scale',) if self.fold_layer_scale and self.gamma is not None else ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(self.dwconv(x).permute(0, 2, 3, 1))  # the MLP runs channels-last
        if self.mlp_kernel and fused_mlp.applies(self, x):
            return fused_mlp.forward(self, x, shortcut)
        x = self.act(self.pwconv1(x))
        if self.grn is not None:
            x = self.grn(x)
        if fused_mlp.folds_layer_scale(self, x):
            x = F.linear(x, *fused_mlp.scaled_pwconv2(self))  # gamma * pwconv2(x), one pass fewer
        else:
            x = self.pwconv2(x)
            if self.gamma is not None:
                x = x * self.gamma
        # Out of place: x is a view (a permute of the linear's output), and an in-place add on a view makes
        # autograd record CopySlices + AsStridedBackward0 (~24 ms of copies in a 0.9 s ConvNeXt-T CPU step).
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-d tensor is laid out channels-last (NHWC in memory) rather than contiguous NCHW."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt (V1, or V2 with ``use_grn=True``) returning multi-scale normalized features.

    Output ``i`` has ``channels[i]`` channels and stride ``4 * 2**i`` (4, 8, 16, 32) and passes through its
    own channels-first LayerNorm ``norm{i}``. Inputs of any size of at least 32x32 work: each downsampling
    (4x4 stride-4 stem, 2x2 stride-2 between stages) floors, so for H, W not multiples of 32 the last rows
    and columns that do not fill a patch are dropped (output ``i`` is ``H // 4 // 2**i`` high). mmdet and
    mmseg pad inputs to a multiple of 32 in their data preprocessors, where no pixel is dropped.

    Args:
        arch: An :data:`ARCH_SETTINGS` name (``'atto'`` ... ``'huge'``) or ``dict(depths, channels)``.
        in_channels: Channels of the input image.
        out_indices: Stages whose normalized outputs are returned; negative indices count from the end.
        drop_path_rate: Stochastic depth rate of the last block; it grows linearly from 0 over all blocks.
        layer_scale_init_value: Initial layer scale ``gamma``; 0 disables layer scale (ConvNeXt V2 uses 0).
        use_grn: Use ConvNeXt V2 blocks with Global Response Normalization.
        frozen_stages: Freeze (no gradients, eval mode) downsample layers and stages ``0 .. frozen_stages-1``;
            -1 or 0 freezes nothing.
        with_cp: Run each block under activation checkpointing: same outputs and gradients, less memory.
        compile_blocks: Compile each block with ``torch.compile`` (lazily, on its first call; parameter names
            unchanged). Blocks of a stage share one compiled graph, and it composes with ``with_cp``.
        stem_patch_size, norm_cfg, act_cfg, linear_pw_conv, gap_before_final_norm: mmpretrain ConvNeXt's
            arguments, accepted with the values that describe this backbone (4, ``dict(type='LN2d',
            eps=1e-6)``, ``dict(type='GELU')``, True, False) so that an mmdet or mmseg config switches by its
            ``type`` alone; other values raise ``ConfigError`` (see ``mmpretrain_args.py``).
        cpu_kernels: The CPU kernels of ``convnext_dense/ops`` (C++ depthwise-conv weight gradient and GELU,
            the inference MLP tail as one op, the layer-scale fold; compiled on first use, with a warning and
            PyTorch's ops where no C++ compiler is found). ``None`` reads ``CONVNEXT_DENSE_CPU_KERNELS`` and
            without it takes what pays off on this machine's CPU (``ops.machine_kernels()``); ``True`` turns
            every kernel on, ``False`` every kernel off, a tuple of ``ops.KERNEL_NAMES`` picks. Same results
            to float rounding; no effect on GPUs or compiled blocks. ``convnext_dense.ops.set_cpu_kernels(model,
            ...)`` switches a built model.
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads any checkpoint
            layout of ``convnext_dense.checkpoint`` (facebook, timm, mmpretrain, FCMAE, ours); optional
            ``prefix`` (keys under it, stripped) and ``ema=True`` (prefer EMA weights when both are saved).

    Whole-model checkpoints whose backbone keys are in another known layout (mmdet 3.x / mmseg 1.x files
    with mmpretrain's names) are renamed when they load through ``load_state_dict`` (mmengine's
    ``load_from``, ``--resume``, ``load_checkpoint``), with one logged report; see
    ``convnext_dense/checkpoint/whole_model.py``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-6,
                 use_grn: bool = False,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 compile_blocks: bool = False,
                 stem_patch_size: int = STEM_STRIDE,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 linear_pw_conv: bool = True,
                 gap_before_final_norm: bool = False,
                 cpu_kernels: Requested = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_mmpretrain_args(stem_patch_size=stem_patch_size, norm_cfg=norm_cfg, act_cfg=act_cfg,
                              linear_pw_conv=linear_pw_conv, gap_before_final_norm=gap_before_final_norm)
        self.arch = arch
        self.depths, self.channels = resolve_arch(arch)
        self.out_indices = self._normalize_out_indices(out_indices)
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ConfigError(f'ConvNeXt: frozen_stages must be in [-1, {NUM_STAGES}], got {frozen_stages}.')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f'ConvNeXt: drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.use_grn = use_grn
        cpu_kernels = resolve_cpu_kernels(cpu_kernels)

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_channels, self.channels[0], kernel_size=STEM_STRIDE, stride=STEM_STRIDE),
            LayerNorm2d(self.channels[0])))
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(self.channels[i - 1]),
                nn.Conv2d(self.channels[i - 1], self.channels[i], kernel_size=2, stride=2)))

        # On the CPU so that building under ``torch.device('meta')`` (cheap param/FLOP counts) works.
        rates = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                Block(self.channels[i], drop_path=rates[first + j],
                      layer_scale_init_value=layer_scale_init_value, use_grn=use_grn,
                      cpu_kernels=cpu_kernels)
                for j in range(depth)]))

        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.channels[i]))

        if compile_blocks:
            # Per block, not the whole backbone: checkpointing and frozen stages stay outside the graphs,
            # and Module.compile works in place, so checkpoints keep their keys (no ``_orig_mod.``).
            for stage in self.stages:
                for block in stage:
                    block.compile()
        self._freeze_stages()
        self._register_load_state_dict_pre_hook(rename_foreign_keys_hook, with_module=True)

    def _normalize_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        normalized = []
        for index in out_indices:
            if not -NUM_STAGES <= index < NUM_STAGES:
                raise ConfigError(f'ConvNeXt: out_indices entry {index} is out of range; valid are '
                                 f'{-NUM_STAGES}..{NUM_STAGES - 1} (stages 0-3, negatives from the end).')
            normalized.append(index % NUM_STAGES)
        if not normalized:
            raise ConfigError('ConvNeXt: out_indices is empty; name at least one stage in 0..3.')
        if len(set(normalized)) != len(normalized):
            raise ConfigError(f'ConvNeXt: out_indices {tuple(out_indices)} name a stage twice.')
        return tuple(sorted(normalized))

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned feature map, in output order (e.g. FPN ``in_channels``)."""
        return tuple(self.channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Stride of each returned feature map relative to the input, in output order."""
        return tuple(STEM_STRIDE * 2 ** i for i in self.out_indices)

    @property
    def feature_info(self) -> List[dict]:
        """timm-style description of the outputs: ``num_chs``, ``reduction`` and ``module`` per output."""
        return [dict(num_chs=c, reduction=s, module=f'norm{i}')
                for i, c, s in zip(self.out_indices, self.out_channels, self.out_strides)]

    def _frozen_modules(self) -> List[nn.Module]:
        return [m for i in range(max(self.frozen_stages, 0))
                for m in (self.downsample_layers[i], self.stages[i])]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'ConvNeXt':
        """Sets training mode, keeping frozen stages in eval mode; returns ``self``."""
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        """Loads a pretrained checkpoint of any supported layout, or initialises as the official code.

        A ``Pretrained`` entry (alone or in an init_cfg list) goes through ``load_pretrained`` instead of
        mmengine's loader, which would silently skip every key of a timm or mmpretrain file.
        """
        configs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg]
        pretrained = [c for c in configs if isinstance(c, dict) and c.get('type') == 'Pretrained']
        others = [c for c in configs if c is not None and not any(c is p for p in pretrained)]
        if others:
            all_configs, self.init_cfg = self.init_cfg, others
            try:
                super().init_weights()
            finally:
                self.init_cfg = all_configs
        elif not pretrained:  # a successful load overwrites every conv and linear, or nothing at all
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
        if pretrained:
            config = pretrained[-1]
            load_pretrained(self, config['checkpoint'], prefix=config.get('prefix'),
                            map_location=config.get('map_location', 'cpu'), ema=config.get('ema', False))
        self._is_init = True

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            for block in stage:
                # use_reentrant=False restores the RNG state, so drop path recomputes the same mask.
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Returns the normalized feature maps of ``out_indices``, NCHW, strides 4/8/16/32."""
        if x.dim() != 4 or x.shape[1] != self.downsample_layers[0][0].in_channels:
            raise InputShapeError(f'ConvNeXt expects an N x {self.downsample_layers[0][0].in_channels} x H x W '
                             f'input, got shape {tuple(x.shape)}.')
        if min(x.shape[-2:]) < STEM_STRIDE * 2 ** (NUM_STAGES - 1):
            raise InputShapeError(f'ConvNeXt needs inputs of at least 32x32, got {tuple(x.shape[-2:])}.')
        # Outputs in the input's memory format. The blocks run channels-last whatever the input, so the
        # output norms would hand an NCHW caller channels_last-strided maps, and mmcv 2.1.0's RoIAlign reads
        # those as if they were contiguous: wrong RoI features, silently (a Mask R-CNN's RoI heads then learn
        # nothing). mmdet and mmseg feed contiguous images, so they get contiguous maps.
        memory_format = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        outs = []
        for i in range(NUM_STAGES):
            x = self._run_stage(self.stages[i], self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).contiguous(memory_format=memory_format))
            if i == self.out_indices[-1]:
                break
        return tuple(outs)
