"""`python -m obliviate`: the `obliviate` command."""

from obliviate.cli import main

main()
