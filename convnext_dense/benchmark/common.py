"""Shared pieces of the benchmark modes: sizes, clocks, memory readings, autocast, rounds and paired ratios."""
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from convnext_dense.errors import ConfigError

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


MEMORY_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


def parse_size(text: str) -> Tuple[int, int]:
    """``'224'`` -> (224, 224); ``'1344x800'`` (width x height, as papers write it) -> (800, 1344) as H, W."""
    if 'x' in text:
        width, height = (int(v) for v in text.lower().split('x'))
        return height, width
    return int(text), int(text)


def cpu_description() -> dict:
    """The CPU's model name and the vector instruction sets that decide which kernels pay off.

    ``cpu_capability`` is what PyTorch's own kernels use (``torch.backends.cpu.get_cpu_capability()``);
    ``isa`` lists the relevant ``/proc/cpuinfo`` flags (AVX2, AVX-512, VNNI, AMX) the CPU has.
    """
    model, flags = platform.processor() or 'cpu', set()
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'model name' and model in ('cpu', platform.processor()):
                model = value.strip()
            elif key.strip() == 'flags' and not flags:
                flags = set(value.split())
    isa = [name for name in ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile')
           if name in flags]
    return dict(cpu=model, cores=os.cpu_count(), cpu_capability=torch.backends.cpu.get_cpu_capability(), isa=isa)


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
        cpu = cpu_description()
        info['device'] = f'{cpu["cpu"]}, {cpu["cores"]} cores, {"/".join(cpu["isa"]) or "no AVX2"}'
        info.update(cpu)
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


def rotated(names: List[str], shift: int) -> List[str]:
    """``names`` rotated left by ``shift``: round ``r`` of a benchmark starts with a different variant."""
    shift %= max(len(names), 1)
    return names[shift:] + names[:shift]


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median over rounds of ``numerator / denominator`` taken in the same round.

    Rounds interleave the implementations, so the two figures of a pair saw the machine in the same state. A shared
    machine's speed drifts by up to 1.5x within one run (per-round training img/s of one implementation spanned
    1.33-2.82), and the ratio of two separately taken medians mixes that drift in; the paired median does not.

    Args:
        numerators: one figure per round (e.g. our img/s).
        denominators: the reference's figures from the same rounds, in the same order.
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ConfigError(f'paired_ratio needs one figure per round on both sides, got {len(numerators)} '
                         f'and {len(denominators)}')
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def run_probe(kind: str, case: dict, timeout: float) -> Tuple[Optional[dict], str]:
    """Runs ``python -m convnext_dense.benchmark _<kind>_probe CASE`` in a fresh process.

    Args:
        kind: ``'memory'`` or ``'model'``.
        case: The JSON-able description of what the child measures.
        timeout: Seconds before the child is killed.

    Returns:
        The child's last stdout line as a dict (None if it printed none) and the last line of its stderr.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # importable without an install, as here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, '-m', 'convnext_dense.benchmark', f'_{kind}_probe', json.dumps(case)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ''
    except (IndexError, ValueError):
        return None, (proc.stderr.strip().splitlines() or ['no output'])[-1][:200]


def time_interleaved(calls: Dict[str, Callable[[], Any]], rounds: int, iters: int, clock: Clock
                     ) -> Dict[str, List[float]]:
    """Seconds per call of each, in rounds that rotate which runs first, after one untimed call of each.

    Args:
        calls: The calls to time, by name.
        rounds: Interleaved rounds.
        iters: Timed calls per round.
        clock: The clock to read.
    """
    for call in calls.values():  # warm-up: first calls build kernels and allocate
        call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for rnd in range(rounds):
        for name in rotated(list(calls), rnd):
            start = clock()
            for _ in range(iters):
                calls[name]()
            times[name].append((clock() - start) / iters)
    return times


def add_shape_arguments(parser) -> None:
    """The architecture and input options of the modes that time blocks or their parts (``--arch``, ...)."""
    parser.add_argument('--arch', default='tiny', help="arch name or 'depths:2,2,2,2;channels:8,16,32,64'")
    parser.add_argument('--size', default='224', help="input size, '224' or WIDTHxHEIGHT")
    parser.add_argument('--batch', type=int, default=8)


def add_common_arguments(parser, iters: int, warmup: int, rounds: int) -> None:
    """Options every mode takes: steps, rounds, clock, threads, device and the JSON outputs.

    Args:
        parser: The mode's sub-parser.
        iters: Default timed steps per round.
        warmup: Default untimed steps before the first round.
        rounds: Default number of interleaved rounds.
    """
    parser.add_argument('--iters', type=int, default=iters, help='timed steps per round')
    parser.add_argument('--warmup', type=int, default=warmup, help='untimed steps before the first round')
    parser.add_argument('--rounds', type=int, default=rounds, help='interleaved rounds; the median is reported')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--save-json', metavar='PATH', help='also write the JSON report to PATH (atomically)')
