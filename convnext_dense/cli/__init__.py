"""The command line: ``convnext-dense SUBCOMMAND ...`` (see :mod:`convnext_dense.cli.main`).

One module per subcommand, each with ``main(argv=None) -> int``; ``tools/*.py`` are shims over them.
"""
