"""``convnext-dense test`` as a script (run from a clone): ``python tools/test.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['test', *sys.argv[1:]]))
