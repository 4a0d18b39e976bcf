"""Command-line subcommands: one module per subcommand, each with ``main(argv=None)``."""
