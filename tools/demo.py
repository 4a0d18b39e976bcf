"""``convnext-dense demo`` as a script (run from a clone): ``python tools/demo.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['demo', *sys.argv[1:]]))
