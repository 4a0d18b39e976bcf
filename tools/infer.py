"""``convnext-dense infer`` as a script (run from a clone): ``python tools/infer.py --help``."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['infer', *sys.argv[1:]]))
