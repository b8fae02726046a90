"""Every personality runs on uvloop, and SIGTERM still stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from homeserver.cli import _run

ROOT = Path(__file__).resolve().parents[3]


def test_the_server_coroutine_runs_on_uvloop() -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    _run(main())
    assert seen and seen[0].startswith("uvloop"), seen


def test_sigterm_cancels_the_server_coroutine_and_the_process_exits_cleanly() -> None:
    code = (
        "import asyncio, sys\n"
        "from homeserver.cli import _run\n"
        "async def main():\n"
        "    print('running', flush=True)\n"
        "    try:\n"
        "        await asyncio.sleep(60)\n"
        "    except asyncio.CancelledError:\n"
        "        print('cancelled', flush=True)\n"
        "        raise\n"
        "_run(main())\n"
        "print('stopped', flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "PATH": "/usr/bin:/bin"})
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert out.split() == ["cancelled", "stopped"]
    assert time.monotonic() - started < 10
