"""Kept for the old command: the messaging workloads of the suite (10 users
sending in one room; send -> another member's /sync) on Myelin and Synapse.

    .venv/bin/python -m bench.messaging    # = python -m bench --only send,send-sync --targets myelin,synapse
"""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["--only", "send,send-sync", "--targets", "myelin,synapse", *sys.argv[1:]]))
