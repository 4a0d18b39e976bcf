"""``python -m convnext_dense.benchmark MODE ...``: the benchmark, also the entry of its child processes."""
import sys

from convnext_dense.benchmark import main

sys.exit(main())
