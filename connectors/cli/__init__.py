"""The `connector` command: argument parsing, exit codes and one module per subcommand."""

from connectors.cli.main import EXIT_CONFIG, EXIT_FATAL, console, main, parser

__all__ = ["EXIT_CONFIG", "EXIT_FATAL", "console", "main", "parser"]
