"""`make bench-instructions`: instructions per request, counted by
callgrind, for native hyper and for the Rust hello on cello, and where
cello's go: the host with no guest call (a path no route matches), and one
call on the hello's route in process with no HTTP (`call-cost`: as a `def`
route's, as an `async def` route's, and on the sync build); and for the
wasi:http hello on `wasmtime serve` and on cello.

Unlike requests per second, an instruction count does not move with the
machine's other tenants, so it is the figure to compare a change by. It
counts user-space instructions only: the kernel's share of a request (the
socket calls, the same number for every server here) is not in it.

Each server runs under callgrind with counting off until it answers, then
counts over all its threads while `wrk -t1 -c4` loads it; the count is
divided by the requests wrk completed. The in-process call is counted as
the difference between two `call-cost` runs of different lengths, which
leaves its start-up out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Seconds of load each server is counted over (callgrind runs code about
#: fifty times slower than it runs natively).
SECONDS = 10
#: `call-cost` counts for the in-process call: calls per round of the two
#: runs (each runs 5 rounds after 20,000 warm-up calls).
SHORT, LONG = 4_000, 20_000
ROUNDS = 5


#: The two wasi:http hello rows, compared in the section's last line.
CELLO_WASI_HELLO = "cello-host, the wasi:http hello"
WASMTIME_SERVE = "wasmtime serve (reuse 128), the same wasi:http hello"


@dataclass
class Count:
    """Instructions per request (or per call), and of them, in guest code."""

    name: str
    per_request: float
    in_guest: float


def callgrind(out: Path) -> list[str]:
    """The valgrind command line counting nothing until told to."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def totals(out: Path) -> tuple[int, int]:
    """Instructions callgrind counted in the files of `out` (one per dump),
    and of them, in code with no symbol in no known object: the guest's
    JIT-compiled functions."""
    total = guest = 0
    for dump in sorted(out.parent.glob(out.name + "*")):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
        annotated = subprocess.run(
            ["callgrind_annotate", "--threshold=100", "--auto=no", str(dump)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for match in re.finditer(r"^\s*([\d,]+) .*\?\?\?:0x[0-9a-f]+ \[\?\?\?\]$", annotated, re.M):
            guest += int(match.group(1).replace(",", ""))
    return total, guest


def server(name: str, command: list[str], ready: str, url: str, out: Path, wait, env=None) -> Count:
    """`command`'s instructions per request of `url`, once `ready` answers
    200 (`wait` waits for that), with `env` added to its environment."""
    process = subprocess.Popen(
        [*callgrind(out), *command],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def control(*args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(process.pid)], check=True, capture_output=True
        )

    try:
        wait(ready, limit=600.0)
        control("-i", "on")
        load = subprocess.run(
            ["wrk", "-t1", "-c4", f"-d{SECONDS}s", url], capture_output=True, text=True, check=True
        )
        control("-i", "off")
        control("-d")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    requests = int(re.search(r"(\d+) requests in", load.stdout).group(1))
    total, guest = totals(out)
    count = Count(name, total / requests, guest / requests)
    print(f"  {name:60} {count.per_request:>9,.0f} instructions ({count.in_guest:,.0f} in guest)")
    return count


#: The in-process call rows: the component, the row's name, and
#: `call-cost`'s extra arguments.
CALLS = [
    ("hello-rust", "one call on the Rust hello's route, in process, no HTTP", []),
    (
        "hello-rust",
        "the same call made as an `async def` route's, on an event loop",
        ["--event-loop"],
    ),
    ("hello-rust-sync", "one call on the sync build's route, in process", []),
]


def call(
    call_cost: Path, component: Path, state: Path, scratch: Path, name: str, extra: list[str]
) -> Count:
    """Instructions per call of `call-cost`'s loop: the difference between a
    long run and a short one, over the calls the long one made more."""
    command = [str(call_cost), str(component), str(state)]
    # Compiled under valgrind first, uncounted: its CPU is not the machine's,
    # so what was compiled natively does not serve it, and compiling in the
    # short run would be counted against it.
    subprocess.run(["valgrind", "--tool=none", *command, "1"], check=True, capture_output=True)
    counted = []
    for calls in (SHORT, LONG):
        out = scratch / f"call-{component.stem}-{len(extra)}-{calls}.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command, str(calls)]
            + extra,
            check=True,
            capture_output=True,
        )
        counted.append(totals(out))
    more = (LONG - SHORT) * ROUNDS
    (short, short_guest), (long, long_guest) = counted
    count = Count(name, (long - short) / more, (long_guest - short_guest) / more)
    print(f"  {name:60} {count.per_request:>9,.0f} instructions ({count.in_guest:,.0f} in guest)")
    return count


def section(counts: list[Count]) -> list[str]:
    """The "Instructions per request" section of RESULTS.md."""
    hyper = counts[0].per_request
    rows = [
        f"| {c.name} | {c.per_request:,.0f} | {c.in_guest:,.0f} | {c.per_request / hyper:.1f} |"
        for c in counts
    ]
    return [
        "## Instructions per request",
        "",
        "Counted by callgrind (`make bench-instructions`): user-space instructions of the "
        f"whole server process, all threads, while `wrk -t1 -c4 -d{SECONDS}s` loaded it, "
        "divided by the requests it answered; the in-process call by the difference between "
        "two `call-cost` runs of different lengths. The kernel's share (the same socket "
        "calls for every server) is not counted. Unlike requests per second these counts do "
        "not vary with the machine's load: compare changes by them.",
        "",
        "| | instructions | in guest code | × native hyper |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        *calls_line(counts),
        *wasi_http_line(counts),
    ]


def calls_line(counts: list[Count]) -> list[str]:
    """What the host's side of one in-process call costs by the way it is
    made, when all three were counted."""
    host = {c.name: c.per_request - c.in_guest for c in counts}
    (default, event_loop, sync) = (host.get(name) for _, name, _ in CALLS)
    if None in (default, event_loop, sync):
        return []
    return [
        f"Of one in-process call, the host's side (all but the guest's code) takes "
        f"{default:,.0f} instructions on the default build, {sync:,.0f} on the sync build, "
        f"and {event_loop:,.0f} when the default build's route is called as an `async def` "
        "route's is, on an instance's event loop. The default build's extra is wasmtime's "
        "component-model-async call path, which wasmtime takes for every call on an engine "
        "with concurrency support (a `run_concurrent` and a guest task per call) and "
        "requires such an engine of any component using component-model async; the sync "
        "build's `sync-app` world uses none, and runs on an engine without it. On the event "
        "loop, the queue to it and the reply from it come on top.",
        "",
    ]


def wasi_http_line(counts: list[Count]) -> list[str]:
    """How many times fewer instructions cello's wasi:http hello takes per
    request than `wasmtime serve`'s, when both were counted."""
    named = {c.name: c.per_request for c in counts}
    if CELLO_WASI_HELLO not in named or WASMTIME_SERVE not in named:
        return []
    ratio = named[WASMTIME_SERVE] / named[CELLO_WASI_HELLO]
    return [
        f"On the wasi:http hello, `wasmtime serve` takes {ratio:.2f}× the instructions "
        "per request that cello does (the same component in both; its code is compiled "
        "by each host with its own settings, so the in-guest counts differ).",
        "",
    ]
