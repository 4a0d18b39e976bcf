"""The command line: ``convnext-dense SUBCOMMAND ...`` (see :mod:`convnext_dense.cli.main`).

One module per subcommand, each with ``main(argv=None) -> int`` that raises the package's errors;
:mod:`convnext_dense.cli.main` runs them inside the one error boundary (:mod:`convnext_dense.cli.errors`), and
``tools/*.py`` are shims over it.
"""
