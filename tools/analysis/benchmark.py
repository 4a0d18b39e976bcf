"""Speed and memory benchmarks: a shim over ``convnext_dense.benchmark`` (``--help`` lists the modes)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without an install

from convnext_dense.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
