"""The built-in demo: synthetic shapes -> Mask R-CNN and UperNet on ConvNeXt, trained and evaluated here.

    convnext-dense demo --out demo_output        # or: python tools/demo.py --out demo_output

It generates ``data/shapes`` if absent (``convnext-dense make-shapes``), then for each demo config runs
``convnext-dense train`` and ``convnext-dense test --show-dir`` as subprocesses (their logs, with ETA, stream live),
reads the metrics mmengine wrote into the work directories and leaves in ``--out``. The segmentor trains
first; the detector's backbone starts from its checkpoint (a two-line config in ``--out/configs`` that
inherits the detection config and sets the backbone's ``init_cfg``), as the paper's detectors start from
pre-trained weights: a from-scratch Mask R-CNN learns next to nothing in the demo's few hundred iterations.
It leaves:

- ``summary.json``: bbox mAP, segm mAP, mIoU, wall times, device (written atomically);
- ``learning_curves.png``: training loss and validation metrics over iterations;
- ``predictions.png``: ground truth | prediction on a few val images (boxes + masks; colour maps);
- ``work_dirs/{det,seg}``: the usual logs, checkpoints, painted predictions and test results;
- ``report/index.html``: ``convnext-dense report`` of both runs (curves, per-class results, errors, images).

A GPU, when present, is used by mmengine automatically.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from matplotlib.figure import Figure
from PIL import Image

from convnext_dense.cli.errors import RUN_ERROR
from convnext_dense.config import config_path
from convnext_dense.datasets.shapes import make_shapes
from convnext_dense.errors import RunError
from convnext_dense.io import atomic_write
from convnext_dense.report.page import write_report


@dataclass(frozen=True)
class Task:
    """One demo model: its config, the metrics it reports and how to point it at the data."""
    key: str
    title: str
    config: str
    metrics: Tuple[str, ...]
    dataloaders: Tuple[str, ...] = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    evaluators: Tuple[str, ...] = ()
    #: Key of an earlier task whose trained backbone this one starts from (when that task ran).
    backbone_from: Optional[str] = None


SEG = Task('seg', 'UperNet, ConvNeXt-atto', 'demo/upernet_convnext_shapes', ('mIoU',))
DET = Task('det', 'Mask R-CNN, ConvNeXt-atto', 'demo/mask_rcnn_convnext_shapes',
           ('coco/bbox_mAP', 'coco/segm_mAP'), evaluators=('val_evaluator', 'test_evaluator'),
           backbone_from='seg')
TASKS: Tuple[Task, ...] = (SEG, DET)  # in training order: DET starts from SEG's backbone
#: Targets on the val split, as fractions (mmseg reports mIoU in percent; it is divided by 100 here).
TARGETS: Dict[str, float] = {'coco/bbox_mAP': 0.50, 'mIoU': 0.70}
TIME_BUDGET_S = 15 * 60


def thread_env(threads: Optional[int]) -> Dict[str, str]:
    """``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for the subprocesses: ``threads`` when given, else the ones
    already set, else every core (``os.cpu_count()``) - what a quiet machine without a GPU should use."""
    if threads is None:
        threads = int(os.environ.get('OMP_NUM_THREADS') or os.cpu_count() or 1)
    return {'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads)}


def log(message: str) -> None:
    print(f'[demo {time.strftime("%H:%M:%S")}] {message}', flush=True)


def ensure_data(data_root: Path, seed: int) -> None:
    """Generates the shapes dataset unless ``data_root`` already holds one."""
    if (data_root / 'annotations' / 'instances_val.json').is_file() and (data_root / 'labels' / 'val').is_dir():
        log(f'data: using {data_root} (delete it to regenerate)')
        return
    log(f'data: generating the shapes dataset in {data_root} (seed {seed})')
    log(f'data: {json.dumps(make_shapes(data_root, seed=seed))}')


def data_options(task: Task, data_root: Path) -> List[str]:
    """``--cfg-options`` that point a demo config at ``data_root``."""
    root = f'{data_root.resolve()}/'
    options = [f'{loader}.dataset.data_root={root}' for loader in task.dataloaders]
    options += [f'{evaluator}.ann_file={root}annotations/instances_val.json' for evaluator in task.evaluators]
    return options


def backbone_init_config(task: Task, checkpoint: Path, out_dir: Path) -> Path:
    """Writes ``out_dir/<task>_from_checkpoint.py``: ``task``'s config with its backbone loaded from
    ``checkpoint`` (any layout our ConvNeXt reads; a segmentor's ``backbone.*`` keys are picked out).

    Returns:
        The path of the written config (atomically replaced).
    """
    text = (f'# Written by convnext-dense demo: {task.config} with its backbone initialised from {checkpoint.name}.\n'
            f'_base_ = [{config_path(task.config)!r}]\n'
            f"model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint={str(checkpoint)!r})))\n")
    out_file = out_dir / f'{task.key}_from_checkpoint.py'
    atomic_write(text, out_file)
    return out_file


def schedule_options(max_iters: Optional[int]) -> List[str]:
    """``--cfg-options`` for a shorter run (smoke tests): validate and save once, at the end."""
    if max_iters is None:
        return []
    return [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            f'default_hooks.checkpoint.interval={max_iters}']


def run_logged(command: Sequence[str], log_file: Path, prefix: str, threads: Optional[int] = None) -> None:
    """Runs ``command``, streaming its output live and into ``log_file``.

    Args:
        command: The command line.
        log_file: Where its output is kept.
        prefix: Shown before each of its lines.
        threads: CPU threads of the process (see :func:`thread_env`).

    Raises:
        RunError: The command failed; the message names the command and its log file.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log(f'{prefix}: {" ".join(command)}')
    env = dict(os.environ, PYTHONUNBUFFERED='1', **thread_env(threads))
    with open(log_file, 'w') as sink, subprocess.Popen(
            list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1) as process:
        for line in process.stdout:
            sink.write(line)
            print(f'  [{prefix}] {line}', end='', flush=True)
    if process.returncode != 0:
        raise RunError(f'{prefix} failed (exit status {process.returncode}): {" ".join(command)}; '
                           f'see {log_file}')


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine's CheckpointHook recorded last in ``work_dir/last_checkpoint``."""
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        raise RunError(f'{pointer} not found: training in {work_dir} saved no checkpoint')
    return Path(pointer.read_text().strip())


def _newest_run(work_dir: Path, pattern: str) -> Path:
    matches = sorted(work_dir.glob(pattern))  # run folders are timestamps: the last sorts newest
    if not matches:
        raise RunError(f'no {pattern} under {work_dir}: did the run log anything?')
    return matches[-1]


def read_history(work_dir: Path, metrics: Sequence[str]) -> Dict[str, List[Tuple[int, float]]]:
    """Training loss and validation metrics over iterations, from mmengine's ``vis_data/scalars.json``.

    Returns:
        ``{'loss': [(iter, loss), ...], metric: [(iter, value), ...], ...}``.
    """
    history: Dict[str, List[Tuple[int, float]]] = {'loss': [], **{m: [] for m in metrics}}
    for line in _newest_run(work_dir, '*/vis_data/scalars.json').read_text().splitlines():
        record = json.loads(line)
        for key in history:
            if key in record:
                history[key].append((int(record['step']), float(record[key])))
    return history


def read_test_metrics(work_dir: Path, metrics: Sequence[str]) -> Dict[str, float]:
    """The metrics ``convnext-dense test`` logged to ``work_dir/<timestamp>/<timestamp>.json``."""
    run = _newest_run(work_dir, '*/[0-9]*.json')
    record = json.loads(run.read_text())
    missing = [m for m in metrics if m not in record]
    if missing:
        raise RunError(f'{run} has no {missing}; it holds {sorted(record)}')
    return {m: float(record[m]) for m in metrics}


def as_fraction(metric: str, value: float) -> float:
    """mmdet reports mAP in [0, 1], mmseg reports mIoU in percent: both are returned in [0, 1]."""
    return value / 100.0 if metric == 'mIoU' else value


def plot_curves(histories: Dict[str, Dict[str, List[Tuple[int, float]]]], out_file: Path) -> None:
    """One row per task: training loss (left), validation metrics (right)."""
    fig = Figure(figsize=(10, 3.2 * len(histories)))
    axes = fig.subplots(len(histories), 2, squeeze=False)
    for row, (title, history) in enumerate(histories.items()):
        loss_ax, metric_ax = axes[row]
        if history['loss']:
            steps, values = zip(*history['loss'])
            loss_ax.plot(steps, values, color='tab:blue')
        loss_ax.set(xlabel='iteration', ylabel='loss')
        loss_ax.set_title(f'{title}: training loss', fontsize=10)
        for metric, points in history.items():
            if metric != 'loss' and points:
                steps, values = zip(*points)
                metric_ax.plot(steps, [as_fraction(metric, v) for v in values], marker='o', label=metric)
                if metric in TARGETS:
                    metric_ax.axhline(TARGETS[metric], linestyle=':', color='grey')
        metric_ax.set(xlabel='iteration', ylim=(0, 1))
        metric_ax.set_title(f'{title}: val metrics (dotted: target)', fontsize=10)
        metric_ax.legend(loc='lower right')
        for ax in (loss_ax, metric_ax):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, out_file)


def plot_predictions(painted: Dict[str, List[Path]], out_file: Path, num_images: int = 3) -> None:
    """A grid of painted test images (each is ground truth | prediction): one row per task."""
    fig = Figure(figsize=(3.4 * num_images, 2.0 * len(painted)))
    axes = fig.subplots(len(painted), num_images, squeeze=False)
    for row, (title, files) in enumerate(painted.items()):
        for col in range(num_images):
            ax = axes[row][col]
            ax.axis('off')
            if col < len(files):
                ax.imshow(Image.open(files[col]).convert('RGB'))
                ax.set_title(f'{title}\nground truth | prediction' if col == 0 else files[col].stem.split('.')[0],
                             fontsize=8)
    fig.tight_layout()
    _save_figure(fig, out_file)


def _save_figure(fig: Figure, out_file: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out_file.suffix.lstrip('.') or 'png', dpi=100)
    atomic_write(buffer.getvalue(), out_file)


def write_json_atomic(data: Dict[str, Any], out_file: Path) -> None:
    atomic_write(json.dumps(data, indent=2, sort_keys=True), out_file)


def target_status(results: Dict[str, Dict[str, Any]]) -> Dict[str, Tuple[float, float, bool]]:
    """``{metric: (value as a fraction, target, met)}`` for every target whose task ran."""
    status = {}
    for metric, target in TARGETS.items():
        task = 'det' if metric.startswith('coco/') else 'seg'
        value = results.get(task, {}).get('metrics', {}).get(metric)
        if value is not None:
            fraction = as_fraction(metric, value)
            status[metric] = (fraction, target, fraction >= target)
    return status


def format_table(results: Dict[str, Dict[str, Any]], wall_s: float) -> str:
    """The final table (markdown), one row per task, with the targets' status."""
    def cell(task: str, metric: str) -> str:
        value = results.get(task, {}).get('metrics', {}).get(metric)
        return '-' if value is None else f'{as_fraction(metric, value):.3f}'

    lines = ['| model | bbox mAP | segm mAP | mIoU | train (s) | test (s) |', '|---|---|---|---|---|---|']
    for task in TASKS:
        if task.key in results:
            r = results[task.key]
            lines.append(f"| {task.title} | {cell(task.key, 'coco/bbox_mAP')} | {cell(task.key, 'coco/segm_mAP')} "
                         f"| {cell(task.key, 'mIoU')} | {r['train_s']:.0f} | {r['test_s']:.0f} |")
    lines.append(f'wall time (data + training + evaluation): {wall_s:.0f} s = {wall_s / 60:.1f} min '
                 f'(budget {TIME_BUDGET_S // 60} min)')
    for metric, (value, target, met) in target_status(results).items():
        lines.append(f'target {metric} >= {target:.2f}: {"met" if met else "MISSED"} ({value:.3f})')
    return '\n'.join(lines)


def painted_images(show_dir: Path) -> List[Path]:
    """The images ``convnext-dense test --show-dir`` painted, in file-name order."""
    return sorted(show_dir.rglob('*.png'), key=lambda p: p.name)


def run_task(task: Task, args: argparse.Namespace, out: Path, backbone: Optional[Path] = None) -> Dict[str, Any]:
    """Trains and tests one demo config; returns metrics, history, painted images and timings.

    Args:
        task: The demo model.
        args: The demo's command-line options.
        out: The demo's output folder.
        backbone: A checkpoint to initialise the backbone from (see :func:`backbone_init_config`), or None
            to train as the config says.
    """
    work_dir = out / 'work_dirs' / task.key
    options = data_options(task, args.data) + schedule_options(args.max_iters)
    config = task.config if backbone is None else str(backbone_init_config(task, backbone, out / 'configs'))
    python = sys.executable
    start = time.time()
    run_logged([python, '-m', 'convnext_dense', 'train', config, '--work-dir', str(work_dir),
                '--cfg-options', *options],
               out / 'logs' / f'{task.key}_train.log', f'{task.key} train', args.threads)
    train_s = time.time() - start
    checkpoint = last_checkpoint(work_dir)
    test_dir, show_dir = work_dir / 'test', work_dir / 'test' / 'painted'
    start = time.time()
    # Absolute paths: mmdet's visualization hook re-joins a relative --show-dir onto the work dir per batch.
    run_logged([python, '-m', 'convnext_dense', 'test', config, str(checkpoint), '--work-dir', str(test_dir),
                '--show-dir', str(show_dir), '--out', str(test_dir / ('results.pkl' if task.key == 'det' else 'maps')),
                '--cfg-options', *options],
               out / 'logs' / f'{task.key}_test.log', f'{task.key} test', args.threads)
    test_s = time.time() - start
    return {'config': config, 'backbone_init': None if backbone is None else str(backbone),
            'checkpoint': str(checkpoint), 'train_s': train_s, 'test_s': test_s,
            'metrics': read_test_metrics(test_dir, task.metrics),
            'history': read_history(work_dir, task.metrics),
            'painted': [str(p) for p in painted_images(test_dir)]}


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train and evaluate the shapes demo (detection + segmentation)')
    parser.add_argument('--out', type=Path, default=Path('demo_output'), help='output folder (default demo_output)')
    parser.add_argument('--data', type=Path, default=Path('data/shapes'),
                        help='shapes dataset, generated if absent (default data/shapes)')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed when it is generated (default 0)')
    parser.add_argument('--tasks', nargs='+', choices=[t.key for t in TASKS], default=[t.key for t in TASKS],
                        help='which demo models to run (default both)')
    parser.add_argument('--max-iters', type=int, help='override the configs\' training length (smoke tests)')
    parser.add_argument('--threads', type=positive_int,
                        help='CPU threads per training / test process (default: OMP_NUM_THREADS if set, else '
                             'all cores)')
    parser.add_argument('--strict', action='store_true',
                        help='exit with status 1 when a metric ends below its target (TARGETS)')
    args = parser.parse_args(argv)
    args.out, args.data = args.out.resolve(), args.data.resolve()
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start = time.time()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)'
    threads = thread_env(args.threads)['OMP_NUM_THREADS']
    log(f'device: {device}; {threads} CPU thread(s) per process; outputs in {args.out}')
    ensure_data(args.data, args.seed)
    results: Dict[str, Dict[str, Any]] = {}
    for index, task in enumerate(t for t in TASKS if t.key in args.tasks):
        log(f'[{index + 1}/{len(args.tasks)}] {task.title}: {task.config} '
            f'(elapsed {time.time() - start:.0f} s)')
        backbone = None
        if task.backbone_from in results:
            backbone = Path(results[task.backbone_from]['checkpoint'])
            log(f'{task.key}: backbone initialised from the {task.backbone_from} run ({backbone})')
        elif task.backbone_from:
            log(f'{task.key}: no {task.backbone_from} run in --tasks, so its backbone trains from scratch')
        results[task.key] = run_task(task, args, args.out, backbone)
    wall_s = time.time() - start

    titles = {t.key: t.title for t in TASKS}
    plot_curves({titles[k]: r['history'] for k, r in results.items()}, args.out / 'learning_curves.png')
    plot_predictions({titles[k]: [Path(p) for p in r['painted']] for k, r in results.items()},
                     args.out / 'predictions.png')
    table = format_table(results, wall_s)
    summary = {'device': device, 'threads': int(threads), 'wall_s': wall_s, 'table': table, 'targets': TARGETS,
               'results': {k: {**r, 'painted': r['painted'][:5]} for k, r in results.items()},
               'figures': {'learning_curves': str(args.out / 'learning_curves.png'),
                           'predictions': str(args.out / 'predictions.png')}}
    write_json_atomic(summary, args.out / 'summary.json')
    print('\n' + table, flush=True)
    log(f'figures: {args.out / "predictions.png"}, {args.out / "learning_curves.png"}; '
        f'summary: {args.out / "summary.json"}')
    log(f'report: {write_report([args.out / "work_dirs" / key for key in results], out=args.out / "report").page}')
    missed = [metric for metric, (_, _, met) in target_status(results).items() if not met]
    return RUN_ERROR if args.strict and missed else 0

