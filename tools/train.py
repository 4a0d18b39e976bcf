"""``convnext-dense train`` as a script (run from a clone): ``python tools/train.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['train', *sys.argv[1:]]))
