"""Generates the synthetic shapes dataset (COCO instances + label maps) used by the demo and the tests.

Example::

    convnext-dense make-shapes --out data/shapes --seed 0

The same ``--seed`` and sizes give byte-identical files. Layout: ``images/{train,val}/*.png``,
``labels/{train,val}/*.png`` (0 = background, k + 1 = class k), ``annotations/instances_{train,val}.json``
and ``metainfo.json`` (class names, palettes).
"""
import argparse
import json
import time
from typing import Optional, Sequence

from convnext_dense.datasets.shapes import make_shapes


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='dataset root to write')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--num-train', type=int, default=400, help='training images (default 400)')
    parser.add_argument('--num-val', type=int, default=60, help='validation images (default 60)')
    parser.add_argument('--image-size', type=int, default=128, help='side of the square images (default 128)')
    parser.add_argument('--max-objects', type=int, default=6, help='most shapes per image (default 6)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start = time.time()
    summary = make_shapes(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                          image_size=args.image_size, max_objects=args.max_objects)
    print(json.dumps(summary, sort_keys=True))
    print(f'wrote {args.out} in {time.time() - start:.1f} s')
    return 0
