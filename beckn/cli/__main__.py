"""`python -m beckn.cli`: the `lakou` command, for when the console script is not on PATH."""

from beckn.cli import main

main()
