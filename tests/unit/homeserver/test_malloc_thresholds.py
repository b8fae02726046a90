"""glibc's mmap and trim thresholds fixed at start (homeserver/memory.py), and
an operator's own settings left alone."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

import homeserver.memory as memory
from tests.unit.homeserver.fresh_process import run_python


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_thresholds_are_fixed_and_large_blocks_go_back_to_the_system() -> None:
    # A freed 1 MiB block raises glibc's own mmap threshold to 1 MiB, so the
    # 512 KiB blocks allocated next come from the heap, between live blocks,
    # and stay in the process when freed. With the thresholds fixed each is an
    # mmap of its own, and freeing it returns its pages (RSS falls back).
    code = (
        "import ctypes, ctypes.util\n"
        "from homeserver.memory import fix_malloc_thresholds\n"
        "import sys\n"
        "fixed = sys.argv[1] == 'fixed' if len(sys.argv) > 1 else {fixed}\n"
        "ok = fix_malloc_thresholds() if fixed else True\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS'):\n"
        "            return int(line.split()[1])\n"
        "libc.free(libc.malloc(1 << 20))\n"
        "keep = libc.malloc(64)\n"
        "blocks, pins = [], []\n"
        "for _ in range(32):\n"  # each followed by a live block under the threshold
        "    blocks.append(libc.malloc(512 << 10))\n"
        "    pins.append(libc.malloc(100 << 10))\n"
        "for b in blocks:\n"
        "    ctypes.memset(b, 1, 512 << 10)\n"
        "high = rss()\n"
        "for b in blocks:\n"
        "    libc.free(b)\n"
        "print(ok, high - rss())\n"
    )
    fixed_ok, fixed_returned = run_python(code.format(fixed=True)).split()
    _, unfixed_returned = run_python(code.format(fixed=False)).split()
    assert fixed_ok == "True"
    assert int(fixed_returned) > 12 * 1024  # KiB: most of the 16 MiB went back
    assert int(unfixed_returned) < 4 * 1024  # glibc's default kept it in the heap


def test_an_operators_thresholds_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(parameter: int, value: int) -> bool:
        calls.append((parameter, value))
        return True

    monkeypatch.setattr(memory, "_mallopt", mallopt)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert memory.fix_malloc_thresholds() is True
    assert calls == [(memory.M_TRIM_THRESHOLD, memory.DEFAULT_TRIM_THRESHOLD)]
    calls.clear()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    memory.fix_malloc_thresholds()
    assert calls == []


def test_the_command_applies_them(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[str] = []

    def noting(what: str) -> Callable[[], bool]:
        def note() -> bool:
            applied.append(what)
            return True
        return note

    monkeypatch.setattr(memory, "limit_malloc_arenas", noting("arenas"))
    monkeypatch.setattr(memory, "fix_malloc_thresholds", noting("thresholds"))
    monkeypatch.setattr(memory, "skip_mako_syntax_highlighting", lambda: None)
    memory.configure_process_memory()
    assert applied == ["arenas", "thresholds"]
