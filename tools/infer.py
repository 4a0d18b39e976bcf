"""``convnext-dense infer`` as a script (run from a clone): ``python tools/infer.py --help``."""
import sys

from convnext_dense.cli.infer import main

if __name__ == '__main__':
    sys.exit(main())
