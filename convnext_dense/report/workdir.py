"""What a work dir holds, read without running anything: mmengine's runs, their scalars and logs, and the
config the run dumped.

mmengine lays a work dir out as::

    WORK_DIR/<config name>.py                          the merged config (``Runner.dump_config``)
    WORK_DIR/<YYYYMMDD_HHMMSS>/<YYYYMMDD_HHMMSS>.log   the log of one run (training, resumed training, test)
    WORK_DIR/<YYYYMMDD_HHMMSS>/<YYYYMMDD_HHMMSS>.json  the metrics of a test run
    WORK_DIR/<YYYYMMDD_HHMMSS>/vis_data/config.py      the merged config of that run
    WORK_DIR/<YYYYMMDD_HHMMSS>/vis_data/scalars.json   one JSON line per logged training step or validation

A resumed training run starts a new timestamp folder and logs again the iterations after its checkpoint:
the later run's values win. Validation records carry the iteration as their step, or the epoch when an
epoch-based loop logs metrics by epoch (mmengine's default there); :func:`read_work_dir` puts both on the
iteration axis.
"""
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from convnext_dense.errors import ReportError

#: mmengine names each run's folder by its start time.
RUN_FOLDER = re.compile(r'^\d{8}_\d{6}$')
RUN_TIME_FORMAT = '%Y%m%d_%H%M%S'
# mmengine's log lines start with "2026/12/01 10:00:00 - mmengine - INFO - ".
LOG_TIME = re.compile(r'^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) - ')
LOG_TIME_FORMAT = '%Y/%m/%d %H:%M:%S'
#: Keys of a scalars record that place it (not values to draw).
PLACE_KEYS = ('step', 'iter', 'epoch')

#: ``{key: [(iteration, value), ...]}`` in iteration order.
History = Dict[str, List[Tuple[int, float]]]


@dataclass
class WorkDir:
    """One training work dir as the report reads it.

    Attributes:
        path: The folder.
        label: Its name in legends and tables (unique among the report's work dirs).
        runs: Its run folders, oldest first.
        train: Training scalars by key (losses, lr, grad_norm, time, ...), on the iteration axis.
        val: Validation metrics by key, on the iteration axis.
        epoch_length: Iterations per epoch of an epoch-based run (estimated from the log), else None.
        train_wall_s: Wall time of the training runs (first to last log line of each, summed), or None.
        config_file: The merged config the newest training run dumped, or None.
        notes: What could not be read, one line each (shown in the page and printed as warnings).
    """
    path: Path
    label: str
    runs: Tuple[Path, ...]
    train: History = field(default_factory=dict)
    val: History = field(default_factory=dict)
    epoch_length: Optional[int] = None
    train_wall_s: Optional[float] = None
    config_file: Optional[Path] = None
    cfg: Optional[Config] = None
    notes: List[str] = field(default_factory=list)

    @property
    def last_iteration(self) -> Optional[int]:
        """The last training iteration logged, or None when none was."""
        steps = [points[-1][0] for points in self.train.values() if points]
        return max(steps) if steps else None


def run_folders(path: Path) -> List[Path]:
    """The run folders (``YYYYMMDD_HHMMSS``) directly under ``path``, oldest first."""
    return sorted(p for p in path.iterdir() if p.is_dir() and RUN_FOLDER.match(p.name))


def _records(scalars: Path) -> List[dict]:
    records = []
    lines = scalars.read_text(encoding='utf-8').splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # the line being written when the run was stopped
            raise ReportError(f'{scalars} line {number} is not JSON ({error.msg}); the file is damaged: remove '
                              f'that line or the run folder') from error
    return records


def is_training_record(record: dict) -> bool:
    """Training iterations log the learning rate and the losses; validations log metrics only."""
    return 'lr' in record or any('loss' in key for key in record)


def estimate_epoch_length(records: Sequence[dict]) -> Optional[int]:
    """Iterations per epoch from training records that hold both ``epoch`` and the global ``iter``.

    Iteration ``i`` of epoch ``e`` (1-based) satisfies ``(e - 1) * L < i <= e * L``; the smallest ``L`` that
    every record allows is returned (None without epoch-based records).
    """
    length = 0
    for record in records:
        if 'epoch' in record and 'iter' in record and int(record['epoch']) > 0:
            length = max(length, math.ceil(int(record['iter']) / int(record['epoch'])))
    return length or None


def _merge(history: History, step: int, record: dict) -> None:
    for key, value in record.items():
        if key in PLACE_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        points = history.setdefault(key, [])
        while points and points[-1][0] >= step:  # a resumed run logs these iterations again: it wins
            points.pop()
        points.append((step, float(value)))


def _log_span_s(log_file: Path, started: datetime) -> Optional[float]:
    """Seconds from the run's start (its folder name) to the last time stamp of its log."""
    last = None
    with open(log_file, encoding='utf-8', errors='replace') as f:
        for line in f:
            match = LOG_TIME.match(line)
            if match:
                last = match.group(1)
    if last is None:
        return None
    return max(0.0, (datetime.strptime(last, LOG_TIME_FORMAT) - started).total_seconds())


def read_history(path: Path, val_by_epoch: bool = False) -> Tuple[History, History, Optional[int],
                                                                   Optional[float], List[Path]]:
    """Training and validation scalars of every run under ``path``, on the iteration axis.

    Args:
        path: A work dir.
        val_by_epoch: Validation records carry the epoch as their step (an epoch-based loop whose logger
            has ``log_metric_by_epoch=True``).

    Returns:
        ``(train, val, epoch_length, train_wall_s, training_runs)``.
    """
    runs = []
    for run in run_folders(path):
        scalars = run / 'vis_data' / 'scalars.json'
        if scalars.is_file():
            runs.append((run, _records(scalars)))
    all_train = [r for _, records in runs for r in records if is_training_record(r)]
    epoch_length = estimate_epoch_length(all_train)
    train: History = {}
    val: History = {}
    spans: List[Optional[float]] = []
    training_runs = []
    for run, records in runs:
        has_training = False
        for record in records:
            step = int(record.get('step', record.get('iter', 0)))
            if is_training_record(record):
                has_training = True
                _merge(train, step, record)
            else:
                if val_by_epoch and epoch_length:
                    step *= epoch_length
                _merge(val, step, {k: v for k, v in record.items() if k not in ('time', 'data_time')})
        if has_training:
            training_runs.append(run)
            log_file = run / f'{run.name}.log'
            started = datetime.strptime(run.name, RUN_TIME_FORMAT)
            spans.append(_log_span_s(log_file, started) if log_file.is_file() else None)
    wall_s = sum(spans) if spans and None not in spans else None
    return train, val, epoch_length, wall_s, training_runs


def dumped_config(path: Path, runs: Sequence[Path]) -> Optional[Path]:
    """The merged config of the newest run that dumped one (``vis_data/config.py``), a training run (one that
    logged scalars) before a test run in the same folder; else ``WORK_DIR/*.py``."""
    dumped = [run for run in runs if (run / 'vis_data' / 'config.py').is_file()]
    trained = [run for run in dumped if (run / 'vis_data' / 'scalars.json').is_file()]
    if trained or dumped:
        return (trained or dumped)[-1] / 'vis_data' / 'config.py'
    in_root = sorted(path.glob('*.py'), key=lambda p: p.stat().st_mtime)
    return in_root[-1] if in_root else None


def check_work_dir(path: Path) -> List[Path]:
    """Returns the run folders of ``path``; raises :class:`ReportError` when it is not an mmengine work dir."""
    if not path.exists():
        raise ReportError(f'work dir {path} does not exist; pass the --work-dir of a train run')
    if not path.is_dir():
        raise ReportError(f'work dir {path} is a file, not a folder; pass the --work-dir of a train run '
                          f'(results files go after --results)')
    runs = run_folders(path)
    if not runs:
        raise ReportError(f'{path} is not a work dir: it holds no run folder (YYYYMMDD_HHMMSS/) with a log; '
                          f'pass the --work-dir of a train run')
    return runs


def unique_labels(paths: Sequence[Path]) -> List[str]:
    """Short names for work dirs: the folder name, with parents added until the names differ."""
    depth = 1
    while True:
        labels = ['/'.join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.resolve().parts) for p in paths):
            return labels
        depth += 1


def load_run_config(config_file: Path) -> Config:
    """Reads a config a run dumped; raises :class:`ReportError` naming the file when mmengine cannot."""
    try:
        return Config.fromfile(str(config_file))
    except Exception as error:  # noqa: BLE001 - a dumped config fails in as many ways as Python code can
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ReportError(f'{config_file}: mmengine cannot read this dumped config ({first}); re-run the '
                          f'training or restore the file') from error


def validates_by_epoch(cfg: Config) -> bool:
    """Whether validation records carry the epoch as their step (epoch-based loop, metrics logged by epoch)."""
    loop = (cfg.get('train_cfg') or {}).get('type', '')
    epoch_based = 'Epoch' in loop or (not loop and 'max_epochs' in (cfg.get('train_cfg') or {}))
    logger = (cfg.get('default_hooks') or {}).get('logger') or {}
    return epoch_based and logger.get('log_metric_by_epoch', True)


def read_work_dir(path: Path, label: str) -> WorkDir:
    """Reads a training work dir (see the module docstring).

    Args:
        path: The folder passed as ``--work-dir`` to ``train``.
        label: Its name in the report.

    Raises:
        ReportError: ``path`` is not an mmengine work dir, or its scalars or config are damaged.
    """
    runs = check_work_dir(path)
    config_file = dumped_config(path, runs)
    cfg = load_run_config(config_file) if config_file else None
    train, val, epoch_length, wall_s, training_runs = read_history(path, cfg is not None and validates_by_epoch(cfg))
    work_dir = WorkDir(path=path, label=label, runs=tuple(runs), train=train, val=val, epoch_length=epoch_length,
                       train_wall_s=wall_s, config_file=config_file, cfg=cfg)
    if config_file is None:
        work_dir.notes.append(f'{path}: no dumped config (vis_data/config.py or WORK_DIR/*.py): the run\'s facts '
                              f'and the declared lr schedule are not shown')
    if not training_runs:
        work_dir.notes.append(f'{path}: no training logged yet (no training records in */vis_data/scalars.json): '
                              f'no training curves')
    elif not val:
        interval = (cfg.get('train_cfg') or {}).get('val_interval') if cfg is not None else None
        when = f' (train_cfg.val_interval is {interval})' if interval else ''
        work_dir.notes.append(f'{path}: no validation yet{when}: no validation curves or metric deltas')
    return work_dir
