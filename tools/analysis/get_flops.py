"""``convnext-dense flops`` as a script (run from a clone): ``python tools/analysis/get_flops.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['flops', *sys.argv[1:]]))
