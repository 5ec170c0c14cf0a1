"""`python -m aisle ...` (and `torchrun -m aisle train ...`) run the CLI."""

from aisle.cli import main

main()
