"""Training curves of one or more runs of the same task, overlaid: every loss component and training
accuracy, the lr beside the schedule the config declares, the gradient norm, the time per iteration and the
validation metrics; and the table of the metrics' final values and their deltas to the first run.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from matplotlib.ticker import MaxNLocator

from convnext_dense.report.figures import COLOURS, Picture, grid_margins, new_figure, render
from convnext_dense.report.schedule import declared_lr, ratio_range
from convnext_dense.report.workdir import WorkDir

#: Training keys drawn in the optimisation figure, not among the losses.
OPTIMISATION_KEYS = ('lr', 'base_lr', 'grad_norm', 'time', 'data_time', 'memory')
COLUMNS = 3
#: COCO's APs by object size: in the metric table, not drawn (they follow mAP and would double the panels).
SIZE_SUFFIXES = ('_mAP_s', '_mAP_m', '_mAP_l')


@dataclass
class CurvesSection:
    """What the page shows of a group of runs' curves."""
    pictures: List[Picture] = field(default_factory=list)
    #: ``(metric, [(final, best, best iteration) or None per run])``.
    metrics: List[Tuple[str, List[Optional[Tuple[float, float, int]]]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def style_axes(ax, title: str, legend: bool) -> None:
    """The look every curve shares: title, iteration axis from 0 in whole numbers, light grid.

    Args:
        ax: The matplotlib axes drawn on.
        title: The chart's title.
        legend: Whether to show the runs' legend.
    """
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('iteration', fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


def _training_keys(runs: Sequence[WorkDir]) -> List[str]:
    keys = {key for run in runs for key in run.train if key not in OPTIMISATION_KEYS}
    return sorted(keys, key=lambda k: (k != 'loss', 'loss' not in k, k))


def _plot_keys(runs: Sequence[WorkDir], keys: Sequence[str], source: str, name: str, caption: str,
               markers: bool = False) -> Picture:
    rows = math.ceil(len(keys) / COLUMNS)
    fig = new_figure(4.0 * min(COLUMNS, len(keys)), 2.8 * rows)
    axes = fig.subplots(rows, min(COLUMNS, len(keys)), squeeze=False)
    for index, key in enumerate(keys):
        ax = axes[index // COLUMNS][index % COLUMNS]
        for colour, run in zip(COLOURS * 4, runs):
            points = getattr(run, source).get(key)
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, color=colour, label=run.label, marker='o' if markers else None,
                        markersize=3, linewidth=1.2)
        style_axes(ax, key, legend=index == 0 and len(runs) > 1)
    for index in range(len(keys), rows * min(COLUMNS, len(keys))):
        axes[index // COLUMNS][index % COLUMNS].axis('off')
    grid_margins(fig)
    return render(fig, name, caption, tight=False)


def _declared(run: WorkDir, notes: List[str]) -> Optional[List[Tuple[int, float]]]:
    if run.cfg is None or not run.train.get('lr'):
        return None
    try:
        schedule = declared_lr(run.cfg, run.last_iteration or 0, run.epoch_length)
    except Exception as error:  # noqa: BLE001 - any scheduler the config names may refuse: say so, draw the rest
        notes.append(f'{run.label}: the declared lr schedule is not drawn ({type(error).__name__}: '
                     f'{str(error).splitlines()[0] if str(error) else ""})')
        return None
    # mmengine logs base_lr (the optimizer's lr under the schedule) beside lr (the first parameter group's)
    # when the optimizer constructor scales groups; base_lr is what the declared schedule predicts.
    logged = 'base_lr' if run.train.get('base_lr') else 'lr'
    ratios = ratio_range(run.train[logged], schedule)
    if ratios is not None:
        low, high = ratios
        verdict = ('the schedule was followed' if high - low <= 1e-3 * max(abs(high), 1e-12)
                   else 'it departs from the declared schedule')
        scaled = (' (a constant below 1 is the first parameter group\'s lr_scale under layer-wise decay)'
                  if logged == 'lr' else '')
        notes.append(f'{run.label}: logged {logged} / declared lr from {low:.4g} to {high:.4g}: {verdict}{scaled}')
    if (run.cfg.get('auto_scale_lr') or {}).get('enable'):
        notes.append(f'{run.label}: auto_scale_lr is enabled: the lr was scaled by the real batch size over '
                     f'auto_scale_lr.base_batch_size')
    return schedule


def _optimisation_figure(runs: Sequence[WorkDir], group: str, notes: List[str]) -> Optional[Picture]:
    panels = [('lr', 'lr (solid: logged, dash-dot: base_lr, dashed: the config\'s)')]
    if any(run.train.get('grad_norm') for run in runs):
        panels.append(('grad_norm', 'gradient norm (before clipping)'))
    if any(run.train.get('time') for run in runs):
        panels.append(('time', 'seconds per iteration (solid: total, dotted: data)'))
    if not any(run.train.get(key) for run in runs for key, _ in panels):
        return None
    fig = new_figure(4.4 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels):
        for colour, run in zip(COLOURS * 4, runs):
            points = run.train.get(key)
            if points:
                ax.plot(*zip(*points), color=colour, label=run.label, linewidth=1.2)
            if key == 'lr' and run.train.get('base_lr'):
                ax.plot(*zip(*run.train['base_lr']), color=colour, linestyle='-.', linewidth=1.0)
            if key == 'lr':
                schedule = _declared(run, notes)
                if schedule:
                    ax.plot(*zip(*schedule), color=colour, linestyle='--', linewidth=1.0)
            if key == 'time' and run.train.get('data_time'):
                ax.plot(*zip(*run.train['data_time']), color=colour, linestyle=':', linewidth=1.0)
        if key == 'lr' and any(v > 0 for run in runs for _, v in run.train.get('lr', [])):
            ax.set_yscale('log')
        style_axes(ax, title, legend=len(runs) > 1)
    return render(fig, f'{group}_optimisation.png',
                  'The learning rate as logged (lr: the first parameter group\'s, scaled under layer-wise decay; '
                  'base_lr: the optimizer\'s) beside the schedule the config declares; the gradient norm and the '
                  'time per iteration.')


def metric_table(runs: Sequence[WorkDir]) -> List[Tuple[str, List[Optional[Tuple[float, float, int]]]]]:
    """Per validation metric: for each run its last value, its best value and the iteration of the best."""
    keys = sorted({key for run in runs for key in run.val})
    rows = []
    for key in keys:
        cells = []
        for run in runs:
            points = run.val.get(key)
            if points:
                best_step, best = max(points, key=lambda p: (p[1], -p[0]))
                cells.append((points[-1][1], best, best_step))
            else:
                cells.append(None)
        rows.append((key, cells))
    return rows


def curves_section(runs: Sequence[WorkDir], group: str) -> CurvesSection:
    """Pictures and tables of the curves of ``runs`` (one task); ``group`` prefixes the file names."""
    section = CurvesSection()
    keys = _training_keys(runs)
    if keys:
        section.pictures.append(_plot_keys(
            runs, keys, 'train', f'{group}_losses.png',
            'Training losses and accuracies as logged (mmengine\'s moving average over the logging window).'))
    optimisation = _optimisation_figure(runs, group, section.notes)
    if optimisation is not None:
        section.pictures.append(optimisation)
    val_keys = sorted({key for run in runs for key in run.val})
    drawn = [key for key in val_keys if not key.endswith(SIZE_SUFFIXES)] or val_keys
    if drawn:
        caption = 'Validation metrics at each validation' + (
            ' (the APs by object size are in the table below).' if len(drawn) < len(val_keys) else '.')
        section.pictures.append(_plot_keys(runs, drawn, 'val', f'{group}_validation.png', caption, markers=True))
    section.metrics = metric_table(runs)
    return section
