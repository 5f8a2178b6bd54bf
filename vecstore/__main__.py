"""``python -m vecstore`` runs the command-line interface."""

from .cli import main

main()
