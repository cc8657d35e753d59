"""`python -m train.cli ...` runs the `stance` command."""

from train.cli import main

main()
