"""Params and FLOPs of a detector or segmentor config, in the paper's convention, next to the paper's value.

FLOPs are multiply-adds (fvcore / mmengine convention). Detectors are counted at 1280x800 with 1000
proposals through every box head and the first 100 through every mask head (mmdet 2.x's dummy forward);
segmentors with a whole-image forward at 2048x512 (2560x640 for the 640 crops).

    convnext-dense flops det/cascade_convnext_t_3x
    convnext-dense flops configs/seg/upernet_convnext_t_512_160k.py --shape 512 2048 --json
"""
import argparse
import json

from mmengine.config import DictAction

from convnext_dense.analysis.det_flops import detector_complexity
from convnext_dense.analysis.seg_flops import segmentor_complexity
from convnext_dense.config import load_config, task_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file path or name (e.g. det/mask_rcnn_convnext_t_3x)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: the paper\'s size for this config)')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='key=value overrides of the config')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shape = tuple(args.shape) if args.shape else None
    complexity = segmentor_complexity if task_of(cfg) == 'seg' else detector_complexity
    result = complexity(cfg, shape)  # params, flops, backbone_params, backbone_flops, shape, paper_* or None
    if args.json:
        print(json.dumps(result))
        return 0
    height, width = result['shape']
    print(f'config        {cfg.filename}')
    print(f'input shape   {height}x{width} (HxW)')
    rows = [('model', result['params'], result['flops'], result.get('paper_params'), result.get('paper_flops')),
            ('backbone', result['backbone_params'], result['backbone_flops'], None, None)]
    print(f'{"part":<10}{"params":>12}{"FLOPs":>12}{"paper params":>15}{"paper FLOPs":>14}')
    for name, params, flops, paper_params, paper_flops in rows:
        paper_p = f'{paper_params / 1e6:.0f}M' if paper_params else '-'
        paper_f = f'{paper_flops / 1e9:.0f}G' if paper_flops else '-'
        print(f'{name:<10}{params / 1e6:>11.1f}M{flops / 1e9:>11.1f}G{paper_p:>15}{paper_f:>14}')
    return 0

