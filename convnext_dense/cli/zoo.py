"""``convnext-dense zoo``: every model of the zoo with its task, backbone, pre-training, params / FLOPs, published
results and the trained weights released for it (read from the metafiles, see ``convnext_dense/zoo.py``).

    convnext-dense zoo
    convnext-dense zoo --task seg
    convnext-dense zoo --json        # everything, URLs and each file's own results included
"""
import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

from convnext_dense import zoo

#: Short column labels of the metafiles' metric names.
METRIC_LABELS = {'box AP': 'box', 'mask AP': 'mask', 'mIoU': 'mIoU', 'mIoU (ms+flip)': 'ms+flip'}
COLUMNS = ('name', 'task', 'backbone', 'pre-training', 'params / FLOPs', 'published results', 'trained weights')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=zoo.TASKS, help='only COCO detection (det) or ADE20K segmentation (seg)')
    parser.add_argument('--json', action='store_true', help='print a JSON list with every field and URL')
    return parser.parse_args(argv)


def _backbone(architecture: Sequence[str]) -> str:
    return next((part for part in reversed(architecture) if part.startswith('ConvNeXt')), '-')


def entries(tasks: Sequence[str] = zoo.TASKS) -> List[Dict]:
    """One JSON-able dict per zoo model of ``tasks``, in metafile order."""
    listed = []
    for task in tasks:
        for stem, record in zoo.models(task).items():
            metrics = {key: record[key] for key in METRIC_LABELS if record.get(key) is not None}
            listed.append(dict(
                name=stem, task=task, config=record['config'], backbone=_backbone(record['architecture']),
                architecture=list(record['architecture']), pretraining=record['pretraining'],
                pretrained_weights=record['pretrained'], params=record['params'], flops=record['flops'],
                results=metrics,
                weights=[dict(url=w.url, released_by=w.released_by, source=w.source, written_by=w.written_by,
                              upstream_config=w.upstream_config, sha256=w.expected_sha256, results=w.metrics)
                         for w in record['weights']]))
    return listed


def _complexity(entry: Dict) -> str:
    if entry['params'] is None or entry['flops'] is None:
        return '-'
    return f'{entry["params"] / 1e6:.0f}M / {entry["flops"] / 1e9:.0f}G'


def _value(value: float) -> str:
    text = f'{value:.2f}'
    return text[:-1] if text.endswith('0') else text  # 46.7, 54.0, 46.11


def _results(metrics: Dict[str, float]) -> str:
    return ', '.join(f'{METRIC_LABELS[key]} {_value(value)}' for key, value in metrics.items()) or 'not published'


def _weights(weights: List[Dict]) -> str:
    return ', '.join(w['released_by'] for w in weights) if weights else 'no'


def table(listed: List[Dict]) -> str:
    """The models as an aligned text table with a header row."""
    rows = [COLUMNS] + [(e['name'], e['task'], e['backbone'], e['pretraining'] or '-', _complexity(e),
                         _results(e['results']), _weights(e['weights'])) for e in listed]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return '\n'.join(lines[:1] + ['  '.join('-' * width for width in widths)] + lines[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    listed = entries((args.task,) if args.task else zoo.TASKS)
    if args.json:
        print(json.dumps(listed, indent=1))
        return 0
    print(table(listed))
    released = sum(bool(e['weights']) for e in listed)
    print(f'\n{len(listed)} models, {released} with released trained weights (the first listed is the default); '
          f'URLs and each file\'s own results: convnext-dense zoo --json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
