"""The segmentation part of the page: per-class IoU and accuracy, the normalised pixel confusion matrix with
the top confusions, and the worst and best images painted."""
from typing import List, Sequence, Tuple

import numpy as np

from convnext_dense.report import segmentation
from convnext_dense.report.figures import confusion_heatmap, grouped_bars, row_fractions
from convnext_dense.report.html import Details, Note, Section, Table
from convnext_dense.report.painting import build_visualizer, paint_segmentation, painted_picture, read_rgb
from convnext_dense.report.results import ResultsSource



def _percent(value: float) -> str:
    return '-' if not np.isfinite(value) else f'{100 * value:.2f}'


def _summary(confusion: np.ndarray, logged) -> Table:
    iou, acc = segmentation.class_scores(confusion)
    num_classes = confusion.shape[0] - 1
    labelled = confusion[:num_classes].sum()
    overall = {'mIoU': np.nanmean(iou) if np.isfinite(iou).any() else np.nan,
               'mAcc': np.nanmean(acc) if np.isfinite(acc).any() else np.nan,
               'aAcc': np.trace(confusion[:num_classes, :num_classes]) / labelled if labelled else np.nan}
    rows = [[name, _percent(value), '-' if logged is None or name not in logged else f'{logged[name]:.2f}']
            for name, value in overall.items()]
    return Table(['metric (%)', 'from the predictions', 'printed by the test'], rows)


def _paint(data, cfg, ranked: Sequence[Tuple[segmentation.SegmentationPair, float]], key: str, tag: str,
           notes: List[str]) -> List:
    visualizer = build_visualizer(cfg, 'SegLocalVisualizer', dict(classes=data.classes, palette=data.palette))
    blocks = []
    for pair, score in ranked:
        try:
            image = read_rgb(pair.image)
        except Exception as error:  # noqa: BLE001 - a missing picture costs one example, not the page
            notes.append(f'{pair.image}: cannot be read ({error}): not painted')
            continue
        painted = paint_segmentation(visualizer, image, segmentation.read_ground_truth(data, pair.label_map),
                                     segmentation.read_prediction(data, pair.prediction))
        blocks.append(painted_picture(painted, f'{key}_{tag}_{pair.name}.png',
                                         f'{pair.image.name}: mIoU {score:.2f}'))
    return blocks


def segmentation_sections(source: ResultsSource, key: str, title: str, num_images: int) -> List[Section]:
    """The sections of one segmentor's results (``key`` prefixes the picture names)."""
    data = segmentation.load_segmentation_set(source)
    confusion, scores = segmentation.evaluate(data)
    num_classes = len(data.classes)
    intro = Section(title)
    intro.blocks.append(f'Label maps {source.path} for {len(data.pairs)} images, read with {source.config_origin}'
                        + (f'; checkpoint {source.checkpoint}' if source.checkpoint else '') + '.')
    if data.unmatched:
        intro.blocks.append(Note(f'{len(data.unmatched)} label maps belong to no image of the test dataset and are '
                                 f'left out (e.g. {data.unmatched[:3]}).'))
    intro.blocks.append(_summary(confusion, source.metrics))

    per_class = Section('Per-class IoU and accuracy', level=3)
    iou, acc = segmentation.class_scores(confusion)
    pixels = confusion[:num_classes].sum(axis=1)
    share = pixels / max(1, pixels.sum())
    per_class.blocks.append(Table(
        ['class', 'IoU (%)', 'Acc (%)', 'share of the labelled pixels (%)'],
        [[name, _percent(iou[c]), _percent(acc[c]), f'{100 * share[c]:.2f}'] for c, name in enumerate(data.classes)],
        'As mmseg\'s IoUMetric: IoU = intersection / union, Acc = intersection / ground-truth pixels, over all '
        'images; "-" where a class is in neither.'))
    per_class.blocks.append(grouped_bars(f'{key}_class_iou.png', 'IoU and accuracy per class.', 'per-class results',
                                         list(data.classes), {'IoU': iou, 'Acc': acc}, 'fraction'))

    confusions = Section('Pixel confusion', level=3)
    matrix = confusion[:num_classes, :num_classes]
    confusions.blocks.append(confusion_heatmap(
        f'{key}_confusion.png', 'Pixel confusion matrix, each row normalised by the ground-truth pixels of its '
        'class (rows: ground truth, columns: prediction).', 'pixel confusion', row_fractions(matrix), None,
        data.classes, data.classes, 'predicted', 'ground truth'))
    top = segmentation.top_confusions(confusion, data.classes)
    confusions.blocks.append(Table(['ground truth', 'predicted as', 'share of its pixels (%)', 'pixels'],
                                   [[t, p, f'{100 * f:.2f}', str(n)] for t, p, f, n in top],
                                   'The largest confusions.') if top else 'No pixel is confused.')

    examples = Section('Worst and best images', level=3)
    examples.blocks.append('Score of an image: its mIoU over the classes in its ground truth or prediction. Painted '
                           'as test --show-dir paints: ground truth | prediction.')
    ranked = sorted(scores, key=lambda item: (item[1], item[0].name))
    count = min(num_images, len(ranked) // 2)
    notes: List[str] = []
    if count:
        examples.blocks.append(f'The {count} worst:')
        examples.blocks.extend(_paint(data, source.cfg, ranked[:count], key, 'worst', notes))
        examples.blocks.append(f'The {count} best:')
        examples.blocks.extend(_paint(data, source.cfg, ranked[::-1][:count], key, 'best', notes))
    elif num_images > 0:
        notes.append('fewer than two images: no worst / best examples')
    examples.blocks.extend(Note(n) for n in notes)
    examples.blocks.append(Details(f'mIoU of all {len(ranked)} images', Table(
        ['image', 'mIoU'], [[pair.image.name, f'{score:.3f}'] for pair, score in ranked])))
    return [intro, per_class, confusions, examples]
