"""The benchmark suite: Myelin against Synapse on this machine, in one run.

    .venv/bin/python -m bench                      # everything (about 30-40 minutes on 2 cores)
    .venv/bin/python -m bench --quick              # one repetition of small sizes: a smoke run
    .venv/bin/python -m bench --only send,sync --targets myelin,synapse

Starts every target (``myelin``: the single process on SQLite;
``myelin-split``: one process per component on PostgreSQL and Kafka/Tansu;
``synapse`` and ``synapse-pg``: Synapse from PyPI on SQLite and on
PostgreSQL), runs each workload on one after the other, and prints
one markdown table: median (min-max) of the repetitions, server CPU time
per operation, peak RSS and the Myelin/Synapse ratios. A full run also
writes the table to bench/RESULTS.md. Every server started is stopped on
exit or Ctrl-C; a workload that fails on one target shows its error in its
cells and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from bench import client
from bench.federation import fed_join, fed_send
from bench.report import Results, idle_flatness, machine, table
from bench.stateres import run_stateres
from bench.targets import TARGETS, HashCost, SharedServices, Target, calibrate_hash_cost, start_target
from bench.workloads import FULL, HTTP_WORKLOADS, QUICK, Sizes, Workload, WorkloadContext, metrics

BENCH_DIR = Path(__file__).resolve().parent
# Name (for --only) -> workload on a running server, in the order they run.
# The targets first, the longest set-up (10,000 events of history) last.
SERVER_WORKLOADS: dict[str, Workload] = {
    name: {**HTTP_WORKLOADS, "fed-send": fed_send, "fed-join": fed_join}[name]
    for name in ("send", "send-sync", "sync", "join", "register", "fed-send", "fed-join", "messages")}
WORKLOADS = (*SERVER_WORKLOADS, "stateres")
_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def _names(value: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of small sizes (a smoke run)")
    parser.add_argument("--only", type=lambda v: _names(v, WORKLOADS, "workload"), default=list(WORKLOADS),
                        help=f"workloads to run, comma-separated ({','.join(WORKLOADS)})")
    parser.add_argument("--targets", type=lambda v: _names(v, TARGETS, "target"), default=list(TARGETS),
                        help=f"servers to run them on, comma-separated ({','.join(TARGETS)})")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the table (default: bench/RESULTS.md for a full run of "
                             "everything, bench/.work/RESULTS-partial.md otherwise)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' work directories and logs")
    return parser.parse_args(argv)


def start_targets(names: Sequence[str], workdir: Path, cost: HashCost, shared: SharedServices,
                  results: Results, versions: dict[str, str]) -> list[Target]:
    targets: list[Target] = []
    for name in names:
        progress(f"starting {name}")
        try:
            target = start_target(name, workdir / name, cost, shared)
        except Exception as e:  # shown in every cell of its column; the others still run
            progress(f"{name} did not start: {e}")
            results.fail(name, "start", e)
            continue
        versions[name] = target.version
        targets.append(target)
    return targets


async def run_workloads(targets: Sequence[Target], workloads: Sequence[str], sizes: Sizes, results: Results,
                        after_each: Callable[[Sequence[str]], object]) -> None:
    """Each workload on every target in turn, so that the figures compared
    are measured minutes apart, not half an hour (the load of a shared
    machine drifts); the other servers sit idle meanwhile."""
    async with contextlib.AsyncExitStack() as stack:
        contexts: dict[str, WorkloadContext] = {}
        for target in targets:
            http = await stack.enter_async_context(client.new_client(target.base_url))
            contexts[target.name] = WorkloadContext(
                http=http, sizes=sizes, cpu_seconds=target.monitor.cpu_seconds, progress=progress,
                server_name=target.server_name, federation=target.federation, workdir=target.workdir)
        for index, name in enumerate(workloads):
            for target in targets:
                progress(f"{target.name}: {name}")
                started = time.monotonic()
                ctx = contexts[target.name]
                ctx.partial = {}
                try:
                    results.add(target.name, await SERVER_WORKLOADS[name](ctx))
                except Exception as e:  # one workload's failure is shown in its cells; the run goes on
                    progress(f"{target.name}: {name} failed: {type(e).__name__}: {e}")
                    results.add(target.name, {k: v for k, v in ctx.partial.items() if v})
                    results.fail(target.name, name, e)
                progress(f"{target.name}: {name} took {time.monotonic() - started:.0f}s")
            for target in targets:
                results.add(target.name, {"peak_rss_mb": [target.monitor.peak_rss_bytes() / 2**20]})
            after_each(workloads[index + 1:])


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    everything = not args.quick and set(args.only) == set(WORKLOADS) and set(args.targets) == set(TARGETS)
    output: Path = args.output or (BENCH_DIR / "RESULTS.md" if everything
                                   else BENCH_DIR / ".work" / "RESULTS-partial.md")
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    signal.signal(signal.SIGTERM, _raise_interrupt)

    (BENCH_DIR / ".work").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR / ".work"))
    progress(f"work directory {workdir}")
    progress("calibrating the password-hashing cost")
    cost = calibrate_hash_cost()
    progress(f"bcrypt rounds {cost.bcrypt_rounds}: {cost.bcrypt_ms:.2f} ms a hash; "
             f"scrypt n=2^{cost.scrypt_log2_n}: {cost.scrypt_ms:.2f} ms")
    results = Results()
    from bench.synapse import synapse_version

    versions: dict[str, str] = {"synapse": synapse_version()}
    shared = SharedServices(workdir)
    server_workloads = [w for w in args.only if w in SERVER_WORKLOADS]
    output.parent.mkdir(parents=True, exist_ok=True)

    def write(still_to_run: Sequence[str]) -> str:
        text = render(results, sizes, args.targets, command=command, date=date, cost=cost, versions=versions)
        if still_to_run:
            # Written after each workload, so an interrupted run keeps what it measured.
            text += f"\n\n(Partial: {', '.join(still_to_run)} not run yet.)"
        output.write_text(text + "\n")
        return text

    targets: list[Target] = []
    try:
        if "stateres" in args.only:
            progress("state resolution micro-benchmark")
            try:
                figures = run_stateres(sizes.stateres_members, sizes.stateres_changes, max(sizes.reps, 3),
                                       workdir / "stateres")
                results.add("myelin", {"stateres.ms": figures["myelin"]})
                results.add("synapse", {"stateres.ms": figures["synapse"]})
            except Exception as e:
                progress(f"stateres failed: {e}")
                results.fail("myelin", "stateres", e)
                results.fail("synapse", "stateres", e)
        if server_workloads:
            targets = start_targets(args.targets, workdir, cost, shared, results, versions)
            if any(t in args.targets for t in ("myelin-split", "synapse-pg")):
                with contextlib.suppress(Exception):
                    versions["postgresql"] = shared.postgres_version()
            asyncio.run(run_workloads(targets, server_workloads, sizes, results, write))
    finally:
        for target in targets:
            progress(f"stopping {target.name}")
            with contextlib.suppress(Exception):
                target.stop()
        shared.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(write([]))
    progress(f"written to {output}")
    return 0


def render(results: Results, sizes: Sizes, targets: Sequence[str], *, command: str, date: str, cost: HashCost,
           versions: dict[str, str]) -> str:
    myelin_version = versions.get("myelin") or versions.get("myelin-split") or "?"
    lines = [
        "# Benchmark results",
        "",
        f"- command: `{command}` (from the repository root, with `.venv/bin/python`)",
        f"- date: {date}",
        f"- machine: {machine()}",
        f"- Myelin {myelin_version}; Synapse {versions.get('synapse', '?')}"
        + (f"; {versions['postgresql']}" if "postgresql" in versions else ""),
        f"- password hashing: Synapse bcrypt rounds {cost.bcrypt_rounds} ({cost.bcrypt_ms:.2f} ms a hash), "
        f"Myelin scrypt n=2^{cost.scrypt_log2_n} ({cost.scrypt_ms:.2f} ms); rate limits off on both",
        f"- repetitions: {sizes.reps} (single-operation figures: {max(sizes.reps, sizes.samples)} samples); "
        "cells are median (min-max); ratios are Myelin/Synapse medians",
        "",
        table(results, metrics(sizes), targets),
        "",
        "Idle incremental /sync, growth with the number of rooms (target: flat):",
        *idle_flatness(results, targets, sizes.idle_room_counts),
        "",
        "Notes: server CPU is user+system time of the server's own processes (every process of the split "
        "deployment; PostgreSQL and Tansu not counted, for either server); peak RSS is sampled every "
        "0.2 s over the whole run on that server. The client runs on the same machine and shares its "
        "cores. State resolution is a micro-benchmark of the two implementations' code on the same "
        "synthetic fork (room version 10, same events and auth difference, answers compared), shown in "
        "the single-process columns. The federation workloads talk to a fake remote server run by the "
        "benchmark (TLS on loopback, its own key); the split deployment runs without federation.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
