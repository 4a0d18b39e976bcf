"""Speed and memory of our ConvNeXt next to timm's and mmpretrain's, and of whole detectors / segmentors.

Three modes, each printing a table (``--json`` prints one JSON object instead):

- ``backbone``: our ConvNeXt, timm's and mmpretrain's with the same weights and the same outputs (the four
  stage outputs, each through its own channels-first LayerNorm; timm gets those norms added), timed in the
  same run and interleaved round by round (each round starting with the next implementation, since the one
  timed first measured slower), for inference and forward+backward, per input size, autocast dtype, memory
  format and eager / ``torch.compile``. Throughput is the median over rounds; a ratio (ours / reference) is
  the median of the per-round ratios, so that the machine's drift during a run cancels out.
- ``model CONFIG``: inference FPS (test score threshold 0 so that 100 detections are kept per image, as a
  trained detector gives) and training s/iter (forward + backward of a synthetic batch) of a config, next to
  the same config with mmpretrain's backbone, and with ``with_cp`` on. Each variant runs in a fresh process,
  so its peak memory is its own; rounds alternate the variants, each starting with the next one.
- ``layernorm``: the channels-first LayerNorm options (permute + ``F.layer_norm``, hand-written mean/var,
  a channels-last copy first) forward and forward+backward, with their error against a float64 reference.

Peak memory (``--memory``): on CUDA ``torch.cuda.max_memory_allocated`` during a step minus what was allocated
before it, measured in the benchmark's own process on the model that was timed (compiled or not); on CPU the
growth of the process's peak resident set (``ru_maxrss``) over its size just before the step, measured in a
fresh process per case, which includes allocator caching.

On CUDA, ``cudnn.benchmark`` is on for every implementation (convolution algorithms are chosen per shape, as a
detector's training would), and TF32 stays at PyTorch's defaults (reported in the header).

Timing: ``--clock wall`` (default) is elapsed time (CUDA synchronized); ``--clock cpu`` is this process's CPU
time, which stays fair when other jobs share the cores (use it with ``--threads 1``). No number here is
asserted by the tests: the benchmark is the instrument.

    python tools/analysis/benchmark.py backbone
    python tools/analysis/benchmark.py backbone --sizes 224 --batch 32 --dtypes fp32 bf16 --compile on --json
    python tools/analysis/benchmark.py model configs/det/cascade_convnext_t_3x.py --size 800 1344 --batch 2
    python tools/analysis/benchmark.py layernorm --threads 1 --clock cpu
"""
import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

IMPLS = ('ours', 'timm', 'mmpretrain')
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MEMORY_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


# ----------------------------------------------------------------------------------------------- helpers
def parse_size(text: str) -> Tuple[int, int]:
    """``'224'`` -> (224, 224); ``'1344x800'`` (width x height, as papers write it) -> (800, 1344) as H, W."""
    if 'x' in text:
        width, height = (int(v) for v in text.lower().split('x'))
        return height, width
    return int(text), int(text)


def environment() -> dict:
    """Device and library versions for the table header."""
    info = {'torch': torch.__version__, 'python': platform.python_version(), 'threads': torch.get_num_threads()}
    for name in ('timm', 'mmpretrain', 'mmengine', 'mmcv', 'mmdet', 'mmseg'):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # a missing or broken reference library is reported, not fatal
            info[name] = 'n/a'
    if torch.cuda.is_available():
        info['device'] = torch.cuda.get_device_name()
        info['cuda'] = torch.version.cuda
        info['cudnn_benchmark'] = torch.backends.cudnn.benchmark
        info['tf32_matmul'] = torch.backends.cuda.matmul.allow_tf32
        info['tf32_cudnn'] = torch.backends.cudnn.allow_tf32
    else:
        cpu = platform.processor() or 'cpu'
        with contextlib.suppress(OSError):
            for line in Path('/proc/cpuinfo').read_text().splitlines():
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
        info['device'] = f'{cpu}, {os.cpu_count()} cores'
        with contextlib.suppress(OSError):
            info['load_avg_1m'] = round(os.getloadavg()[0], 2)
    return info


class Clock:
    """Elapsed (CUDA-synchronized) or process CPU seconds.

    Args:
        kind: ``'wall'`` or ``'cpu'``.
        device: The device the timed work runs on.
    """

    def __init__(self, kind: str, device: torch.device) -> None:
        self.kind, self.device = kind, device

    def __call__(self) -> float:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.process_time() if self.kind == 'cpu' else time.perf_counter()


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------------------ backbones
def arch_spec(arch: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """``'tiny'`` or ``'depths:2,2,2,2;channels:8,16,32,64'`` (tiny test archs) -> (depths, channels)."""
    from convnext_dense.models.arch import resolve_arch
    if ':' in arch:
        parts = dict(p.split(':') for p in arch.split(';'))
        return resolve_arch({k: tuple(int(v) for v in parts[k].split(',')) for k in ('depths', 'channels')})
    return resolve_arch(arch)


class TimmDense(nn.Module):
    """timm's ConvNeXt giving our outputs: the four stage outputs, each through a timm ``LayerNorm2d``.

    Args:
        depths: Blocks per stage.
        channels: Channels per stage.
        layer_scale_init_value: Initial layer scale.
    """

    def __init__(self, depths: Sequence[int], channels: Sequence[int], layer_scale_init_value: float) -> None:
        super().__init__()
        from timm.layers import LayerNorm2d as TimmLayerNorm2d
        from timm.models.convnext import ConvNeXt as TimmConvNeXt
        self.body = TimmConvNeXt(depths=tuple(depths), dims=tuple(channels), num_classes=0,
                                 ls_init_value=layer_scale_init_value)
        self.body.prune_intermediate_layers(len(depths), prune_norm=True, prune_head=True)
        # Some timm versions keep the head's norm after pruning; intermediates never use the head.
        self.body.head = nn.Identity()
        self.norms = nn.ModuleList(TimmLayerNorm2d(c) for c in channels)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feats = self.body.forward_intermediates(x, indices=len(self.norms), intermediates_only=True)
        return tuple(norm(f) for norm, f in zip(self.norms, feats))


def _ours_to_timm(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split('.')
        if key.startswith('downsample_layers.0.'):
            out['body.stem.' + '.'.join(parts[2:])] = value
        elif key.startswith('downsample_layers.'):
            out[f'body.stages.{parts[1]}.downsample.' + '.'.join(parts[2:])] = value
        elif key.startswith('stages.'):
            rest = '.'.join(parts[3:]).replace('dwconv.', 'conv_dw.').replace('pwconv1.', 'mlp.fc1.')
            out[f'body.stages.{parts[1]}.blocks.{parts[2]}.' + rest.replace('pwconv2.', 'mlp.fc2.')] = value
        else:  # norm{i}
            out[f'norms.{key[4:]}'] = value
    return out


def _ours_to_mmpretrain(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k.replace('.dwconv.', '.depthwise_conv.').replace('.pwconv1.', '.pointwise_conv1.')
            .replace('.pwconv2.', '.pointwise_conv2.'): v for k, v in state.items()}


def build_backbones(arch: str, impls: Sequence[str], layer_scale_init_value: float = 1.0,
                    with_cp: bool = False, seed: int = 0) -> Tuple[Dict[str, nn.Module], Dict[str, str]]:
    """Builds the requested backbones with our randomly initialised weights copied into each.

    Args:
        arch: An arch name or a ``'depths:...;channels:...'`` string.
        impls: Subset of ``('ours', 'timm', 'mmpretrain')``.
        layer_scale_init_value: Layer scale of all three (1.0 makes every block matter numerically).
        with_cp: Activation checkpointing in ours and mmpretrain's (timm's has none per block).
        seed: Seed of the random weights.

    Returns:
        The built modules and, per implementation that could not be built, the reason.
    """
    from convnext_dense.models.convnext import ConvNeXt
    depths, channels = arch_spec(arch)
    torch.manual_seed(seed)
    ours = ConvNeXt(dict(depths=depths, channels=channels), layer_scale_init_value=layer_scale_init_value,
                    with_cp=with_cp)
    ours.init_weights()
    state = ours.state_dict()
    models, missing = {}, {}
    for impl in impls:
        try:
            if impl == 'ours':
                models[impl] = ours
            elif impl == 'timm':
                model = TimmDense(depths, channels, layer_scale_init_value)
                model.load_state_dict(_ours_to_timm(state), strict=True)
                models[impl] = model
            elif impl == 'mmpretrain':
                from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
                model = MMPretrainConvNeXt(arch=dict(depths=list(depths), channels=list(channels)),
                                           out_indices=(0, 1, 2, 3), gap_before_final_norm=False,
                                           layer_scale_init_value=layer_scale_init_value, with_cp=with_cp)
                model.load_state_dict(_ours_to_mmpretrain(state), strict=True)
                models[impl] = model
            else:
                raise ValueError(f'unknown implementation {impl!r}; choose from {IMPLS}')
        except ImportError as err:
            missing[impl] = f'not importable: {err}'
    return models, missing


def max_output_difference(models: Dict[str, nn.Module], size: Tuple[int, int] = (64, 64)) -> Dict[str, float]:
    """Largest absolute difference of each model's fp32 outputs from ours (proof of equal weights)."""
    if 'ours' not in models:
        return {}
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    for model in models.values():
        model.eval()  # not chained: mmpretrain's ConvNeXt.train() returns None
    with torch.no_grad():
        ref = [o.float() for o in models['ours'](x)]
        return {name: max((a - b).abs().max().item() for a, b in zip(ref, model(x)))
                for name, model in models.items() if name != 'ours'}


def rotated(names: List[str], shift: int) -> List[str]:
    """``names`` rotated left by ``shift``: round ``r`` of a benchmark starts with a different variant."""
    shift %= max(len(names), 1)
    return names[shift:] + names[:shift]


def _make_step(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype]) -> Callable:
    def step() -> None:
        with autocast(x.device, dtype):
            outs = model(x)
        if train:
            sum(o.float().mean() for o in outs).backward()

    def inference_step() -> None:
        with torch.inference_mode():
            step()
    return step if train else inference_step


def measure_backbone_case(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype],
                          iters: int, warmup: int, clock: Clock) -> float:
    """Seconds per step of one (model, input, mode, dtype), after ``warmup`` untimed steps."""
    model.train(train)
    if train:
        model.zero_grad(set_to_none=True)
    step = _make_step(model, x, train, dtype)
    for _ in range(warmup):
        step()
    start = clock()
    for _ in range(iters):
        step()
    return (clock() - start) / iters


def memory_of_step(model: nn.Module, x: torch.Tensor, train: bool, dtype: Optional[torch.dtype]) -> int:
    """Peak bytes one step adds (see the module docstring for what is measured on CPU and CUDA)."""
    model.train(train)
    step = _make_step(model, x, train, dtype)
    if x.device.type == 'cuda':
        step()  # a first step allocates the lazy workspaces; the second is the steady state
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    step()  # one-time allocations (oneDNN primitives, thread pools) stay out of the figure
    model.zero_grad(set_to_none=True)
    before = rss_bytes()
    step()
    return max(0, peak_rss_bytes() - before)


def run_backbone(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # the 7x7 depthwise convs' best algorithm differs per shape
    clock = Clock(args.clock, device)
    models, unavailable = build_backbones(args.arch, args.impls, with_cp=args.with_cp)
    diffs = max_output_difference(models)
    compiled: Dict[Tuple[str, str], nn.Module] = {}
    rows = []
    for size_text in args.sizes:
        height, width = parse_size(size_text)
        batch = args.batch if 'x' not in size_text else args.det_batch
        for mode in args.modes:
            for dtype_name in args.dtypes:
                for fmt in args.memory_formats:
                    for compile_mode in args.compile:
                        row = dict(size=f'{width}x{height}', batch=batch, mode=mode, dtype=dtype_name,
                                   memory_format=fmt, compile=compile_mode, results={})
                        x = torch.randn(batch, 3, height, width, device=device)
                        x = x.contiguous(memory_format=MEMORY_FORMATS[fmt])
                        times: Dict[str, List[float]] = {name: [] for name in models}
                        timed: Dict[str, nn.Module] = {}
                        errors: Dict[str, str] = dict(unavailable)
                        for rnd in range(args.rounds):
                            # Interleaved, every round runs every impl, and the order rotates: on this CPU
                            # the impl timed first in a round measured ~2% slower whichever it was.
                            for name in rotated(list(models), rnd):
                                base = models[name]
                                if name in errors:
                                    continue
                                try:
                                    model = base.to(device=device, memory_format=MEMORY_FORMATS[fmt])
                                    if compile_mode == 'on':
                                        key = (name, fmt)
                                        if key not in compiled:
                                            compiled[key] = torch.compile(model)
                                        model = compiled[key]
                                    warmup = args.warmup + (1 if compile_mode == 'on' else 0) if rnd == 0 else 0
                                    times[name].append(measure_backbone_case(
                                        model, x, mode == 'train', DTYPES[dtype_name], args.iters, warmup, clock))
                                    timed[name] = model
                                except Exception as err:  # an unsupported combination is a table entry
                                    errors[name] = f'{type(err).__name__}: {str(err).splitlines()[0][:120]}'
                        for name in list(models) + list(unavailable):
                            if name in errors:
                                row['results'][name] = dict(error=errors[name])
                            else:
                                seconds = statistics.median(times[name])
                                row['results'][name] = dict(img_per_s=batch / seconds, s_per_iter=seconds,
                                                            rounds=[batch / t for t in times[name]])
                        if args.memory:
                            for name in models:
                                if 'error' in row['results'][name]:
                                    continue
                                if device.type == 'cuda':  # the allocator's own peak: exact in one process
                                    peak = memory_of_step(timed[name], x, mode == 'train', DTYPES[dtype_name])
                                    row['results'][name]['peak_mem_mib'] = peak / 2 ** 20
                                else:
                                    row['results'][name]['peak_mem_mib'] = _memory_in_subprocess(
                                        args, name, height, width, batch, mode, dtype_name, fmt)
                        _add_ratios(row)
                        rows.append(row)
                        if not args.json:
                            print(format_backbone_row(row), flush=True)
    return dict(mode='backbone', arch=args.arch, clock=args.clock, env=environment(), max_abs_diff_vs_ours=diffs,
                command=' '.join(sys.argv), rows=rows)


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median over rounds of ``numerator / denominator`` taken in the same round.

    Rounds interleave the implementations, so the two figures of a pair saw the machine in the same state. This
    VM's speed drifts by up to 1.5x within one run (per-round training img/s of one implementation spanned
    1.33-2.82), and the ratio of two separately taken medians mixes that drift in; the paired median does not.

    Args:
        numerators: one figure per round (e.g. our img/s).
        denominators: the reference's figures from the same rounds, in the same order.
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f'paired_ratio needs one figure per round on both sides, got {len(numerators)} '
                         f'and {len(denominators)}')
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def _add_ratios(row: dict) -> None:
    ours = row['results'].get('ours', {}).get('rounds')
    for name, result in row['results'].items():
        if name != 'ours' and ours and result.get('rounds'):
            row[f'ours_vs_{name}'] = paired_ratio(ours, result['rounds'])


def _memory_in_subprocess(args: argparse.Namespace, impl: str, height: int, width: int, batch: int,
                          mode: str, dtype: str, fmt: str) -> Optional[float]:
    case = dict(arch=args.arch, impl=impl, height=height, width=width, batch=batch, mode=mode, dtype=dtype,
                memory_format=fmt, device=args.device, with_cp=args.with_cp)
    proc = subprocess.run([sys.executable, __file__, '_memory_probe', json.dumps(case)],
                          capture_output=True, text=True, timeout=1800)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])['peak_mem_mib']
    except (IndexError, ValueError, KeyError):
        return None


def memory_probe(case_json: str) -> None:
    """Child process of ``--memory``: builds one backbone, runs one step, prints its peak memory."""
    case = json.loads(case_json)
    device = torch.device(case['device'])
    models, _ = build_backbones(case['arch'], (case['impl'],), with_cp=case['with_cp'])
    fmt = MEMORY_FORMATS[case['memory_format']]
    model = models[case['impl']].to(device=device, memory_format=fmt)
    x = torch.randn(case['batch'], 3, case['height'], case['width'], device=device).contiguous(memory_format=fmt)
    peak = memory_of_step(model, x, case['mode'] == 'train', DTYPES[case['dtype']])
    print(json.dumps(dict(peak_mem_mib=peak / 2 ** 20)))


def format_backbone_row(row: dict) -> str:
    cells = []
    for name, result in row['results'].items():
        if 'error' in result:
            cells.append(f'{name} n/a ({result["error"]})')
        else:
            mem = f' {result["peak_mem_mib"]:.0f}MiB' if result.get('peak_mem_mib') is not None else ''
            cells.append(f'{name} {result["img_per_s"]:8.2f}{mem}')
    ratios = ' '.join(f'{k[8:]}x{v:.2f}' for k, v in row.items() if k.startswith('ours_vs_'))
    return (f'{row["size"]:>9} b{row["batch"]:<3} {row["mode"]:<5} {row["dtype"]:<4} {row["memory_format"]:<13} '
            f'compile={row["compile"]:<3} | ' + ' | '.join(cells) + f' | ours/{ratios}')


# -------------------------------------------------------------------------------------------- layernorm
def layernorm_permute(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.permute(0, 2, 3, 1), w.shape, w, b, eps).permute(0, 3, 1, 2)


def layernorm_manual(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * w[:, None, None] + b[:, None, None]


def layernorm_channels_last_copy(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return layernorm_permute(x.contiguous(memory_format=torch.channels_last), w, b, eps)


LAYERNORM_OPTIONS = {'permute_layer_norm': layernorm_permute, 'manual_mean_var': layernorm_manual,
                     'channels_last_copy': layernorm_channels_last_copy}


def run_layernorm(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    clock = Clock(args.clock, device)
    rows = []
    for shape_text in args.shapes:
        shape = tuple(int(v) for v in shape_text.split(','))
        weight = torch.randn(shape[1], device=device, requires_grad=True)
        bias = torch.randn(shape[1], device=device, requires_grad=True)
        for fmt in args.memory_formats:
            x = torch.randn(shape, device=device).contiguous(memory_format=MEMORY_FORMATS[fmt])
            ref = layernorm_permute(x.double(), weight.double(), bias.double(), 1e-6)
            for mode in args.modes:
                xx = x.detach().clone().requires_grad_(mode == 'train')
                times: Dict[str, List[float]] = {k: [] for k in LAYERNORM_OPTIONS}
                for _ in range(args.rounds):
                    for name, fn in LAYERNORM_OPTIONS.items():
                        def step() -> None:
                            y = fn(xx, weight, bias, 1e-6)
                            if mode == 'train':
                                y.sum().backward()
                        for _ in range(args.warmup):
                            step()
                        start = clock()
                        for _ in range(args.iters):
                            step()
                        times[name].append((clock() - start) / args.iters * 1e3)
                row = dict(shape=shape_text, memory_format=fmt, mode=mode, results={})
                for name, fn in LAYERNORM_OPTIONS.items():
                    with torch.no_grad():
                        err = (fn(x, weight, bias, 1e-6).double() - ref).abs().max().item()
                    row['results'][name] = dict(ms=statistics.median(times[name]), max_abs_err=err)
                rows.append(row)
                if not args.json:
                    print(f'{shape_text:>16} {fmt:<13} {mode:<5} | ' + ' | '.join(
                        f'{k} {v["ms"]:8.3f}ms (err {v["max_abs_err"]:.0e})' for k, v in row['results'].items()),
                        flush=True)
    return dict(mode='layernorm', clock=args.clock, env=environment(), command=' '.join(sys.argv), rows=rows)


# ------------------------------------------------------------------------------------------------ model
def _keep_100_detections(test_cfg) -> None:
    # Random weights score below any threshold: with none, every image keeps max_per_img=100 detections,
    # the load a trained detector puts on NMS and the mask head.
    if isinstance(test_cfg, dict):
        if 'score_thr' in test_cfg:
            test_cfg['score_thr'] = 0.0
        if 'max_per_img' in test_cfg and 'nms' in test_cfg and 'mask_thr_binary' in test_cfg:
            test_cfg['max_per_img'] = 100
        for value in test_cfg.values():
            _keep_100_detections(value)


def model_variant_cfg(model_cfg: dict, variant: str) -> dict:
    """The model config of a variant: ``ours``, ``ours_cp`` (``with_cp=True``) or ``mmpretrain``."""
    # The benchmark runs one process: SyncBN would need a process group, so it becomes BN (same cost per GPU).
    from convnext_dense.config_utils import syncbn_to_bn
    cfg = syncbn_to_bn(copy.deepcopy(model_cfg))
    backbone = cfg['backbone']
    backbone['init_cfg'] = None  # timing needs no pretrained weights (and tests never download)
    _keep_100_detections(cfg.get('test_cfg'))
    if variant == 'ours_cp':
        backbone['with_cp'] = True
    elif variant == 'mmpretrain':
        cfg['backbone'] = dict(type='mmpretrain.ConvNeXt', arch=backbone.get('arch', 'tiny'),
                               out_indices=tuple(backbone.get('out_indices', (0, 1, 2, 3))),
                               drop_path_rate=backbone.get('drop_path_rate', 0.0),
                               layer_scale_init_value=backbone.get('layer_scale_init_value', 1e-6),
                               gap_before_final_norm=False, with_cp=backbone.get('with_cp', False))
    return cfg


def _synthetic_batch(scope: str, batch: int, height: int, width: int, device: torch.device, num_classes: int):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, height, width, generator=generator).to(device)
    samples = []
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1.0, 1.0))
    for _ in range(batch):
        if scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, height, width), generator=generator).to(device))
        else:
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            sample = DetDataSample(metainfo=meta)
            num_boxes = 8
            xy = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
            wh = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3]) + 16
            boxes = torch.cat([xy, xy + wh], dim=1)
            masks = torch.zeros(num_boxes, height, width, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            instances = InstanceData()
            instances.bboxes = boxes.to(device)
            instances.labels = torch.randint(0, num_classes, (num_boxes,), generator=generator).to(device)
            instances.masks = BitmapMasks(masks.numpy(), height, width)
            sample.gt_instances = instances
        samples.append(sample)
    return inputs, samples


def _num_classes(model_cfg: dict) -> int:
    found = []

    def visit(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get('num_classes'), int):
                found.append(node['num_classes'])
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)
    visit(model_cfg)
    return max(found) if found else 2


def model_probe(case_json: str) -> None:
    """Child process of ``model`` mode: one variant, timing of inference and training, peak memory."""
    case = json.loads(case_json)
    from mmengine.config import Config, ConfigDict

    import convnext_dense  # noqa: F401  registers our backbone
    cfg = Config.fromfile(case['config'])
    scope = cfg.get('default_scope', 'mmdet')
    if scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    else:
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    if case['variant'] == 'mmpretrain':
        import mmpretrain.models  # noqa: F401  registers mmpretrain.ConvNeXt
    device = torch.device(case['device'])
    torch.set_num_threads(case['threads'])
    torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))  # as training
    model_cfg = model_variant_cfg(cfg.model.to_dict(), case['variant'])
    torch.manual_seed(0)
    # ConfigDict: mmdet's detectors read train_cfg.rpn / test_cfg.rcnn as attributes.
    model = MODELS.build(ConfigDict(model_cfg)).to(device)
    model.init_weights()
    clock = Clock(case['clock'], device)
    inputs, samples = _synthetic_batch(scope, case['batch'], case['height'], case['width'], device,
                                       _num_classes(model_cfg))
    result = dict(variant=case['variant'])

    def train_step() -> None:
        with autocast(device, DTYPES[case['dtype']]):
            losses = model(inputs, copy.deepcopy(samples), mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def infer_step() -> list:
        with torch.no_grad(), autocast(device, DTYPES[case['dtype']]):
            return model(inputs, copy.deepcopy(samples), mode='predict')

    if 'train' in case['modes']:
        model.train()
        # the first step's peak is the one to report on CPU (ru_maxrss is a high-water mark)
        before = rss_bytes() if device.type != 'cuda' else None
        if device.type == 'cuda':
            train_step()
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(max(case['warmup'], 1)):
            train_step()
        result['train_peak_mem_mib'] = ((torch.cuda.max_memory_allocated() - base) if device.type == 'cuda'
                                        else max(0, peak_rss_bytes() - before)) / 2 ** 20
        start = clock()
        for _ in range(case['iters']):
            train_step()
        result['train_s_per_iter'] = (clock() - start) / case['iters']
    if 'infer' in case['modes']:
        model.eval()
        outputs = None
        for _ in range(case['warmup']):
            outputs = infer_step()
        start = clock()
        for _ in range(case['iters']):
            outputs = infer_step()
        result['infer_fps'] = case['batch'] * case['iters'] / (clock() - start)
        if scope != 'mmseg' and outputs:
            result['detections_per_image'] = statistics.mean(len(o.pred_instances) for o in outputs)
    print(json.dumps(result))


def _add_model_ratios(rows: List[dict]) -> None:
    """Adds ``<figure>_vs_ours`` (per-round paired, see :func:`paired_ratio`) to each row beside ours.

    Args:
        rows: One dict per variant with its ``rounds`` (or an ``error``); without an ``ours`` row, no ratios.
    """
    ours = next((r for r in rows if r['variant'] == 'ours' and 'error' not in r), None)
    if ours is None:
        return
    for row in rows:
        if row is ours or 'error' in row:
            continue
        for key in ('train_s_per_iter', 'train_peak_mem_mib', 'infer_fps'):
            # a CPU step can grow the resident set by 0 MiB (memory cached from the warm-up): no ratio then
            if key in row and key in ours and all(r[key] for r in ours['rounds']):
                row[f'{key}_vs_ours'] = paired_ratio([r[key] for r in row['rounds']],
                                                     [r[key] for r in ours['rounds']])


def run_model(args: argparse.Namespace) -> dict:
    height, width = args.size
    device = 'cuda' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'
    per_round: Dict[str, List[dict]] = {v: [] for v in args.variants}
    errors: Dict[str, str] = {}
    for rnd in range(args.rounds):
        for variant in rotated(list(args.variants), rnd):  # every round, each in a fresh process
            if variant in errors:
                continue
            case = dict(config=args.config, variant=variant, height=height, width=width, batch=args.batch,
                        iters=args.iters, warmup=args.warmup, modes=args.modes, dtype=args.dtype,
                        device=device, clock=args.clock, threads=args.threads or torch.get_num_threads())
            proc = subprocess.run([sys.executable, __file__, '_model_probe', json.dumps(case)],
                                  capture_output=True, text=True, timeout=3600)
            try:
                per_round[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            except (IndexError, ValueError):
                errors[variant] = (proc.stderr.strip().splitlines() or ['no output'])[-1][:200]
    rows = []
    for variant in args.variants:
        if variant in errors:
            rows.append(dict(variant=variant, error=errors[variant]))
            continue
        runs = per_round[variant]
        row = dict(variant=variant, rounds=runs)  # each round's figures, in the order they were taken
        for key in ('train_s_per_iter', 'train_peak_mem_mib', 'infer_fps', 'detections_per_image'):
            values = [r[key] for r in runs if key in r]
            if values:
                row[key] = statistics.median(values)
        rows.append(row)
    _add_model_ratios(rows)
    report = dict(mode='model', config=args.config, size=f'{width}x{height}', batch=args.batch, dtype=args.dtype,
                  clock=args.clock, env=environment(), command=' '.join(sys.argv), rows=rows)
    if not args.json:
        print(f'{args.config} @ {width}x{height}, batch {args.batch}, {args.dtype}, {args.clock} clock')
        print(f'{"variant":<11}{"infer img/s":>12}{"dets/img":>9}{"train s/iter":>14}{"peak MiB":>10}'
              f'{"s/iter vs ours":>16}{"mem vs ours":>12}')
        for row in rows:
            if 'error' in row:
                print(f'{row["variant"]:<11} n/a ({row["error"]})')
                continue
            print(f'{row["variant"]:<11}{row.get("infer_fps", float("nan")):>12.3f}'
                  f'{row.get("detections_per_image", float("nan")):>9.0f}'
                  f'{row.get("train_s_per_iter", float("nan")):>14.2f}{row.get("train_peak_mem_mib", float("nan")):>10.0f}'
                  f'{row.get("train_s_per_iter_vs_ours", 1.0):>16.2f}{row.get("train_peak_mem_mib_vs_ours", 1.0):>12.2f}')
    return report


# -------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    cuda = torch.cuda.is_available()

    def common(p: argparse.ArgumentParser, iters: int, warmup: int, rounds: int) -> None:
        p.add_argument('--iters', type=int, default=iters, help='timed steps per round')
        p.add_argument('--warmup', type=int, default=warmup, help='untimed steps before the first round')
        p.add_argument('--rounds', type=int, default=rounds, help='interleaved rounds; the median is reported')
        p.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
        p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
        p.add_argument('--device', default='cuda' if cuda else 'cpu')
        p.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
        p.add_argument('--save-json', metavar='PATH', help='also write the JSON report to PATH (atomically)')

    bb = sub.add_parser('backbone', help='ours vs timm vs mmpretrain, same weights, interleaved')
    common(bb, iters=10 if cuda else 1, warmup=3 if cuda else 1, rounds=5 if cuda else 3)
    bb.add_argument('--arch', default='tiny', help="arch name or 'depths:2,2,2,2;channels:8,16,32,64'")
    bb.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS)
    bb.add_argument('--sizes', nargs='+', default=['224', '1344x800'], help="'224' or WIDTHxHEIGHT")
    bb.add_argument('--batch', type=int, default=64 if cuda else 4, help='batch of square sizes (\'224\')')
    bb.add_argument('--det-batch', type=int, default=2 if cuda else 1, help='batch of WIDTHxHEIGHT sizes')
    bb.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    bb.add_argument('--dtypes', nargs='+', default=list(DTYPES) if cuda else ['fp32'], choices=list(DTYPES))
    bb.add_argument('--memory-formats', nargs='+', default=list(MEMORY_FORMATS), choices=list(MEMORY_FORMATS))
    bb.add_argument('--compile', nargs='+', default=['off', 'on'] if cuda else ['off'], choices=('off', 'on'))
    bb.add_argument('--with-cp', action='store_true', help='activation checkpointing in ours and mmpretrain')
    bb.add_argument('--memory', action=argparse.BooleanOptionalAction, default=cuda,
                    help='peak memory per case (default on CUDA; on CPU: one fresh process per case)')

    md = sub.add_parser('model', help='a detector / segmentor config with our and mmpretrain\'s backbone')
    common(md, iters=10 if cuda else 1, warmup=2 if cuda else 1, rounds=3 if cuda else 1)
    md.add_argument('config')
    md.add_argument('--size', type=int, nargs=2, default=(800, 1344) if cuda else (512, 800),
                    metavar=('H', 'W'), help='input height and width (CPU default is smaller: 512 800)')
    md.add_argument('--batch', type=int, default=2)
    md.add_argument('--dtype', default='fp32', choices=list(DTYPES), help='autocast dtype')
    md.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    md.add_argument('--variants', nargs='+', default=['ours', 'mmpretrain', 'ours_cp'],
                    choices=('ours', 'mmpretrain', 'ours_cp'))

    ln = sub.add_parser('layernorm', help='channels-first LayerNorm options')
    common(ln, iters=5, warmup=1, rounds=3)
    ln.add_argument('--shapes', nargs='+', default=['2,96,200,336', '32,96,56,56', '2,768,25,42'])
    ln.add_argument('--memory-formats', nargs='+', default=list(MEMORY_FORMATS), choices=list(MEMORY_FORMATS))
    ln.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=('infer', 'train'))
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == '_memory_probe':
        memory_probe(argv[1])
        return 0
    if argv and argv[0] == '_model_probe':
        model_probe(argv[1])
        return 0
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = {'backbone': run_backbone, 'model': run_model, 'layernorm': run_layernorm}[args.command]
    report = runner(args)
    if args.json:
        print(json.dumps(report, indent=1))
    if args.save_json:
        from convnext_dense.io import atomic_write
        atomic_write(json.dumps(report, indent=1), args.save_json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
