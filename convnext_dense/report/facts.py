"""The facts of a training run: its config and what it changes from the config it inherits, params and
FLOPs, pre-training weights, iterations and wall time.

The config a run was started from is found by name: the file ``test --out`` recorded, else a shipped
config whose file name the work dir's dumped config has. Two sets of differences are shown: the config
file's own (its merged form against its ``_base_`` files merged alone) and the command line's (the run's
merged config, which mmengine dumped with ``--cfg-options`` applied, against the config file's). Params and FLOPs come
from the metafile for the paper's configs; other models are counted (FLOPs with the same counters as
``convnext-dense flops``, at the config's test size) only when that takes seconds.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from convnext_dense import zoo
from convnext_dense.config import _base_files, config_names, config_root
from convnext_dense.report.workdir import WorkDir

#: FLOPs are counted for models up to this many parameters at test inputs up to this many pixels.
FLOPS_MAX_PARAMS = 100e6
FLOPS_MAX_PIXELS = 512 * 512
#: Keys the command line sets on every run; they are not differences of the config.
RUNTIME_KEYS = ('work_dir', 'launcher', 'filename')


@dataclass
class RunFacts:
    """What the page's facts table shows for one run (all values are display strings)."""
    config_name: str
    source_config: str = 'not found'
    base_config: str = '-'
    differences: List[Tuple[str, str, str]] = field(default_factory=list)
    overrides: List[Tuple[str, str, str]] = field(default_factory=list)
    params: str = 'not computed'
    flops: str = 'not computed'
    pretrained: str = 'none (trained from scratch)'
    iterations: str = '-'
    wall_time: str = '-'
    time_per_iter: str = '-'


def flatten(value: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'model.backbone.arch': 'atto', ...}``: dicts opened into dotted keys, other values kept whole."""
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(flatten(item, f'{prefix}{key}.' if isinstance(item, dict) and item else f'{prefix}{key}'))
        return flat if flat or not prefix else {prefix.rstrip('.'): value}
    return {prefix: value}


def config_differences(run: Config, base: Config) -> List[Tuple[str, str, str]]:
    """``(key, base value, run value)`` for every dotted key whose value differs ('-' where absent)."""
    run_flat = {k: v for k, v in flatten(run.to_dict()).items() if k.split('.')[0] not in RUNTIME_KEYS}
    base_flat = {k: v for k, v in flatten(base.to_dict()).items() if k.split('.')[0] not in RUNTIME_KEYS}
    rows = []
    for key in sorted(set(run_flat) | set(base_flat)):
        old, new = base_flat.get(key, '-'), run_flat.get(key, '-')
        if repr(old) != repr(new):
            rows.append((key, _short(old), _short(new)))
    return rows


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def find_source_config(work_dir: WorkDir, recorded: Optional[str]) -> Optional[Path]:
    """The config file the run was started from (see the module docstring), or None."""
    dumped = sorted(work_dir.path.glob('*.py'))
    stems = {p.stem for p in dumped}
    if recorded and Path(recorded).is_file() and (not stems or Path(recorded).stem in stems):
        return Path(recorded)
    for stem in sorted(stems):
        matches = [name for name in config_names() if name.split('/')[-1] == stem]
        if len(matches) == 1:
            return config_root() / f'{matches[0]}.py'
    return None


def merged_base(config_file: Path) -> Optional[Config]:
    """The ``_base_`` files of ``config_file`` merged alone, or None when it inherits nothing."""
    bases = [str(Path(b).resolve()) for b in _base_files(str(config_file))]
    if not bases:
        return None
    return Config.fromstring(f'_base_ = {bases!r}\n', '.py')


def _test_shape(cfg: Config) -> Optional[Tuple[int, int]]:
    """The (H, W) the config tests at: its preprocessor's fixed size, crop size, or test Resize scale."""
    size = (cfg.model.get('data_preprocessor') or {}).get('size') or cfg.get('crop_size')
    if size:
        return int(size[0]), int(size[1])
    pipeline = ((cfg.get('test_dataloader') or {}).get('dataset') or {}).get('pipeline') or []
    for step in pipeline:
        if isinstance(step, dict) and step.get('type') == 'Resize' and step.get('scale'):
            width, height = step['scale']
            return int(height), int(width)
    return None


def _count_params(cfg: Config) -> int:
    """Parameters of the config's model, built on the meta device (no memory, no weights loaded)."""
    import torch
    from mmengine.registry import MODELS, init_default_scope

    from convnext_dense.config import syncbn_to_bn
    if cfg.get('default_scope') == 'mmseg':
        import mmseg.models  # noqa: F401  registers mmseg's modules
    else:
        import mmdet.models  # noqa: F401  registers mmdet's modules
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    with torch.device('meta'):
        model = MODELS.build(syncbn_to_bn(cfg.model.to_dict()))
    return sum(p.numel() for p in model.parameters())


def complexity(cfg: Config, config_name: str) -> Tuple[str, str]:
    """``(params, FLOPs)`` as display strings (see the module docstring)."""
    paper = zoo.lookup(config_name)
    if paper and paper.get('params') and paper.get('flops'):
        return (f'{paper["params"] / 1e6:.1f}M (the paper\'s, from the metafile)',
                f'{paper["flops"] / 1e9:.1f}G at the paper\'s input size (from the metafile)')
    try:
        params = _count_params(cfg)
    except Exception as error:  # noqa: BLE001 - a model the meta device cannot build is counted below or not at all
        params, reason = None, f'the model does not build on the meta device ({type(error).__name__})'
    shape = _test_shape(cfg)
    if shape is None:
        reason = 'the config tests at no fixed size'
    elif params is not None and (params > FLOPS_MAX_PARAMS or shape[0] * shape[1] > FLOPS_MAX_PIXELS):
        reason = 'it would take minutes'
    else:
        return _count_flops(cfg, shape, params)
    params_text = f'{params / 1e6:.2f}M' if params is not None else 'not computed'
    return params_text, f'not computed: {reason} (convnext-dense flops CONFIG --shape H W counts them)'


def _count_flops(cfg: Config, shape: Tuple[int, int], params: Optional[int]) -> Tuple[str, str]:
    try:
        if cfg.get('default_scope') == 'mmseg':
            from convnext_dense.analysis.seg_flops import segmentor_complexity as count
        else:
            from convnext_dense.analysis.det_flops import detector_complexity as count
        result = count(cfg, shape)
    except Exception as error:  # noqa: BLE001 - counting is a convenience: the reason goes into the page
        text = f'{params / 1e6:.2f}M' if params is not None else 'not computed'
        return text, f'not computed ({type(error).__name__}: {str(error).splitlines()[0][:120]})'
    return f'{result["params"] / 1e6:.2f}M', f'{result["flops"] / 1e9:.2f}G at {shape[0]}x{shape[1]} (HxW)'


def pretrained_weights(cfg: Config) -> str:
    """The backbone's ``init_cfg`` checkpoint, else the whole model's ``load_from``, else none."""
    init_cfg = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
    if isinstance(init_cfg, dict) and init_cfg.get('checkpoint'):
        return f'{init_cfg["checkpoint"]} (backbone init_cfg)'
    if cfg.get('load_from'):
        return f'{cfg.load_from} (load_from)'
    return 'none (trained from scratch)'


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours} h {minutes:02d} min' if hours else f'{minutes} min {secs:02d} s'


def run_facts(work_dir: WorkDir, recorded_config: Optional[str] = None) -> RunFacts:
    """The facts of ``work_dir``'s run (strings for the page; 'not found' / 'not computed' where unknown).

    Args:
        work_dir: The run.
        recorded_config: The config file ``test --out`` recorded for its results, if any.
    """
    cfg = work_dir.cfg
    dumped = sorted(work_dir.path.glob('*.py'))
    facts = RunFacts(config_name=dumped[0].stem if dumped else (work_dir.config_file.stem if work_dir.config_file
                                                                  else '-'))
    if cfg is None:
        return facts
    source = find_source_config(work_dir, recorded_config)
    if source is not None:
        facts.source_config = str(source)
        config = Config.fromfile(str(source))
        facts.overrides = config_differences(cfg, config)
        base = merged_base(source)
        if base is not None:
            facts.base_config = ', '.join(Path(b).name for b in _base_files(str(source)))
            facts.differences = config_differences(config, base)
    facts.params, facts.flops = complexity(cfg, facts.config_name)
    facts.pretrained = pretrained_weights(cfg)
    train_cfg = cfg.get('train_cfg') or {}
    last = work_dir.last_iteration
    planned = train_cfg.get('max_iters')
    if planned is None and train_cfg.get('max_epochs') and work_dir.epoch_length:
        planned = train_cfg['max_epochs'] * work_dir.epoch_length
    if last is not None:
        facts.iterations = f'{last} of {planned}' if planned else str(last)
    if work_dir.train_wall_s is not None:
        facts.wall_time = _duration(work_dir.train_wall_s)
    times = [value for _, value in work_dir.train.get('time', []) if math.isfinite(value)]
    if times:
        facts.time_per_iter = f'{sum(times) / len(times):.3f} s (mean of the logged windows)'
    return facts


def summarize_facts(facts: Sequence[RunFacts]) -> List[Tuple[str, List[str]]]:
    """Rows ``(fact, [value per run])`` of the facts table."""
    fields = (('config', 'config_name'), ('started from', 'source_config'), ('inherits', 'base_config'),
              ('params', 'params'), ('FLOPs', 'flops'), ('pre-training weights', 'pretrained'),
              ('iterations', 'iterations'), ('training wall time', 'wall_time'),
              ('time per iteration', 'time_per_iter'))
    return [(title, [getattr(f, name) for f in facts]) for title, name in fields]
