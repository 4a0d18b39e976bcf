"""``convnext-dense config-path [NAME]``: where a shipped config lies, so that a config of your own can inherit it.

    convnext-dense config-path det/mask_rcnn_convnext_t_3x   # the absolute path, for your _base_
    convnext-dense config-path                              # the folder holding all configs
    convnext-dense config-path --list                       # every config name
"""
import argparse
from typing import Optional, Sequence

from convnext_dense.config import config_names, config_path, config_root


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('name', nargs='?', help='config name (e.g. det/mask_rcnn_convnext_t_3x) or path')
    parser.add_argument('--list', action='store_true', help='print the name of every shipped config')
    args = parser.parse_args(argv)
    if args.list:
        print('\n'.join(config_names()))
    else:
        print(config_path(args.name) if args.name else config_root())
    return 0
