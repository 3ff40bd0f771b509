"""`python -m connectors.cli`, the same as the `connector` command."""

from connectors.cli import console

console()
