"""The command line, `python -m charrnn`: its parser and argument types, the console helpers, and one module per
group of commands. `main` is the entry point."""

from charrnn.cli.commands import main

__all__ = ["main"]
