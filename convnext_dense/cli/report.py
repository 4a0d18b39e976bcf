"""One page that shows how a model trained and where it fails, from its work dir(s) and test results:

    convnext-dense report work_dirs/mask_rcnn_t                         # curves and the run's facts
    convnext-dense test CONFIG CKPT --work-dir work_dirs/mask_rcnn_t/test --out work_dirs/mask_rcnn_t/test/results.pkl
    convnext-dense report work_dirs/mask_rcnn_t                         # + per-class AP, errors, confusion, images
    convnext-dense report work_dirs/lr_1e-4 work_dirs/lr_2e-4 --out compare   # two runs overlaid

The page (``OUT/index.html``, pictures in ``OUT/figures/``) opens from disk. ``--results`` takes what
``test --out`` wrote (a detector's ``.pkl``, a segmentor's folder of label maps), one per work dir in order;
without it each work dir's newest results inside it are used. What cannot be drawn is said in the page and
as a ``warning:`` line; the rest is drawn.
"""
import argparse
import sys
from typing import Optional, Sequence

from convnext_dense.report.page import write_report


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR', help='work dir(s) of train runs')
    parser.add_argument('--results', nargs='+', default=(), metavar='RESULTS',
                        help='test --out results (a .pkl of detections or a folder of label maps), one per work dir '
                             'in order (default: the newest found inside each work dir)')
    parser.add_argument('--out', help='folder of the page and its figures/ (default: WORK_DIR/report of the first)')
    parser.add_argument('--score-thr', type=float,
                        help='detections: score threshold of the confusion matrix, per-image score and painting '
                             '(default: the config\'s visualization hook score_thr)')
    parser.add_argument('--num-images', type=int, default=4, help='how many worst and best images to paint (4)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    report = write_report(args.work_dirs, args.results, args.out, args.score_thr, args.num_images)
    for warning in report.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    print(f'report: {report.page}')
    return 0
