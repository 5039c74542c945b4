"""`python -m benchmarks`: the same load tester as `xscore bench`."""

from __future__ import annotations

import sys

from xscore.service.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
