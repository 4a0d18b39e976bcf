"""``convnext-dense test`` as a script (run from a clone): ``python tools/test.py --help``."""
import sys

from convnext_dense.cli.test import main

if __name__ == '__main__':
    sys.exit(main())
