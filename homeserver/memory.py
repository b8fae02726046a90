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
- glibc serves a request of 128 KiB or more with its own mmap, returned to
  the system when freed, but raises that threshold to the size of every such
  block freed (up to 32 MB): after a big /sync body or a remote join's state
  the next large buffers come from the heap instead, and a heap whose top
  holds one small live block keeps everything below it. Fixed thresholds
  (mmap from 128 KiB, heap top trimmed beyond 1 MiB free) keep the process's
  size close to what it uses.
- ``sqlalchemy.ext.asyncio`` imports its ORM session classes, and with them
  all of ``sqlalchemy.orm`` (~8 MB), into every process that wants only its
  async engine and connection. Myelin uses SQLAlchemy Core alone; the ORM
  parts are loaded the first time anything asks for them.
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

#: mallopt() parameter numbers (malloc.h) of the heap-top trim and mmap thresholds.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: The fixed thresholds, unless MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_ say otherwise.
DEFAULT_MMAP_THRESHOLD = 128 * 1024
DEFAULT_TRIM_THRESHOLD = 1024 * 1024


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt(); False where there is none (not Linux, musl)."""
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
    return bool(mallopt(parameter, value))


def limit_malloc_arenas(arenas: int = DEFAULT_MALLOC_ARENAS) -> bool:
    """Caps glibc's malloc arenas; effective for arenas created afterwards,
    so call it before threads start. Leaves an operator's MALLOC_ARENA_MAX
    alone (glibc has read it already). Returns whether the cap was set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return _mallopt(M_ARENA_MAX, arenas)


def fix_malloc_thresholds(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
                          trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Fixes glibc's mmap and trim thresholds (turning off their growth), so
    that large freed blocks go back to the system. Leaves a threshold the
    operator set in the environment alone. Returns whether both were set."""
    done = True
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        done = _mallopt(M_MMAP_THRESHOLD, mmap_threshold) and done
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        done = _mallopt(M_TRIM_THRESHOLD, trim_threshold) and done
    return done


def skip_mako_syntax_highlighting() -> None:
    """Makes Mako take its plain fallback instead of loading Pygments (an
    import of ``mako.ext.pygmentplugin`` fails, which Mako expects when
    Pygments is not installed). Only Mako's HTML error template uses it."""
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # type: ignore[arg-type]


#: What ``sqlalchemy.ext.asyncio`` takes from its ORM modules (its __init__).
_ASYNCIO_ORM_NAMES = {
    "async_scoped_session": "scoping",
    "async_object_session": "session", "async_session": "session", "async_sessionmaker": "session",
    "AsyncAttrs": "session", "AsyncSession": "session", "AsyncSessionTransaction": "session",
    "close_all_sessions": "session",
}


def defer_sqlalchemy_orm() -> bool:
    """Puts a ``sqlalchemy.ext.asyncio`` package in place whose engine and
    result names are there at once and whose ORM session names are imported
    when first asked for (PEP 562), so that Core-only code does not load
    ``sqlalchemy.orm``. Call it before anything imports the package; returns
    False (and changes nothing) if something already has."""
    name = "sqlalchemy.ext.asyncio"
    if name in sys.modules:
        return False
    import importlib
    import importlib.util
    import types

    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return False
    package = types.ModuleType(name, "SQLAlchemy's asyncio extension; ORM parts loaded on first use.")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = name
    package.__file__ = spec.origin

    def load_orm_part(attribute: str) -> object:
        module = _ASYNCIO_ORM_NAMES.get(attribute)
        if module is None:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        value = getattr(importlib.import_module(f"{name}.{module}"), attribute)
        setattr(package, attribute, value)
        return value

    package.__getattr__ = load_orm_part  # type: ignore[method-assign]
    sys.modules[name] = package
    try:
        engine = importlib.import_module(f"{name}.engine")
        result = importlib.import_module(f"{name}.result")
        from sqlalchemy.util import concurrency
    except BaseException:
        del sys.modules[name]
        raise
    for module, names in ((engine, ("async_engine_from_config", "AsyncConnection", "AsyncEngine",
                                    "AsyncTransaction", "create_async_engine", "create_async_pool_from_url")),
                          (result, ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult",
                                    "AsyncTupleResult"))):
        for attribute in names:
            setattr(package, attribute, getattr(module, attribute))
    # What the package's own __init__ does last.
    concurrency._concurrency_shim._initialize()
    return True


def configure_process_memory() -> None:
    limit_malloc_arenas()
    fix_malloc_thresholds()
    defer_sqlalchemy_orm()
    skip_mako_syntax_highlighting()
