"""`python -m bench`: every figure, one table (see bench/run.py)."""

from bench.run import main

main()
