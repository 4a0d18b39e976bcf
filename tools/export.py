"""``convnext-dense export`` as a script (run from a clone): ``python tools/export.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['export', *sys.argv[1:]]))
