"""Kept for the old command: the /sync workloads of the suite (initial
/sync in 200 rooms with lazy-loaded members; idle incremental /sync in 5,
100 and 1,000 rooms) on Myelin and Synapse.

    .venv/bin/python -m bench.sync    # = python -m bench --only sync --targets myelin,synapse
"""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["--only", "sync", "--targets", "myelin,synapse", *sys.argv[1:]]))
