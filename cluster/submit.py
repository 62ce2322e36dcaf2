"""The submit helper: `python cluster/submit.py --address http://HEAD:8265 -- train ...` = `tmtvis submit ...`.

Submits a tmtvis command through the Ray Jobs SDK with this project as working_dir, follows its logs and
exits with the job's outcome (see workflows/submit.py).
"""
import sys

from workflows.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
