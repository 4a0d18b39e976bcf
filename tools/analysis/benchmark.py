"""Speed and memory benchmarks: a shim over ``convnext_dense.benchmark`` (``--help`` lists the modes)."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['benchmark', *sys.argv[1:]]))
