"""`make bench`: Cello against native hyper, `wasmtime serve`, FastAPI and
Starlette, all on this machine in one run, with wrk as the load.

Writes bench/RESULTS.md and bench/results.png. BENCH_SECONDS sets the length
of each load run (default 10). `run.py throughput-quick [BASE [BASE_HELLO]]`
runs only the rows the throughput targets compare, prints them and writes
their section of RESULTS.md, with another cello-host binary's rows beside
them when BASE names one, serving BASE_HELLO as its Rust hello when given;
BENCH_BASE_NAME, when set, is the sentence that says what BASE is (after
`make bench` has set up bench/.venv and the `production` builds).
`run.py instructions` counts instructions per request under callgrind
(bench/instructions.py). A whole run keeps the sections of RESULTS.md that
it does not write (these, and any written by hand).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cluster
import instructions
from postgres import Postgres

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
COMPONENTS = OUT / "components"
HOST = ROOT / "target/production/cello-host"
HYPER = ROOT / "target/production/hyper-hello"
CALL_COST = ROOT / "target/production/call-cost"
#: The p3 hello, built by `make p3-hello`: the p3-testbed test guest.
P3_HELLO = ROOT / "tests/guests/target/wasm32-wasip2/release/p3_testbed.wasm"
#: The Rust hello built with cello-sdk's `sync` feature, by `make sync-hello`.
SYNC_HELLO = ROOT / "guest-rust/target/sync/wasm32-wasip2/release/hello.wasm"
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 32
#: A sidecar giving every request a fresh instance.
PER_REQUEST = '[limits]\nisolation = "per-request"\n'
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until_ok(url: str, limit: float = 120.0) -> float:
    """Seconds until `url` first answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        try:
            if get(url, timeout=1.0)[0] == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{url} did not answer 200 within {limit}s")


class Server:
    """A server process for one measurement."""

    def __init__(self, command: list[str], url: str, cwd: Path | None = None, env=None):
        self.url = url
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> Server:
        wait_until_ok(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def at(self, url: str) -> Server:
        """The same server, measured at another URL."""
        view = copy.copy(self)
        view.url = url
        return view

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server process and its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


@dataclass
class Load:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    requests: int
    errors: int
    notes: list[str] = field(default_factory=list)

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu_seconds if self.cpu_seconds else 0.0


def duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    name: str,
    server: Server,
    path: str,
    headers: dict[str, str] | None = None,
    connections: int = CONNECTIONS,
) -> Load:
    url = server.url.rsplit("/", 1)[0] + path if path else server.url
    extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    # Warm up: instances, caches and connections.
    subprocess.run(
        ["wrk", "-t1", f"-c{connections}", "-d2s", *extra, url], capture_output=True, check=True
    )
    cpu_before = server.cpu_seconds()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = server.cpu_seconds() - cpu_before
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    errors = 0
    for match in re.finditer(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    socket_errors = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    for match in re.finditer(socket_errors, out):
        errors += sum(int(g) for g in match.groups())
    load = Load(
        name=name,
        rps=rps,
        p50_ms=duration_ms(percentiles["50"]),
        p99_ms=duration_ms(percentiles["99"]),
        cpu_seconds=cpu,
        requests=requests,
        errors=errors,
    )
    print(
        f"  {name:58} {rps:>10,.0f} req/s  p50 {load.p50_ms:6.2f} ms  "
        f"p99 {load.p99_ms:6.2f} ms  {load.per_cpu_second:>9,.0f} req/CPU-s  errors {errors}",
        flush=True,
    )
    return load


def component_dir(*names: str, sidecars: dict[str, str] | None = None) -> Path:
    """A fresh directory holding the named components (and sidecars)."""
    directory = Path(tempfile.mkdtemp(prefix="cello-bench-"))
    for name in names:
        shutil.copy(COMPONENTS / f"{name}.wasm", directory / f"{name}.wasm")
        if sidecars and name in sidecars:
            (directory / f"{name}.toml").write_text(sidecars[name])
    return directory


def cello(
    directory: Path,
    path: str,
    state: Path,
    ops: int | None = None,
    config: str | None = None,
    host: Path = HOST,
) -> Server:
    port = free_port()
    command = cello_command(directory, state, port, config, host)
    if ops:
        command += ["--ops-listen", f"127.0.0.1:{ops}"]
    return Server(command, f"http://127.0.0.1:{port}{path}", env=CELLO_ENV)


#: The access log (when on) is part of what is measured.
CELLO_ENV = {"CELLO_LOG": "warn,access=info"}


def cello_command(
    directory: Path, state: Path, port: int, config: str | None = None, host: Path = HOST
) -> list[str]:
    """`cello-host serve` of `directory` on `port`, with `config` as its
    host config when given."""
    command = [str(host), "serve", str(directory), "--listen", f"127.0.0.1:{port}"]
    command += ["--state-dir", str(state), "--log-format", "json"]
    if config is not None:
        (directory / "host-config.toml").write_text(config)
        command += ["--config", str(directory / "host-config.toml")]
    return command


def uvicorn(module: str, path: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port),
        "--workers", "1", "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return Server(command, f"http://127.0.0.1:{port}{path}", cwd=BENCH / "apps", env=env)


def wasmtime_serve(extra: list[str], component: str = "http-proxy", path: str = "/") -> Server:
    return Server(*wasmtime_serve_command(extra, component, path))


def wasmtime_serve_command(
    extra: list[str], component: str = "http-proxy", path: str = "/"
) -> tuple[list[str], str]:
    """The `wasmtime serve` command line serving `component` on a free
    port, and the URL of `path` on it."""
    wasmtime = shutil.which("wasmtime", path=str(Path(sys.executable).parent))
    port = free_port()
    command = [wasmtime, "serve", "--addr", f"127.0.0.1:{port}", "-S", "cli", *extra]
    command.append(str(COMPONENTS / f"{component}.wasm"))
    return command, f"http://127.0.0.1:{port}{path}"


def metric(ops: int, name: str, component: str) -> float:
    text = get(f"http://127.0.0.1:{ops}/metrics")[1].decode()
    match = re.search(rf'^{name}{{component="{component}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


#: Every host-wide layer off: no compression check, no security headers.
CHAIN_OFF = "[compression]\nenabled = false\n[security-headers]\nenabled = false\n"

#: Every layer on: CORS, JWT auth (HS256; the load sends a token, so each
#: request is verified), a rate limit too large to refuse, compression,
#: security headers and the access log.
CHAIN_ON = """
[cors]
allow-origins = ["https://app.example"]
[auth]
algorithm = "HS256"
secret = "bench-secret-bench-secret-bench!"
audience = "bench"
[rate-limit]
capacity = 1000000000
period-s = 1
[access-log]
enabled = true
"""


def bench_token() -> str:
    """An HS256 JWT for CHAIN_ON's key, valid for an hour."""
    import base64
    import hashlib
    import hmac
    import json
    import time

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "bench", "aud": "bench", "exp": int(time.time()) + 3600}
    signing = f"{header}.{b64(json.dumps(claims).encode())}"
    secret = b"bench-secret-bench-secret-bench!"
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


def throughput(state: Path) -> list[Load]:
    print(f"throughput: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, each server alone", flush=True)
    loads = []
    with Server(
        [str(HYPER), f"127.0.0.1:{(port := free_port())}"], f"http://127.0.0.1:{port}/"
    ) as s:
        loads.append(wrk("native hyper", s, "/"))
    with wasmtime_serve([]) as s:
        loads.append(wrk("wasmtime serve, wasi:http hello (fresh instances)", s, "/"))
    with wasmtime_serve(["--max-instance-reuse-count", "128"]) as s:
        loads.append(wrk("wasmtime serve, wasi:http hello (reuse 128)", s, "/"))
    with cello(component_dir("http-proxy"), "/", state) as s:
        loads.append(wrk("cello-host, the same wasi:http hello", s, "/"))
    fresh = {"http-proxy": PER_REQUEST}
    keep = "[pool]\nkeep-resident-mb = 32\n"
    with cello(component_dir("http-proxy", sidecars=fresh), "/", state, config=keep) as s:
        label = "cello-host, the same wasi:http hello (fresh instances, keep-resident-mb = 32)"
        loads.append(wrk(label, s, "/"))
    with cello(component_dir("hello-rust"), "/", state) as s:
        loads.append(wrk("cello-host, Rust SDK hello route", s, "/"))
    with cello(component_dir("hello-rust-sync"), "/", state) as s:
        loads.append(wrk(SYNC_ROW, s, "/"))
    loads += middleware_chain(state)
    with cello(component_dir("bench-python"), "/sync", state) as s:
        loads.append(wrk("cello-host, Python SDK hello (def)", s, "/sync"))
        loads.append(wrk("cello-host, Python SDK hello (async def)", s, "/async"))
        loads.append(wrk("cello-host, Python route with 5 ms of work, uncached", s, "/report"))
        loads.append(wrk("cello-host, the same route, cached (@cache)", s, "/report-cached"))
    with uvicorn("fastapi_app", "/sync") as s:
        loads.append(wrk("FastAPI + uvicorn, hello (def)", s, "/sync"))
        loads.append(wrk("FastAPI + uvicorn, hello (async def)", s, "/async"))
    with uvicorn("starlette_app", "/async") as s:
        loads.append(wrk("Starlette + uvicorn, hello (async def)", s, "/async"))
    return loads


OPERATOR = "bench-operator-token"

#: Requests a looping neighbour keeps going: twice the machine's cores.
LOOPS = max(4, 2 * (os.cpu_count() or 2))


@dataclass
class Neighbour:
    """A noisy tenant running the Python bench app under `quotas` (and
    sidecar `settings`), loaded on `path` by wrk with `connections`; or,
    with `slowloris`, a client holding that many slow connections."""

    what: str
    path: str = "/sync"
    quotas: dict = field(default_factory=dict)
    settings: str = ""
    connections: int = 32
    slowloris: int = 0


NEIGHBOURS = [
    Neighbour("floods its hello route, no rate quota", quotas={"requests-per-second": 0}),
    Neighbour("floods its hello route, 200 req/s quota", quotas={"requests-per-second": 200}),
    Neighbour(
        f"keeps {LOOPS} CPU-bound requests looping (its instance quota), 10 s time quota",
        "/busy/100000",
        {"requests-per-second": 0, "timeout-ms": 10000, "max-instances": LOOPS},
        connections=LOOPS,
    ),
    Neighbour(
        "grows memory: 96 MiB written by each request, on a fresh instance each",
        "/grow/96",
        {"requests-per-second": 0, "memory-mb": 128, "max-instances": LOOPS},
        '[limits]\nisolation = "per-request"\nmemory-mb = 128\n',
        connections=LOOPS,
    ),
    Neighbour("holds 1000 slow connections (slowloris)", slowloris=1000),
]


def admin(port: int, method: str, path: str, body: bytes = b"", kind: str = "application/json"):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body or None,
        method=method,
        headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": kind},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def tenant_with(port: int, name: str, component: str, quotas: dict, settings: str = "") -> None:
    """Creates tenant `name` with `quotas` and uploads `component` to it,
    with sidecar `settings` if any."""
    body = json.dumps({"name": name, "quotas": quotas}).encode()
    admin(port, "POST", "/v1/tenants", body)
    wasm = (COMPONENTS / f"{component}.wasm").read_bytes()
    path = f"/v1/tenants/{name}/components/app"
    if not settings:
        admin(port, "PUT", path, wasm, "application/wasm")
        return
    boundary = "cello-bench-boundary"
    form = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n\r\n'.encode(),
            settings.encode(),
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="component"; '
            'filename="app.wasm"\r\nContent-Type: application/wasm\r\n\r\n'.encode(),
            wasm,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    admin(port, "PUT", path, form, f"multipart/form-data; boundary={boundary}")


class Slowloris:
    """`count` connections from 127.0.0.2 (another client address than the
    load's), each sending its request head one byte every few seconds, and
    reconnecting when the host closes it."""

    def __init__(self, port: int, count: int):
        import threading

        self.port, self.count = port, count
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def connect(self):
        s = socket.socket()
        s.setblocking(False)
        s.bind(("127.0.0.2", 0))
        s.connect_ex(("127.0.0.1", self.port))
        return s

    def run(self) -> None:
        sockets = [self.connect() for _ in range(self.count)]
        head = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 10_000
        sent = [0] * self.count
        while not self.stopping.wait(2.0):
            for i, s in enumerate(sockets):
                try:
                    s.send(head[sent[i] % len(head) : sent[i] % len(head) + 1])
                    sent[i] += 1
                except OSError:
                    s.close()
                    sockets[i], sent[i] = self.connect(), 0
        for s in sockets:
            s.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


#: Rounds of the isolation rows; each row is the median of its rounds.
ISOLATION_ROUNDS = 3
#: The looping neighbour's row on a host whose long-call lane runs under
#: the kernel's idle policy, the option set against the default.
IDLE_POLICY = (
    "quiet tenant, the same looping neighbour, lane under SCHED_IDLE (long-call-idle = true)"
)


def isolation_host(state: Path, config: str = "") -> Server:
    """A host for the isolation rows, with `config` as its host config."""
    port, ops, admin_port = free_port(), free_port(), free_port()
    command = [str(HOST), "serve", str(component_dir()), "--allow-empty"]
    command += ["--listen", f"127.0.0.1:{port}"]
    command += ["--state-dir", tempfile.mkdtemp(dir=state), "--ops-listen", f"127.0.0.1:{ops}"]
    command += ["--admin-listen", f"127.0.0.1:{admin_port}", "--admin-token", OPERATOR]
    command += ["--tenants-dir", tempfile.mkdtemp(prefix="cello-bench-tenants-"), "--no-watch"]
    if config:
        path = Path(tempfile.mkdtemp()) / "host.toml"
        path.write_text(config)
        command += ["--config", str(path)]
    host = Server(command, f"http://127.0.0.1:{ops}/readyz", env={"CELLO_LOG": "warn"})
    host.port, host.admin_port = port, admin_port
    return host


def beside_neighbour(host: Server, label: str, name: str, neighbour: Neighbour) -> Load:
    """The quiet tenant's load on `host` while tenant `name` is loaded as
    `neighbour` says."""
    quiet = host.at(f"http://127.0.0.1:{host.port}/t/quiet/")
    if neighbour.slowloris:
        slow = Slowloris(host.port, neighbour.slowloris)
        time.sleep(2)
        load = wrk(label, quiet, "", connections=2)
        slow.stop()
        return load
    flood = subprocess.Popen(
        ["wrk", "-t1", f"-c{neighbour.connections}", f"-d{SECONDS + 4}s"]
        + [f"http://127.0.0.1:{host.port}/t/{name}{neighbour.path}"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(2)
    load = wrk(label, quiet, "", connections=2)
    flood.wait()
    return load


def isolation_section(isolated: list[Load]) -> list[str]:
    """The "Tenant isolation" section of RESULTS.md."""
    lines = [
        "## Tenant isolation",
        "",
        "p50 and p99 of a quiet tenant's Rust hello route (`wrk -t1 -c2`), alone and while "
        "a noisy tenant on the same host is loaded (`wrk -t1`, 32 connections, or as many "
        "as the looping and growing neighbours' instance quotas allow). Each noisy tenant runs "
        "the Python bench app under the quotas named; the slow connections come from another "
        f"loopback address. The host has {os.cpu_count()} cores, shared with the load "
        f"generators. Alternating rounds; each figure is the median of {ISOLATION_ROUNDS}. "
        "The last row is the looping neighbour on a second host whose long-call lane runs "
        "under the kernel's idle policy (`SCHED_IDLE`) rather than at nice 19 alone.",
        "",
        "| quiet tenant | req/s | ÷ alone | p50 ms | p99 ms | p99 ÷ alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    alone = isolated[0]
    lines += [
        f"| {load.name} | {load.rps:,.0f} | {load.rps / alone.rps:.2f} | {load.p50_ms:.2f} | "
        f"{load.p99_ms:.2f} | {load.p99_ms / alone.p99_ms:.1f} |"
        for load in isolated
    ]

    def beside(word: str) -> Load:
        return next(load for load in isolated if word in load.name and load.name != IDLE_POLICY)

    looping, growing, slow = beside("looping"), beside("grows memory"), beside("slowloris")
    return lines + [
        "",
        "| isolation target | measured | goal | |",
        "|---|---:|---:|---|",
        target_row("looping neighbour: quiet req/s ÷ alone", looping.rps / alone.rps, 0.5),
        target_row(
            "looping neighbour: quiet p99 ÷ alone (at most)",
            looping.p99_ms / alone.p99_ms,
            10.0,
            at_most=True,
        ),
        target_row("growing neighbour: quiet req/s ÷ alone", growing.rps / alone.rps, 0.5),
        target_row("slowloris neighbour: quiet req/s ÷ alone", slow.rps / alone.rps, 0.8),
    ]


def median_of_each(name: str, loads: list[Load]) -> Load:
    """One row of `loads`: the median of each figure over the rounds."""

    def mid(figure) -> float:
        return statistics.median(figure(load) for load in loads)

    return Load(
        name=name,
        rps=mid(lambda load: load.rps),
        p50_ms=mid(lambda load: load.p50_ms),
        p99_ms=mid(lambda load: load.p99_ms),
        cpu_seconds=mid(lambda load: load.cpu_seconds),
        requests=int(mid(lambda load: load.requests)),
        errors=sum(load.errors for load in loads),
    )


def isolation(state: Path) -> list[Load]:
    """p99 of a quiet tenant's hello route, alone and beside noisy tenants,
    in alternating rounds; and beside the looping neighbour on a host whose
    long-call lane runs under the kernel's idle policy."""
    print("isolation: a quiet tenant (wrk -c2) alone and beside a noisy one")
    looping = next(n for n in NEIGHBOURS if n.path.startswith("/busy"))
    runs: dict[str, list[Load]] = {}
    with (
        isolation_host(state) as main,
        isolation_host(state, "[execution]\nlong-call-idle = true\n") as idle,
    ):
        for host in (main, idle):
            tenant_with(host.admin_port, "quiet", "hello-rust", {"requests-per-second": 0})
        for n, neighbour in enumerate(NEIGHBOURS):
            if not neighbour.slowloris:
                quotas, settings = neighbour.quotas, neighbour.settings
                tenant_with(main.admin_port, f"noisy-{n}", "bench-python", quotas, settings)
        tenant_with(idle.admin_port, "noisy", "bench-python", looping.quotas, looping.settings)
        for _ in range(ISOLATION_ROUNDS):
            quiet = main.at(f"http://127.0.0.1:{main.port}/t/quiet/")
            alone = "quiet tenant alone"
            runs.setdefault(alone, []).append(wrk(alone, quiet, "", connections=2))
            for n, neighbour in enumerate(NEIGHBOURS):
                label = f"quiet tenant, while a neighbour {neighbour.what}"
                load = beside_neighbour(main, label, f"noisy-{n}", neighbour)
                runs.setdefault(label, []).append(load)
            load = beside_neighbour(idle, IDLE_POLICY, "noisy", looping)
            runs.setdefault(IDLE_POLICY, []).append(load)
    return [median_of_each(name, loads) for name, loads in runs.items()]


#: The todos example's sidecar: a SQL database of its own.
TODOS = 'prefix = "/todos"\n[grants]\nsql = true\n'
SQL_ROWS = 1000
#: PostgreSQL connections per component, for cello and for FastAPI's pool.
PG_CONNECTIONS = 8
SQL_NAMES = {
    "cello": "cello-host, Python todos: SELECT by primary key (SQLite)",
    "fastapi": "FastAPI + uvicorn + aiosqlite, the same SELECT",
    "cello-pg": "cello-host, Python todos: SELECT by primary key (PostgreSQL)",
    "fastapi-pg": "FastAPI + uvicorn + asyncpg, the same SELECT",
}


def seed_todos(url: str) -> None:
    """Adds SQL_ROWS todos through the component's batch route."""
    body = json.dumps([{"title": f"todo {i}"} for i in range(1, SQL_ROWS + 1)]).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 201, reply.status


def todos_run(label: str, state: Path, row: str, config: str | None = None) -> Load:
    """One load run of the todos read route on cello."""
    directory = component_dir("todos", sidecars={"todos": TODOS})
    with cello(directory, "/todos/", state, config=config) as s:
        seed_todos(s.url + "batch")
        assert get(s.url + row[1:])[0] == 200, "the todos component did not serve the row"
        return wrk(label, s, row)


def sql_reads(state: Path, rounds: int = 3) -> list[Load]:
    """One indexed SELECT by primary key behind a route, on cello (the
    Python todos example) and on FastAPI, on SQLite (aiosqlite) and on
    PostgreSQL (asyncpg), alternately, `rounds` times each; each row is the
    median run."""
    print("sql: the todos read route, cello and FastAPI alternately", flush=True)
    runs: dict[str, list[Load]] = {name: [] for name in SQL_NAMES}
    # wrk() puts `row` after the last `/` of each server's URL: /todos/500.
    row = f"/{SQL_ROWS // 2}"
    with Postgres() as pg:
        config = (
            f'[sql]\npostgres = "{pg.url("cello")}"\nconnections-per-component = {PG_CONNECTIONS}\n'
        )
        for _ in range(rounds):
            runs["cello"].append(todos_run("  cello (SQLite)", state, row))
            with uvicorn("fastapi_sql", f"/todos{row}") as s:
                runs["fastapi"].append(wrk("  fastapi (aiosqlite)", s, row))
            runs["cello-pg"].append(todos_run("  cello (PostgreSQL)", state, row, config))
            env = {"BENCH_POSTGRES_URL": pg.url("fastapi")}
            with uvicorn("fastapi_pg", f"/todos{row}", env) as s:
                runs["fastapi-pg"].append(wrk("  fastapi (asyncpg)", s, row))
    return medians(runs, SQL_NAMES)


def sql_section(loads: list[Load]) -> list[str]:
    """The SQL section of RESULTS.md."""
    cello_load, fastapi_load, cello_pg, fastapi_pg = loads
    lines = [
        "## SQL",
        "",
        f"`GET /todos/{SQL_ROWS // 2}` of the Python todos example (the SQL capability; the "
        "route's dependency runs one `SELECT` by primary key) against the same route on "
        f"FastAPI, over {SQL_ROWS} rows: on SQLite (a WAL-mode file; aiosqlite for FastAPI) "
        "and on PostgreSQL (a local server started by the bench; asyncpg for FastAPI, "
        f"{PG_CONNECTIONS} connections for each). Alternating runs; each row is the median "
        "of 3. FastAPI runs one uvicorn worker, as in the throughput rows; under load cello "
        "spreads the component's event loops over the cores (docs/architecture.md, "
        '"Instances"), so req/CPU-s compares the two per core.',
        "",
    ]
    lines += load_table("system", loads)
    lines += ["", *TARGETS_HEAD]
    for backend, ours, theirs in (
        ("SQLite", cello_load, fastapi_load),
        ("PostgreSQL", cello_pg, fastapi_pg),
    ):
        lines += [
            target_row(f"cello ÷ FastAPI, {backend} read (req/s)", ours.rps / theirs.rps, 1.0),
            target_row(
                f"FastAPI p99 ÷ cello p99, {backend} read", theirs.p99_ms / ours.p99_ms, 1.0
            ),
        ]
    lines.append("")
    return lines


#: The items example's sidecar: its items in the host's key-value store.
ITEMS = 'prefix = "/shop"\n[grants]\nkv = true\n'
KV_ITEMS = 20
KV_NAMES = {
    "redb": "cello-host, Python items: list 20 (kv.redb)",
    "redis": "cello-host, Python items: list 20 ([cluster] redis)",
}


@contextmanager
def redis_server():
    """A throwaway redis-server on a free loopback port; yields its URL."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="redis-")
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(7) == b"+PONG\r\n":
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def seed_items(url: str) -> None:
    """Adds KV_ITEMS items through the component's create route."""
    for i in range(KV_ITEMS):
        body = json.dumps({"name": f"item {i}", "price": 1.0, "tags": ["bench"]}).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 201, reply.status


def kv_reads(state: Path, rounds: int = 3) -> list[Load]:
    """The Python items example's list route (a prefix listing and one read
    per item: 21 KV calls a request) on kv.redb and on a local Redis,
    alternately, `rounds` times each; each row is the median run."""
    print("kv: the items list route, on redb and on Redis alternately", flush=True)
    runs: dict[str, list[Load]] = {"redb": [], "redis": []}
    with redis_server() as url:
        for _ in range(rounds):
            for backend, config in (("redb", None), ("redis", f'[cluster]\nredis = "{url}"\n')):
                # A fresh store each run, with the shared compile cache.
                kv_state = Path(tempfile.mkdtemp(prefix="kv-"))
                (state / "cache").mkdir(parents=True, exist_ok=True)
                (kv_state / "cache").symlink_to(state / "cache", target_is_directory=True)
                directory = component_dir("items", sidecars={"items": ITEMS})
                with cello(directory, "/shop/items", kv_state, config=config) as s:
                    if backend == "redis":
                        subprocess.run(["redis-cli", "-u", url, "FLUSHALL"], check=True)
                    seed_items(s.url)
                    runs[backend].append(wrk(f"  {backend}", s, f"/items?limit={KV_ITEMS}"))
    return medians(runs, KV_NAMES)


def kv_section(loads: list[Load]) -> list[str]:
    """The key-value section of RESULTS.md."""
    redb, redis = loads
    lines = [
        "## Key-value: redb and Redis",
        "",
        f"`GET /shop/items?limit={KV_ITEMS}` of the Python items example: one prefix "
        f"listing and {KV_ITEMS} reads of the key-value store a request, on the embedded "
        "redb file and on a redis-server on this machine (`[cluster] redis`, what hosts of "
        "a cluster share). Alternating runs; each row is the median of 3.",
        "",
    ]
    lines += load_table("store", loads)
    lines += [
        "",
        f"Redis ÷ redb: {redis.rps / redb.rps:.2f}× the requests per second, "
        f"{redis.p99_ms / redb.p99_ms:.2f}× the p99.",
    ]
    return lines


#: Clients the SSE section holds open at once, and events each is sent.
SSE_CLIENTS = 1000
SSE_EVENTS = 10
#: A client's events are on time when each came within this many seconds
#: of when the guest sent it.
SSE_LATE_S = 0.5
#: Async calls (streams among them) one instance holds, for the SSE section.
SSE_SIDECAR = "[limits]\nasync-concurrency = 1000\nmax-instances = 4\nqueue = 1000\n"


async def sse_client(host: str, port: int, path: str) -> tuple[int, float]:
    """Reads one SSE stream to its end over a raw socket: how many events
    came, and the most any came after the guest sent it, in seconds."""
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    await writer.drain()
    events, late = 0, 0.0
    try:
        while line := await reader.readline():
            if line.startswith(b"data: "):
                late = max(late, time.time() - float(line[6:].strip()))
                events += 1
                if events == SSE_EVENTS:
                    break
    finally:
        writer.close()
    return events, late


def sse(state: Path) -> dict[str, float]:
    """SSE_CLIENTS clients each reading SSE_EVENTS events a second apart
    from the Python app, at once: host memory per open stream (resident
    set with them open, less idle, over the clients), instances used, and
    whether every client got its events on time."""
    import asyncio

    print(f"sse: {SSE_CLIENTS} clients, an event a second each", flush=True)
    directory = component_dir("bench-python", sidecars={"bench-python": SSE_SIDECAR})
    ops = free_port()
    # Every client comes from 127.0.0.1: past the default 256 per address.
    config = f"[server]\nmax-connections-per-ip = {SSE_CLIENTS + 16}\n"
    with cello(directory, "/sync", state, ops=ops, config=config) as s:
        port = int(s.url.split(":")[2].split("/")[0])
        # The async instance warm: the idle figure includes it.
        get(s.url.rsplit("/", 1)[0] + "/async")
        time.sleep(1.0)
        idle = s.rss_bytes()
        peak = [idle, 0.0]

        async def run() -> list[tuple[int, float]]:
            async def watch() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    peak[0] = max(peak[0], s.rss_bytes())
                    live = metric(ops, "cello_instances_live", "bench-python")
                    peak[1] = max(peak[1], live)

            watcher = asyncio.ensure_future(watch())
            path = f"/events/{SSE_EVENTS}"
            clients = [sse_client("127.0.0.1", port, path) for _ in range(SSE_CLIENTS)]
            try:
                return await asyncio.gather(*clients)
            finally:
                watcher.cancel()

        results = asyncio.run(run())
    complete = sum(1 for events, _ in results if events == SSE_EVENTS)
    on_time = sum(1 for events, late in results if events == SSE_EVENTS and late < SSE_LATE_S)
    figures = {
        "clients": SSE_CLIENTS,
        "KiB per stream": (peak[0] - idle) / SSE_CLIENTS / 1024,
        "instances": peak[1],
        "complete": complete,
        "on time": on_time,
        "latest s": max(late for _, late in results),
    }
    print(
        f"  {figures['KiB per stream']:.1f} KiB per stream, {peak[1]:.0f} instances, "
        f"{complete} complete, {on_time} on time (latest {figures['latest s']:.2f} s)",
        flush=True,
    )
    return figures


def sse_section(figures: dict[str, float]) -> list[str]:
    """The SSE section of RESULTS.md."""
    return [
        "## Server-sent events",
        "",
        f"{figures['clients']:.0f} clients at once, each reading {SSE_EVENTS} events sent a "
        "second apart by the Python app's `EventSourceResponse` route "
        "(`async-concurrency = 1000`, `max-instances = 4`, `queue = 1000`).",
        "",
        "| host memory per stream | instances | complete | on time (< "
        f"{SSE_LATE_S} s late) | latest event |",
        "|---:|---:|---:|---:|---:|",
        f"| {figures['KiB per stream']:.1f} KiB | {figures['instances']:.0f} | "
        f"{figures['complete']:.0f} | {figures['on time']:.0f} | "
        f"{figures['latest s']:.2f} s |",
    ]


def replace_section(text: str, section: list[str]) -> str:
    """`text` with the section titled as `section`'s first line replaced
    (or added before the chart)."""
    title = section[0]
    # One blank line after the section, whatever its last line.
    body = "\n".join(section).rstrip("\n") + "\n"
    start = text.find(title + "\n")
    if start < 0:
        chart = text.find("![requests per second]")
        chart = len(text) if chart < 0 else chart
        return text[:chart] + body + "\n" + text[chart:]
    end = text.find("\n## ", start + len(title))
    chart = text.find("\n![requests per second]", start)
    ends = [e for e in (end, chart) if e >= 0]
    end = min(ends) + 1 if ends else len(text)
    return text[:start] + body + "\n" + text[end:]


def middleware_chain(state: Path, rounds: int = 3) -> list[Load]:
    """The Rust hello with the middleware chain off and on, alternately,
    `rounds` times each with the same requests; each row is the median run,
    since single runs on this machine vary by ±10%."""
    headers = {"Authorization": f"Bearer {bench_token()}", "Origin": "https://app.example"}
    runs: dict[str, list[Load]] = {"off": [], "on": []}
    for _ in range(rounds):
        for which, config in (("off", CHAIN_OFF), ("on", CHAIN_ON)):
            with cello(component_dir("hello-rust"), "/", state, config=config) as s:
                runs[which].append(wrk(f"  chain {which}", s, "/", headers))
    names = {
        "off": "cello-host, Rust SDK hello, middleware off",
        "on": "cello-host, Rust SDK hello, full middleware chain",
    }
    return medians(runs, names)


#: The hello targets' ratios, one per alternating round: cello's wasi:http
#: hello ÷ `wasmtime serve` (reuse 128), and the Rust SDK hello, built by
#: default and with the `sync` feature, ÷ native hyper.
HelloRatios = dict[str, list[float]]


def throughput_quick(
    state: Path, base: Path | None, base_hello: Path | None, rounds: int = 3
) -> tuple[list[str], HelloRatios]:
    """`run.py throughput-quick [BASE [BASE_HELLO]]` and part of `make
    bench`: only the rows the throughput targets compare (native hyper,
    `wasmtime serve` with reuse, cello's wasi:http hello and Rust SDK
    hello), in alternating rounds, each row the median of `rounds`; with
    BASE, another cello-host binary's two rows beside them (serving
    BASE_HELLO as its Rust hello when given, for a host that cannot load
    today's), for a before/after from one run. Prints, and returns the
    section of RESULTS.md it replaces and each round's hello ratios."""
    print(f"throughput-quick: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, {rounds} rounds", flush=True)
    hosts = {"": (HOST, "hello-rust")}
    sync = {"Rust SDK hello, sync build": "hello-rust-sync"}
    if base:
        if base_hello:
            shutil.copy(base_hello, COMPONENTS / "hello-rust-base.wasm")
        hosts[" (base)"] = (base, "hello-rust-base" if base_hello else "hello-rust")
    runs: dict[str, list[Load]] = {}
    for _ in range(rounds):
        with Server(
            [str(HYPER), f"127.0.0.1:{(port := free_port())}"], f"http://127.0.0.1:{port}/"
        ) as s:
            runs.setdefault("native hyper", []).append(wrk("native hyper", s, "/"))
        with wasmtime_serve(["--max-instance-reuse-count", "128"]) as s:
            name = "wasmtime serve, wasi:http hello (reuse 128)"
            runs.setdefault(name, []).append(wrk(name, s, "/"))
        for label, (host, hello) in hosts.items():
            helloes = {"wasi:http hello": "http-proxy", "Rust SDK hello": hello}
            for what, component in (helloes | (sync if not label else {})).items():
                name = f"cello-host{label}, {what}"
                with cello(component_dir(component), "/", state, host=host) as s:
                    runs.setdefault(name, []).append(wrk(name, s, "/"))
    serve_name = "wasmtime serve, wasi:http hello (reuse 128)"

    def per_round(name: str, against: str) -> list[float]:
        return [
            ours.rps / theirs.rps for ours, theirs in zip(runs[name], runs[against], strict=True)
        ]

    ratios = {
        "wasi:http": per_round("cello-host, wasi:http hello", serve_name),
        "rust": per_round("cello-host, Rust SDK hello", "native hyper"),
        "sync": per_round("cello-host, Rust SDK hello, sync build", "native hyper"),
    }
    named = medians(runs, {name: name for name in runs})
    rows = {load.name.rsplit(" (median", 1)[0]: load for load in named}
    hyper = rows["native hyper"]
    serve = rows[serve_name]
    heads = f"{'req/s':>10} {'req/CPU-s':>10} {'CPU µs':>7} {'× hyper':>8} {'× serve':>8}"
    print(f"\n{'medians':58} {heads}")
    table = [
        "| system | req/s | req/CPU-s | CPU µs per request | × native hyper | × `wasmtime serve` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, load in rows.items():
        us = 1e6 / load.per_cpu_second if load.per_cpu_second else 0.0
        print(
            f"{name:58} {load.rps:>10,.0f} {load.per_cpu_second:>10,.0f} {us:>7.2f} "
            f"{load.rps / hyper.rps:>8.2f} {load.rps / serve.rps:>8.2f}"
        )
        table.append(
            f"| {name} | {load.rps:,.0f} | {load.per_cpu_second:,.0f} | {us:.1f} | "
            f"{load.rps / hyper.rps:.2f} | {load.rps / serve.rps:.2f} |"
        )
    section = [
        "## Throughput targets, re-measured",
        "",
        f"Made by `make bench` or `run.py throughput-quick` on {time.strftime('%Y-%m-%d')}: "
        f"the rows the throughput targets compare, wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, "
        f"{rounds} alternating rounds, each row the median run. Absolute figures vary from "
        "day to day on this shared machine (compare native hyper here with the throughput "
        "table's); the ratios within one run are what to read. Each target is the median "
        "of the rounds' ratios (each round's servers measured one after another), as the "
        "p3 target is; the table's × columns divide the median rows.",
        *(
            ["", f"The rows marked (base): {os.environ['BENCH_BASE_NAME']}."]
            if base and os.environ.get("BENCH_BASE_NAME")
            else []
        ),
        "",
        *table,
        "",
        *TARGETS_HEAD,
        *hello_targets(ratios),
        "",
    ]
    return section, ratios


#: The Rust hello built with cello-sdk's `sync` feature, as rows name it.
SYNC_ROW = "cello-host, Rust SDK hello route, sync build"


def hello_targets(ratios: HelloRatios) -> list[str]:
    """The hello targets' rows, each the median of its rounds' ratios (the
    rounds listed): cello's wasi:http hello against `wasmtime serve` with
    reuse, and the Rust SDK hello, as built by default and with the `sync`
    feature, against native hyper."""

    def row(label: str, which: str, goal: float) -> str:
        rounds = ", ".join(f"{ratio:.2f}" for ratio in ratios[which])
        label = f"{label} (req/s; rounds {rounds})"
        return target_row(label, statistics.median(ratios[which]), goal)

    return [
        row("cello wasi:http ÷ `wasmtime serve`, reuse 128", "wasi:http", 1.2),
        row("Rust SDK hello ÷ native hyper", "rust", 0.7),
        row("Rust SDK hello, sync build ÷ native hyper", "sync", 0.7),
    ]


#: The p3 rows: `wasmtime serve` with its p3 defaults (an instance reused
#: for 128 requests, 16 at once) and cello on the same component.
P3_NAMES = {
    "wasmtime": "wasmtime serve, wasi:http 0.3 hello (reuse 128, 16 at once)",
    "cello": "cello-host, the same wasi:http 0.3 hello",
}


def p3_hello(state: Path, rounds: int = 3) -> tuple[list[Load], float]:
    """The p3 hello (the p3-testbed test guest's `/hello`) on `wasmtime
    serve` and on cello, alternately, `rounds` times each: each row is the
    median run, and the ratio the median of the rounds' ratios."""
    print("p3: a wasi:http 0.3 hello, wasmtime serve and cello alternately", flush=True)
    runs: dict[str, list[Load]] = {name: [] for name in P3_NAMES}
    for _ in range(rounds):
        with wasmtime_serve([], "p3-hello", "/hello") as s:
            runs["wasmtime"].append(wrk("  wasmtime serve (p3)", s, "/hello"))
        with cello(component_dir("p3-hello"), "/hello", state) as s:
            runs["cello"].append(wrk("  cello (p3)", s, "/hello"))
    rounds_run = zip(runs["cello"], runs["wasmtime"], strict=True)
    ratios = [ours.rps / theirs.rps for ours, theirs in rounds_run]
    return medians(runs, P3_NAMES), statistics.median(ratios)


def p3_section(measured: tuple[list[Load], float]) -> list[str]:
    """The p3 section of RESULTS.md."""
    loads, ratio = measured
    theirs, ours = loads
    lines = [
        "## wasi:http 0.3 (p3) hello",
        "",
        "A `wasi:http/service@0.3` component (the `p3-testbed` test guest, built with the "
        "`wasip3` crate; `GET /hello`) on `wasmtime serve` 50 with its p3 defaults and on "
        "cello with its defaults (one warm instance serves up to `p3-concurrency` = 16 "
        f"requests at once). wrk -t1 -c{CONNECTIONS} -d{SECONDS}s; alternating runs, each "
        "row the median of 3, the ratio the median of the three rounds' ratios.",
        "",
    ]
    lines += load_table("system", loads)
    lines += [
        "",
        *TARGETS_HEAD,
        target_row("cello ÷ best `wasmtime serve`, p3 hello (req/s)", ratio, 1.2),
        target_row(
            "cello ÷ `wasmtime serve`, p3 hello (req/CPU-s)",
            ours.per_cpu_second / theirs.per_cpu_second,
            1.0,
        ),
        "",
    ]
    return lines


def medians(runs: dict[str, list[Load]], names: dict[str, str]) -> list[Load]:
    """Each set of alternating runs' median by req/s, named from `names`."""
    rows = []
    for which, loads in runs.items():
        median = sorted(loads, key=lambda load: load.rps)[len(loads) // 2]
        median.name = f"{names[which]} (median of {len(loads)})"
        rows.append(median)
    return rows


#: The cold start row with only another Python component compiled before.
FUNCTIONS_CACHED = "empty compile cache, another Python component compiled before"


#: Alternating rounds of the two cold rows; each row is their median.
COLD_ROUNDS = 3


def cold_start(_state: Path | None = None) -> dict[str, float]:
    """First 200 after process start for the Python component: compile
    cache empty, empty but for another Python component (whose functions
    the function cache holds), and warm."""
    print("cold start: Python component, first response after process start", flush=True)
    directory = component_dir("bench-python")
    items = component_dir("items", sidecars={"items": "[grants]\nkv = true\n"})
    empty, cached = [], []
    for _ in range(COLD_ROUNDS):
        state = Path(tempfile.mkdtemp(prefix="cello-bench-state-"))
        with cello(directory, "/sync", state) as s:
            empty.append(time.perf_counter() - s.started)
        other = Path(tempfile.mkdtemp(prefix="cello-bench-state-"))
        with cello(items, "/items/", other):
            pass
        with cello(directory, "/sync", other) as s:
            cached.append(time.perf_counter() - s.started)
    warm = []
    for _ in range(5):
        with cello(directory, "/sync", state) as s:
            warm.append(time.perf_counter() - s.started)
    figures = {
        f"empty compile cache (median of {COLD_ROUNDS})": statistics.median(empty),
        f"{FUNCTIONS_CACHED} (median of {COLD_ROUNDS})": statistics.median(cached),
        "warm compile cache (median of 5)": statistics.median(warm),
    }
    for name, seconds in figures.items():
        print(f"  {name:40} {seconds * 1000:8.1f} ms", flush=True)
    return figures


def cold_section(cold: dict[str, float]) -> list[str]:
    """The cold start section of RESULTS.md."""
    lines = [
        "## Cold start (Python component)",
        "",
        "First 200 response, measured from process start. The middle row starts with the "
        "compile cache holding only the Python items example: the bench app's own artifact "
        "is not there, but the functions it shares with it (all of CPython) are, in "
        'the function cache (`docs/operations.md`, "The compile cache").',
        "",
        "| compile cache | first response |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {seconds * 1000:.1f} ms |" for name, seconds in cold.items()]
    empty = next((v for k, v in cold.items() if k.startswith("empty compile cache (")), None)
    cached = next((v for k, v in cold.items() if k.startswith(FUNCTIONS_CACHED)), None)
    if empty and cached:
        ratio = empty / cached
        lines += [
            "",
            f"With the function cache, the first response comes {ratio:.1f}× sooner "
            f"(alternating rounds).",
        ]
    return lines + [""]


def instantiation(state: Path) -> dict[str, float]:
    """Mean time to create an instance, from the host's own histogram."""
    print("instantiation: per-request isolation, 200 sequential requests each", flush=True)
    sidecars = {
        "hello-rust": 'prefix = "/rs"\n' + PER_REQUEST,
        "bench-python": 'prefix = "/py"\n' + PER_REQUEST,
        "http-proxy": 'prefix = "/proxy"\n' + PER_REQUEST,
    }
    directory = component_dir(*sidecars, sidecars=sidecars)
    ops = free_port()
    figures = {}
    with cello(directory, "/rs/", state, ops=ops) as s:
        base = s.url.rsplit("/rs/", 1)[0]
        routes = [("hello-rust", "/rs/"), ("bench-python", "/py/sync"), ("http-proxy", "/proxy/")]
        for component, path in routes:
            for _ in range(200):
                assert get(base + path)[0] == 200
            total = metric(ops, "cello_instantiation_duration_seconds_sum", component)
            count = metric(ops, "cello_instantiation_duration_seconds_count", component)
            figures[component] = total / count
            print(f"  {component:20} {figures[component] * 1000:8.3f} ms", flush=True)
    return figures


def call_cost(state: Path) -> float:
    """Microseconds per call on the Rust hello's `def` route, in process, no HTTP."""
    print("call cost: the Rust hello's route called in process, no HTTP", flush=True)
    out = subprocess.run(
        [str(CALL_COST), str(COMPONENTS / "hello-rust.wasm"), str(state)],
        check=True,
        capture_output=True,
        text=True,
    )
    micros = float(out.stdout.split()[-1])
    print(f"  {micros:.2f} µs per call", flush=True)
    return micros


#: Instances the memory figure is measured over, beyond the first two.
MEMORY_INSTANCES = 16
#: Fresh hosts the memory figure is measured on; the median is reported.
MEMORY_ROUNDS = 3


def memory(state: Path) -> dict[str, float]:
    """Resident memory each idle warm Python instance adds: the growth from
    two warm instances to MEMORY_INSTANCES, so memory the process frees
    after loading (the compiler's, the describe instance's) is not counted.
    Measured on MEMORY_ROUNDS fresh hosts; the median round is reported."""
    print("memory: resident set per idle warm Python instance", flush=True)
    directory = component_dir("bench-python")
    rounds = sorted(memory_round(directory, state) for _ in range(MEMORY_ROUNDS))
    per_instance, added = rounds[len(rounds) // 2]
    return {
        "instances added": added,
        "MiB per instance": per_instance,
        "lowest": rounds[0][0],
        "highest": rounds[-1][0],
    }


def memory_round(directory: Path, state: Path) -> tuple[float, float]:
    """MiB per instance added on one fresh host, and how many were added."""
    ops = free_port()
    with cello(directory, "/sync", state, ops=ops) as s:
        base = s.url.rsplit("/", 1)[0]

        def warm(instances: int) -> tuple[int, float]:
            # Requests that each hold their own instance for a second, sent
            # at once, so the count does not depend on timing.
            with concurrent.futures.ThreadPoolExecutor(instances) as pool:
                list(pool.map(lambda _: get(base + "/busy/1000", 30.0), range(instances)))
            time.sleep(1.0)
            return s.rss_bytes(), metric(ops, "cello_instances_live", "bench-python")

        before_rss, before = warm(2)
        after_rss, after = warm(MEMORY_INSTANCES)
    added = after - before
    per_instance = (after_rss - before_rss) / added / 2**20 if added else 0.0
    print(f"  {added:.0f} instances added {per_instance:.1f} MiB each", flush=True)
    return per_instance, added


def load_table(first: str, loads: list[Load]) -> list[str]:
    """A table of `loads`, one row each, its first column headed `first`."""
    return [
        f"| {first} | req/s | p50 ms | p99 ms | req/CPU-s | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ] + [
        f"| {load.name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | "
        f"{load.per_cpu_second:,.0f} | {load.errors} |"
        for load in loads
    ]


#: The head of a targets table.
TARGETS_HEAD = ["| target | measured | goal | |", "|---|---:|---:|---|"]


def target_row(label: str, value: float, goal: float, at_most: bool = False) -> str:
    """A row of a targets table: `value` against `goal` (a floor, or with
    `at_most` a ceiling)."""
    met = value <= goal if at_most else value >= goal
    sign = "≤" if at_most else "≥"
    # A third decimal where two would round a miss onto the goal.
    shown = f"{value:.2f}"
    if not met and shown == f"{goal:.2f}":
        shown = f"{value:.3f}"
    return f"| {label} | {shown} | {sign} {goal:.2f} | {'met' if met else '**not met**'} |"


def write_results(loads, hello, cold, inst, mem, isolated, call_us, sql, kv) -> None:
    by_name = {load.name: load for load in loads}
    hyper = by_name["native hyper"]
    best_wasmtime = max(
        (load for load in loads if load.name.startswith("wasmtime serve")),
        key=lambda load: load.rps,
    )
    starlette = by_name["Starlette + uvicorn, hello (async def)"]
    fastapi = by_name["FastAPI + uvicorn, hello (def)"]
    lines = [
        "# Benchmark results",
        "",
        f"Made by `make bench` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores, "
        f"{platform.machine()}, load from `wrk -t1 -c{CONNECTIONS} -d{SECONDS}s` over loopback, "
        "server and wrk sharing the machine. Each server ran alone. *req/CPU-s* is requests "
        "served per second of the server's own CPU time, the fair figure when server and "
        "load generator share cores.",
        "",
        "## Throughput",
        "",
        "| system | req/s | p50 ms | p99 ms | req/CPU-s | × native hyper "
        "| × best `wasmtime serve` | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        lines.append(
            f"| {load.name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | "
            f"{load.per_cpu_second:,.0f} | {load.rps / hyper.rps:.2f} | "
            f"{load.rps / best_wasmtime.rps:.2f} | {load.errors} |"
        )

    target = target_row

    py_sync = by_name["cello-host, Python SDK hello (def)"]
    py_async = by_name["cello-host, Python SDK hello (async def)"]
    lines += [
        "",
        "## Against the targets",
        "",
        *TARGETS_HEAD,
        # From the alternating rounds ("Throughput targets, re-measured"),
        # not the single runs above.
        *hello_targets(hello),
        target(
            "Rust hello, full middleware chain ÷ middleware off (req/s)",
            by_name["cello-host, Rust SDK hello, full middleware chain (median of 3)"].rps
            / by_name["cello-host, Rust SDK hello, middleware off (median of 3)"].rps,
            0.9,
        ),
        target("Python def ÷ Starlette (req/s)", py_sync.rps / starlette.rps, 1.0),
        target(
            "Python def ÷ Starlette (req/CPU-s)",
            py_sync.per_cpu_second / starlette.per_cpu_second,
            1.0,
        ),
        target("Python def ÷ FastAPI (req/s)", py_sync.rps / fastapi.rps, 2.4),
        target("Python async def ÷ def (req/s), within 1.5×", py_async.rps / py_sync.rps, 1 / 1.5),
        target(
            "cached 5 ms Python route ÷ Rust SDK hello (req/s)",
            by_name["cello-host, the same route, cached (@cache)"].rps
            / by_name["cello-host, Rust SDK hello route"].rps,
            0.8,
        ),
        target(
            "50 ms ÷ Python first response, warm compile cache",
            0.050 / cold["warm compile cache (median of 5)"],
            1.0,
        ),
        "",
        "## Where the Rust hello's time goes",
        "",
        "Server CPU per request, from the throughput runs above, and the cost of the guest "
        "call alone: the Rust hello's `def` route called in a loop in one process (the host's "
        "instance pool, the call through wasmtime, the guest), with no HTTP, by "
        "`target/production/call-cost`.",
        "",
        "| | µs of CPU |",
        "|---|---:|",
        f"| native hyper, one request | {1e6 / hyper.per_cpu_second:.1f} |",
        f"| cello-host, one request to the Rust hello | "
        f"{1e6 / by_name['cello-host, Rust SDK hello route'].per_cpu_second:.1f} |",
        f"| one call on the Rust hello's route, in process | {call_us:.1f} |",
        "",
    ]
    lines += cold_section(cold)
    lines += [
        "## Instantiation",
        "",
        "Mean time to create an instance (on-start included), from the host's "
        "`cello_instantiation_duration_seconds`, over 200 requests with per-request isolation.",
        "",
        "| component | instantiation |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {seconds * 1000:.3f} ms |" for name, seconds in inst.items()]
    lines += [
        "",
        "## Memory",
        "",
        f"Resident memory added per idle warm Python instance: "
        f"**{mem['MiB per instance']:.1f} MiB** (the median of {MEMORY_ROUNDS} fresh hosts, "
        f"which ranged from {mem['lowest']:.1f} to {mem['highest']:.1f} MiB; on each, "
        f"{mem['instances added']:.0f} instances made warm beyond two by {MEMORY_INSTANCES} "
        "requests that hold their instance for 1 s, sent at once, and RSS measured with two "
        "and with all of them warm).",
        "",
    ]
    lines += isolation_section(isolated)
    lines += ["", *sql_section(sql)]
    lines += ["", *kv_section(kv)]
    lines += [
        "![requests per second](results.png)",
        "",
    ]
    (BENCH / "RESULTS.md").write_text("\n".join(lines))
    chart(loads)


def chart(loads) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [load.name for load in loads][::-1]
    rps = [load.rps for load in loads][::-1]
    colors = ["#b5651d" if n.startswith("cello") else "#888888" for n in names]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(names) + 1.2))
    bars = ax.barh(names, rps, color=colors)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in rps], padding=3, fontsize=8)
    ax.set_xlabel(
        f"requests per second (wrk -t1 -c{CONNECTIONS}, loopback, {os.cpu_count()} cores)"
    )
    ax.set_title("Hello world: Cello (brown) and the baselines")
    ax.set_xlim(0, max(rps) * 1.15)
    fig.tight_layout()
    fig.savefig(BENCH / "results.png", dpi=120)


def copy_components() -> None:
    COMPONENTS.mkdir(parents=True, exist_ok=True)
    for name in ["hello-rust", "http-proxy", "todos", "items"]:
        shutil.copy(ROOT / "components" / f"{name}.wasm", COMPONENTS / f"{name}.wasm")
    # Built by `make p3-hello` and `make sync-hello`, which only the targets
    # with their rows run.
    if P3_HELLO.exists():
        shutil.copy(P3_HELLO, COMPONENTS / "p3-hello.wasm")
    if SYNC_HELLO.exists():
        shutil.copy(SYNC_HELLO, COMPONENTS / "hello-rust-sync.wasm")


def build_python_app() -> None:
    copy_components()
    python = ROOT / ".venv/bin/python"
    subprocess.run(
        [
            str(python),
            "-m",
            "cello",
            "build",
            "cello_app.py",
            "-o",
            str(COMPONENTS / "bench-python.wasm"),
        ],
        cwd=BENCH / "apps",
        check=True,
    )


def instruction_counts(state: Path) -> list[instructions.Count]:
    """The rows of `run.py instructions`: native hyper, the Rust hello's
    route on cello (built as by default, and with the `sync` feature), a
    path of it no route matches, the route's call alone, and the wasi:http
    hello on `wasmtime serve` (reusing instances) and on cello."""
    print("instructions per request, counted by callgrind", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="callgrind-"))
    url = f"http://127.0.0.1:{free_port()}"
    hyper = [str(HYPER), url.removeprefix("http://")]
    hyper_out = scratch / "hyper"
    counts = [
        instructions.server("native hyper", hyper, url + "/", url + "/", hyper_out, wait_until_ok)
    ]
    no_route = "cello-host, a path no route matches (404, no guest call)"
    routes = [
        ("hello-rust", "cello-host, Rust SDK hello route", "/"),
        ("hello-rust-sync", SYNC_ROW, "/"),
        ("hello-rust", no_route, "/no-such-route"),
        ("http-proxy", instructions.CELLO_WASI_HELLO, "/"),
    ]
    for component, name, path in routes:
        directory = component_dir(component)
        # Compiled natively first: under callgrind compiling takes minutes.
        with cello(directory, "/", state):
            pass
        port = free_port()
        command = cello_command(directory, state, port)
        url = f"http://127.0.0.1:{port}"
        out = scratch / f"cello-{len(counts)}"
        counts.append(
            instructions.server(
                name, command, url + "/", url + path, out, wait_until_ok, env=CELLO_ENV
            )
        )
    for component, name, extra in instructions.CALLS:
        wasm = COMPONENTS / f"{component}.wasm"
        counts.append(instructions.call(CALL_COST, wasm, state, scratch, name, extra))
    reuse = ["--max-instance-reuse-count", "128"]
    # Compiled natively first, into wasmtime's own cache, as cello's are.
    with wasmtime_serve(reuse):
        pass
    serve, url = wasmtime_serve_command(reuse)
    name = instructions.WASMTIME_SERVE
    out = scratch / "wasmtime-serve"
    counts.append(instructions.server(name, serve, url, url, out, wait_until_ok))
    return counts


def main() -> None:
    if sys.argv[1:] == ["instructions"]:
        copy_components()
        return only_section("instructions", instruction_counts, instructions.section)
    if sys.argv[1:2] == ["throughput-quick"]:
        copy_components()
        base = Path(sys.argv[2]) if sys.argv[2:] else None
        base_hello = Path(sys.argv[3]) if sys.argv[3:] else None
        scratch = tempfile.mkdtemp(prefix="cello-bench-")
        tempfile.tempdir = scratch
        try:
            section, _ = throughput_quick(Path(tempfile.mkdtemp(prefix="state-")), base, base_hello)
        finally:
            tempfile.tempdir = None
            shutil.rmtree(scratch, ignore_errors=True)
        results = BENCH / "RESULTS.md"
        results.write_text(replace_section(results.read_text(), section))
        print(f"updated the re-measured throughput section of {results}")
        return None
    build_python_app()
    if sys.argv[1:] == ["sql"]:
        return only_section("SQL", sql_reads, sql_section)
    if sys.argv[1:] == ["kv"]:
        return only_section("key-value", kv_reads, kv_section)
    if sys.argv[1:] == ["isolation"]:
        return only_section("tenant isolation", isolation, isolation_section)
    if sys.argv[1:] == ["sse"]:
        return only_section("SSE", sse, sse_section)
    if sys.argv[1:] == ["cluster"]:
        return only_section("upload-to-everywhere", upload_everywhere, cluster.section)
    if sys.argv[1:] == ["p3"]:
        return only_section("p3", p3_hello, p3_section)
    if sys.argv[1:] == ["cold"]:
        return only_section("cold start", cold_start, cold_section)
    # Every directory the run makes (components, state, tenants) goes under
    # this one, removed at the end: a run leaves nothing behind.
    scratch = tempfile.mkdtemp(prefix="cello-bench-")
    tempfile.tempdir = scratch
    try:
        state = Path(tempfile.mkdtemp(prefix="state-"))
        loads = throughput(state)
        quick, hello = throughput_quick(state, None, None)
        cold = cold_start()
        inst = instantiation(state)
        mem = memory(state)
        isolated = isolation(state)
        call_us = call_cost(state)
        sql = sql_reads(state)
        kv = kv_reads(state)
        everywhere = upload_everywhere(state)
        streams = sse(state)
        p3 = p3_hello(state)
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)
    results = BENCH / "RESULTS.md"
    before = results.read_text() if results.exists() else ""
    write_results(loads, hello, cold, inst, mem, isolated, call_us, sql, kv)
    results.write_text(replace_section(results.read_text(), quick))
    results.write_text(replace_section(results.read_text(), cluster.section(everywhere)))
    results.write_text(replace_section(results.read_text(), sse_section(streams)))
    results.write_text(replace_section(results.read_text(), p3_section(p3)))
    results.write_text(kept_sections(before, results.read_text()))
    print(f"wrote {BENCH / 'RESULTS.md'} and {BENCH / 'results.png'}")


def kept_sections(before: str, after: str) -> str:
    """`after` with the sections of `before` that it lacks (those the whole
    run does not write: `run.py instructions`'s, and
    any written by hand) added back before the chart."""
    for section in re.split(r"\n(?=## )", before)[1:]:
        title = section.split("\n", 1)[0]
        if title + "\n" not in after:
            kept = section.split("\n![requests per second]", 1)[0]
            after = replace_section(after, kept.rstrip("\n").split("\n"))
    return after


def only_section(title: str, measure, section) -> None:
    """`run.py sql`, `run.py kv`, `run.py cluster` or `run.py p3`: those
    rows alone, replacing their section of RESULTS.md."""
    scratch = tempfile.mkdtemp(prefix="cello-bench-")
    tempfile.tempdir = scratch
    try:
        loads = measure(Path(tempfile.mkdtemp(prefix="state-")))
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)
    results = BENCH / "RESULTS.md"
    results.write_text(replace_section(results.read_text(), section(loads)))
    print(f"updated the {title} section of {results}")


def upload_everywhere(_state: Path) -> dict[str, float]:
    """The cluster rows: uploads through one of 3 hosts on one PostgreSQL
    (the hosts keep state directories of their own)."""
    wasm = (COMPONENTS / "hello-rust.wasm").read_bytes()
    return cluster.upload_everywhere(HOST, wasm, OPERATOR, free_port, admin)


if __name__ == "__main__":
    main()
