"""The method study as a script: same as `tmtvis study` (see `python benchmarks/method_study.py --help`)."""
import sys

from workflows.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
