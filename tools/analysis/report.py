"""``convnext-dense report`` as a script (run from a clone): ``python tools/analysis/report.py --help``."""
import sys

from convnext_dense.cli.report import main

if __name__ == '__main__':
    sys.exit(main())
