"""The detection part of the page: per-class box and mask AP, precision-recall curves, the COCO error
breakdown, class confusion matrices, and the worst and best images painted."""
from typing import Dict, List, Optional, Sequence

import numpy as np

from convnext_dense.report import detection
from convnext_dense.report.error_analysis import (ERROR_MEANINGS, ERROR_TYPES, error_breakdown, error_rows,
                                                  supercategory_note)
from convnext_dense.report.figures import (COLOURS, Picture, confusion_heatmap, grouped_bars, new_figure,
                                           render, row_fractions)
from convnext_dense.report.html import Details, Note, Section, Table
from convnext_dense.report.painting import build_visualizer, paint_detection, painted_picture, read_rgb
from convnext_dense.report.results import ResultsSource

IOU_NAMES = {'bbox': 'box', 'segm': 'mask'}
#: Fill colours of the error breakdown, as the COCO analysis draws it.
ERROR_COLOURS = ('#ffffff', '#c6c6c6', '#4f82bd', '#bf4f4c', '#5de660', '#8064a2', '#ff9900')


def _fmt(value: float, digits: int = 3) -> str:
    return '-' if value is None or not np.isfinite(value) else f'{value:.{digits}f}'


def _pr_figure(data, evaluator, iou_type: str, key: str) -> Picture:
    fig = new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    for ax, iou in zip(axes, (0.5, 0.75)):
        recall, curves = detection.pr_curves(data, evaluator, iou)
        for label, curve in enumerate(curves):
            if np.isfinite(curve).all():
                ax.plot(recall, curve, color=COLOURS[label % len(COLOURS)], linewidth=1.0, label=data.classes[label])
        if np.isfinite(curves).any():
            ax.plot(recall, np.nanmean(curves, axis=0), color='black', linewidth=2.0, label='mean')
        ax.set(xlabel='recall', ylabel='precision', xlim=(0, 1), ylim=(0, 1.02),
               title=f'{IOU_NAMES[iou_type]} precision-recall at IoU {iou}')
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc='lower left', ncol=2 if len(data.classes) > 10 else 1)
    return render(fig, f'{key}_{iou_type}_pr.png',
                  f'{IOU_NAMES[iou_type].capitalize()} precision-recall curves per class at IoU 0.5 and 0.75 '
                  f'(maxDets 1000, all areas), and their mean.')


def _breakdown_figure(breakdown, iou_type: str, key: str) -> Picture:
    fig = new_figure(6.0, 4.4)
    ax = fig.subplots()
    curves = breakdown.mean_curves()
    aps = breakdown.ap()
    lower = np.zeros_like(breakdown.recall)
    for index, name in enumerate(ERROR_TYPES):
        ax.plot(breakdown.recall, curves[index], color='black', linewidth=0.5)
        ax.fill_between(breakdown.recall, lower, curves[index], color=ERROR_COLOURS[index],
                        label=f'[{aps[index]:.3f}] {name}')
        lower = curves[index]
    ax.set(xlabel='recall', ylabel='precision', xlim=(0, 1), ylim=(0, 1),
           title=f'{IOU_NAMES[iou_type]} error breakdown, all classes')
    ax.legend(fontsize=8, loc='lower left')
    return render(fig, f'{key}_{iou_type}_errors.png',
                  f'COCO error breakdown of the {IOU_NAMES[iou_type]}es: each area is the precision one more kind '
                  f'of error costs; the bracket is the AP of the curve above it.')


def _ap_tables(data, tables: Dict[str, Dict[str, np.ndarray]]) -> Table:
    gt_counts = [len(data.coco.getAnnIds(catIds=[c], iscrowd=False)) for c in data.cat_ids]
    header = ['class', 'objects']
    for iou_type in tables:
        header += [f'{IOU_NAMES[iou_type]} {name}' for name in tables[iou_type]]
    rows = []
    for label, name in enumerate(data.classes):
        row = [name, str(gt_counts[label])]
        for table in tables.values():
            row += [_fmt(values[label]) for values in table.values()]
        rows.append(row)
    return Table(header, rows, 'Per-class AP as mmdet\'s CocoMetric(classwise=True) computes it.')


def _summary_table(overall: Dict[str, Dict[str, float]], logged: Optional[Dict[str, float]]) -> Table:
    rows = []
    for iou_type, values in overall.items():
        for name, value in values.items():
            key = f'coco/{iou_type}_{name}'
            rows.append([key, _fmt(value), _fmt((logged or {}).get(key, float('nan')))])
    return Table(['metric', 'from the predictions', 'printed by the test'], rows)


def _confusion_blocks(data, matches, iou_type: str, key: str, score_thr: float) -> List:
    matrix = detection.confusion_matrix(matches, len(data.classes))
    labels = list(data.classes)
    picture = confusion_heatmap(
        f'{key}_{iou_type}_confusion.png',
        f'{IOU_NAMES[iou_type].capitalize()} confusion matrix (score >= {score_thr}, IoU >= 0.5): rows the ground '
        f'truth, columns the detection; last row: detections on background, last column: missed objects.',
        f'{IOU_NAMES[iou_type]} confusion', row_fractions(matrix), matrix, labels + ['background'],
        labels + ['missed'], 'detected as', 'ground truth')
    return [picture]


def _paint(data, cfg, images: Sequence[dict], scores: Dict[int, float], key: str, tag: str,
           score_thr: float, notes: List[str]) -> List:
    from pycocotools import mask as mask_utils

    visualizer = build_visualizer(cfg, 'DetLocalVisualizer',
                                  dict(classes=data.classes, palette=data.palette))
    label_of = {cat_id: label for label, cat_id in enumerate(data.cat_ids)}
    blocks = []
    for image in images:
        if not image.get('img_path'):
            notes.append(f'image {image["img_id"]}: the results hold no img_path: not painted')
            continue
        try:
            rgb = read_rgb(image['img_path'])
        except Exception as error:  # noqa: BLE001 - a missing picture costs one example, not the page
            notes.append(f'{image["img_path"]}: cannot be read ({error}): not painted')
            continue
        anns = [a for a in data.coco.loadAnns(data.coco.getAnnIds(imgIds=[image['img_id']]))
                if not a.get('iscrowd', 0) and a['category_id'] in label_of]
        gt = dict(bboxes=[[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)],
                  labels=[label_of[a['category_id']] for a in anns])
        pred = dict(bboxes=image['bboxes'], scores=image['scores'], labels=image['labels'])
        if 'segm' in data.iou_types:
            gt['masks'] = [data.coco.annToMask(a) for a in anns]
            pred['masks'] = [mask_utils.decode(rle) for rle in image['masks']]
        painted = paint_detection(visualizer, rgb, gt, pred, score_thr)
        name = image['img_path'].replace('\\', '/').split('/')[-1]
        blocks.append(painted_picture(painted, f'{key}_{tag}_{image["img_id"]}.png',
                                         f'{name}: F1 {scores[image["img_id"]]:.2f}'))
    return blocks


def detection_sections(source: ResultsSource, key: str, title: str, score_thr: float,
                       num_images: int) -> List[Section]:
    """The sections of one detector's results (``key`` prefixes the picture names)."""
    data = detection.load_detection_set(source)
    intro = Section(title)
    total = len(data.coco.getImgIds())
    intro.blocks.append(f'Predictions {source.path} for {len(data.images)} of the {total} images of '
                        f'{data.ann_file}, read with {source.config_origin}'
                        + (f'; checkpoint {source.checkpoint}' if source.checkpoint else '') + '.')
    if len(data.images) < total:
        intro.blocks.append(Note(f'{total - len(data.images)} images of {data.ann_file} have no prediction; '
                                 f'they count as all missed, as in the test.'))
    sections = [intro]
    tables, overall, evaluators, predictions = {}, {}, {}, {}
    for iou_type in data.iou_types:
        predictions[iou_type] = detection.load_predictions(data, iou_type)
        if predictions[iou_type] is None:
            intro.blocks.append(Note('The results hold no detection at all: nothing to evaluate.'))
            return sections
        evaluators[iou_type] = detection.evaluate(data, predictions[iou_type], iou_type)
        tables[iou_type] = detection.per_class_ap(data, evaluators[iou_type])
        overall[iou_type] = detection.overall_ap(evaluators[iou_type])
    intro.blocks.append(_summary_table(overall, source.metrics))
    per_class = Section('Per-class AP', level=3)
    per_class.blocks.append(_ap_tables(data, tables))
    per_class.blocks.append(grouped_bars(
        f'{key}_class_ap.png', 'AP per class (IoU 0.50:0.95, all areas).', 'AP per class', list(data.classes),
        {f'{IOU_NAMES[t]} AP': tables[t]['AP'] for t in data.iou_types}, 'AP'))
    per_class.blocks.extend(_pr_figure(data, evaluators[t], t, key) for t in data.iou_types)
    errors = Section('Error breakdown (COCO analysis)', level=3)
    errors.blocks.append('Precision-recall with one more kind of error forgiven at each step (maxDets 100): '
                         + '; '.join(f'{name}: {meaning}' for name, meaning in ERROR_MEANINGS.items()) + '.')
    for iou_type in data.iou_types:
        breakdown = error_breakdown(data.coco, predictions[iou_type], iou_type, data.cat_ids)
        errors.blocks.append(_breakdown_figure(breakdown, iou_type, key))
        rows = [[name] + [_fmt(v) for v in values] for name, values in error_rows(breakdown, data.classes)]
        errors.blocks.append(Table(['class'] + list(ERROR_TYPES), rows,
                                   f'{IOU_NAMES[iou_type]}: AP of each curve; each column minus the one before is '
                                   f'what that kind of error costs.'))
    errors.blocks.append(supercategory_note(breakdown.supercategories))
    confusion = Section('Class confusion', level=3)
    confusion.blocks.append(
        f'Each object is matched to at most one detection scoring at least {score_thr} (the visualization hook\'s '
        f'threshold), at IoU >= 0.5: first detections of its own class, highest score first; then the detections '
        f'left, of any class (a confusion). Detections left over are false positives on background; objects '
        f'left over are missed.')
    matches = {t: [detection.match_image(data, image, t, score_thr) for image in data.images]
               for t in data.iou_types}
    for iou_type in data.iou_types:
        confusion.blocks.extend(_confusion_blocks(data, matches[iou_type], iou_type, key, score_thr))
    examples = Section('Worst and best images', level=3)
    score_type = data.iou_types[-1]
    scores = {image['img_id']: m.f1() for image, m in zip(data.images, matches[score_type])}
    ranked = sorted(data.images, key=lambda image: (scores[image['img_id']], image['img_id']))
    count = min(num_images, len(ranked) // 2)
    examples.blocks.append(
        f'Score of an image: F1 of its {IOU_NAMES[score_type]} detections scoring at least {score_thr} against its '
        f'objects (same class, IoU >= 0.5, one detection per object); 1.0 when it has neither. Painted as test '
        f'--show-dir paints: ground truth | prediction.')
    notes: List[str] = []
    if count:
        examples.blocks.append(f'The {count} worst:')
        examples.blocks.extend(_paint(data, source.cfg, ranked[:count], scores, key, 'worst', score_thr, notes))
        examples.blocks.append(f'The {count} best:')
        examples.blocks.extend(_paint(data, source.cfg, ranked[::-1][:count], scores, key, 'best', score_thr, notes))
    elif num_images > 0:
        notes.append('fewer than two images: no worst / best examples')
    examples.blocks.extend(Note(n) for n in notes)
    examples.blocks.append(Details(f'F1 of all {len(ranked)} images', Table(
        ['image', 'objects', 'F1'], [[str(i['img_path'] or i['img_id']).split('/')[-1],
                                      str(len(m.gt_labels)), _fmt(scores[i['img_id']], 2)]
                                     for i, m in sorted(zip(data.images, matches[score_type]),
                                                        key=lambda p: scores[p[0]['img_id']])])))
    return sections + [per_class, errors, confusion, examples]
