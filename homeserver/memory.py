"""Process-wide memory settings, applied by the ``myelin`` command before it
imports the components or starts a thread.

Peak resident memory of the single process is one of the figures Myelin is
measured by (issue 6). Two things here cost memory without doing anything
for a homeserver:

- glibc gives each thread that allocates its own malloc arena (up to eight
  per core). SQLite connections on aiosqlite's threads, the event loop's
  executor and the server each fill and fragment their own arena, and memory
  freed in one arena is never reused by another thread. Two arenas are plenty
  for a process whose Python code holds the GIL.
- Mako (Alembic's template engine, loaded for migrations) installs Pygments
  syntax highlighting for its HTML error pages when Pygments is importable;
  that imports dozens of lexer modules, about 4.5 MB, to format an error page
  the server never renders.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: glibc's mallopt() parameter number for the arena limit (malloc.h).
M_ARENA_MAX = -8

#: Arenas the process may use unless MALLOC_ARENA_MAX says otherwise.
DEFAULT_MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_MALLOC_ARENAS) -> bool:
    """Caps glibc's malloc arenas; effective for arenas created afterwards,
    so call it before threads start. Leaves an operator's MALLOC_ARENA_MAX
    alone (glibc has read it already). Returns whether the cap was set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def skip_mako_syntax_highlighting() -> None:
    """Makes Mako take its plain fallback instead of loading Pygments (an
    import of ``mako.ext.pygmentplugin`` fails, which Mako expects when
    Pygments is not installed). Only Mako's HTML error template uses it."""
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # type: ignore[arg-type]


def configure_process_memory() -> None:
    limit_malloc_arenas()
    skip_mako_syntax_highlighting()
