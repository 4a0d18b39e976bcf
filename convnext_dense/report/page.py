"""``write_report``: reads the work dirs and results, draws every part that can be drawn and writes the page.

A part that cannot be drawn (no validation yet, results of another dataset, an unreadable image) becomes a
note in the page and a warning, and the rest is drawn; only work dirs that are not work dirs stop the report.
All pictures are made in memory first and the page is written last, each file atomically: a failed report
leaves no page behind and never a half-written file.
"""
import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from convnext_dense.config import task_of
from convnext_dense.errors import ReportError
from convnext_dense.io import atomic_write
from convnext_dense.report.curves import curves_section
from convnext_dense.report.facts import run_facts, summarize_facts
from convnext_dense.report.html import FIGURES_DIR, Details, Note, Section, Table, pictures_of, render_page
from convnext_dense.report.painting import score_threshold
from convnext_dense.report.results import ResultsSource, find_results, open_results
from convnext_dense.report.workdir import WorkDir, read_work_dir, unique_labels

TASK_TITLES = {'det': 'detection', 'seg': 'segmentation', None: 'unknown task'}
PAGE_NAME = 'index.html'


@dataclass
class Report:
    """A written report: the page, its pictures and what could not be drawn."""
    page: Path
    pictures: List[Path] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def _facts_section(runs: Sequence[WorkDir], sources: Dict[str, ResultsSource]) -> Section:
    section = Section('Runs')
    recorded = {label: source.config_file for label, source in sources.items()}
    facts = [run_facts(run, recorded.get(run.label)) for run in runs]
    rows = [[title] + values for title, values in summarize_facts(facts)]
    section.blocks.append(Table(['', *[run.label for run in runs]], rows))
    for run, fact in zip(runs, facts):
        config = Path(fact.source_config).name
        if fact.differences:
            section.blocks.append(Details(
                f'{run.label}: {len(fact.differences)} settings of {config} differ from its _base_ '
                f'({fact.base_config}, merged)',
                Table(['key', 'inherited', config], [list(row) for row in fact.differences])))
        if fact.overrides:
            section.blocks.append(Details(
                f'{run.label}: {len(fact.overrides)} settings changed for this run (--cfg-options and other '
                f'command-line options)', Table(['key', config, 'this run'], [list(row) for row in fact.overrides])))
        if fact.source_config == 'not found':
            section.blocks.append(Note(f'{run.label}: the config file the run started from was not found (neither '
                                       f'a shipped config of that name nor recorded by test --out): its differences '
                                       f'from the config it inherits are not shown.'))
    return section


def _delta_table(section, runs: Sequence[WorkDir]) -> Optional[Table]:
    if not section.metrics:
        return None
    header = ['metric'] + [f'{run.label}: last (best @ iteration)' for run in runs]
    header += [f'{run.label} - {runs[0].label}' for run in runs[1:]]
    rows = []
    for metric, cells in section.metrics:
        row = [metric] + ['-' if c is None else f'{c[0]:.4g} ({c[1]:.4g} @ {c[2]})' for c in cells]
        for cell in cells[1:]:
            row.append('-' if cell is None or cells[0] is None else f'{cell[0] - cells[0][0]:+.4g}')
        rows.append(row)
    return Table(header, rows, 'Validation metrics at the last validation of each run, the best value and when.')


def _curves_sections(runs: Sequence[WorkDir]) -> List[Section]:
    groups: Dict[Optional[str], List[WorkDir]] = {}
    for run in runs:
        groups.setdefault(task_of(run.cfg) if run.cfg is not None else None, []).append(run)
    sections = []
    for task, members in groups.items():
        title = 'Training curves' + (f' ({TASK_TITLES[task]})' if len(groups) > 1 else '')
        section = Section(title)
        if len(members) > 1:
            section.blocks.append('Runs overlaid: ' + ', '.join(run.label for run in members) + '.')
        curves = curves_section(members, f'curves_{task or "runs"}')
        section.blocks.extend(curves.pictures)
        table = _delta_table(curves, members)
        if table is not None:
            section.blocks.append(table)
        section.blocks.extend(Note(note) for note in curves.notes)
        if not curves.pictures:
            section.blocks.append(Note('Nothing was logged to draw.'))
        sections.append(section)
    return sections


def _analysis_sections(run: WorkDir, source: ResultsSource, score_thr: Optional[float],
                       num_images: int) -> List[Section]:
    key = re.sub(r'[^A-Za-z0-9_-]+', '_', run.label)
    if source.task == 'seg':
        from convnext_dense.report.seg_section import segmentation_sections
        return segmentation_sections(source, key, f'Segmentation results: {run.label}', num_images)
    from convnext_dense.report.det_section import detection_sections
    threshold = score_threshold(source.cfg) if score_thr is None else score_thr
    return detection_sections(source, key, f'Detection results: {run.label}', threshold, num_images)


def write_report(work_dirs: Sequence[Union[str, Path]], results: Sequence[Union[str, Path]] = (),
                 out: Optional[Union[str, Path]] = None, score_thr: Optional[float] = None,
                 num_images: int = 4) -> Report:
    """Writes the report of ``work_dirs`` (and their results) to ``out/index.html``.

    Args:
        work_dirs: Training work dirs; several are overlaid (runs of the same task share each chart).
        results: ``test --out`` results, the i-th for the i-th work dir; a work dir without one uses the newest
            results found inside it (``*.meta.json`` notes), if any.
        out: Folder of the page and its ``figures/``; default ``<first work dir>/report``.
        score_thr: Score threshold of the detection confusion, per-image score and painting; default the
            config's visualization hook's.
        num_images: How many worst and how many best images to paint per results.

    Raises:
        ReportError: A work dir is not one, more results than work dirs are given, or the page cannot be
            written.
    """
    if not work_dirs:
        raise ReportError('report: pass at least one work dir')
    if num_images < 0:
        raise ReportError(f'--num-images {num_images}: pass 0 or more (how many worst and best images to paint)')
    if score_thr is not None and not 0.0 <= score_thr <= 1.0:
        raise ReportError(f'--score-thr {score_thr}: pass a detection score between 0 and 1')
    if len(results) > len(work_dirs):
        raise ReportError(f'report: {len(results)} --results for {len(work_dirs)} work dirs; give at most one '
                          f'per work dir, in the same order')
    paths = [Path(p) for p in work_dirs]
    runs = [read_work_dir(path, label) for path, label in zip(paths, unique_labels(paths))]
    out = Path(out) if out is not None else paths[0] / 'report'
    warnings = [note for run in runs for note in run.notes]
    sources: Dict[str, ResultsSource] = {}
    analysis: List[Section] = []
    for index, run in enumerate(runs):
        found = results[index] if index < len(results) else find_results(run.path)
        if found is None:
            continue
        try:
            sources[run.label] = source = open_results(found, run.cfg, run.path)
            analysis += _analysis_sections(run, source, score_thr, num_images)
        except ReportError as error:
            warnings.append(str(error))
            analysis.append(Section(f'Results: {run.label}', [Note(str(error))]))
    if not analysis:
        warnings.append('no results to analyse: run convnext-dense test CONFIG CHECKPOINT --out results.pkl (a '
                        'folder for a segmentor) and pass it with --results')
    title = 'Training report: ' + ', '.join(run.label for run in runs)
    header = Section('About this report', [
        f'Written {datetime.datetime.now().isoformat(timespec="seconds")} by convnext-dense report from '
        + ', '.join(str(p.resolve()) for p in paths) + '.'])
    header.blocks.extend(Note(w) for w in warnings)
    sections = [header, _facts_section(runs, sources), *_curves_sections(runs), *analysis]
    return write_page(out, title, sections, warnings)


def write_page(out: Path, title: str, sections: Sequence[Section], warnings: List[str]) -> Report:
    """Writes ``out/figures/*.png`` and then ``out/index.html``, each file atomically.

    Args:
        out: The report's folder (created if missing).
        title: The page's title.
        sections: Its parts, in order.
        warnings: What could not be drawn (kept in the returned :class:`Report`).
    """
    page_text = render_page(title, sections)
    pictures = pictures_of(sections)
    names = [picture.name for picture in pictures]
    shared = sorted({name for name in names if names.count(name) > 1})
    if shared:  # a bug, not an input: two parts of the page chose one name
        raise RuntimeError(f'report: two pictures would share the file name {shared[0]}')
    try:
        written = []
        for picture in pictures:
            path = out / FIGURES_DIR / picture.name
            atomic_write(picture.data, path)
            written.append(path)
        atomic_write(page_text, out / PAGE_NAME)
    except OSError as error:
        raise ReportError(f'report: cannot write to {out} ({error.strerror or error}); pass a writable --out '
                          f'folder') from error
    return Report(out / PAGE_NAME, written, warnings)
