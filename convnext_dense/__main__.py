"""``python -m convnext_dense SUBCOMMAND ...``: the same as the ``convnext-dense`` command."""
import sys

from convnext_dense.cli.main import main

sys.exit(main())
