"""``convnext-dense make-shapes`` as a script (run from a clone): ``python tools/make_shapes.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['make-shapes', *sys.argv[1:]]))
