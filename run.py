"""TARS actors: `python run.py` serves calls; `python run.py --help` lists the other commands."""

from __future__ import annotations

import sys

from tars_actors.ops.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
