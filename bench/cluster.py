"""The cluster rows of `make bench`: three cello-hosts on one PostgreSQL
(`[cluster] postgres`), and how long an upload through one of them takes to
be served by all three, counted from its 201.

Each upload is the same Rust hello with a new `prefix` in its settings, so
`/t/bench/rN/` answers 200 on a host exactly when it serves upload N. The
first upload is made before the measured ones, so that every host's compile
cache has the bytes: what is measured is the cluster's own delay (notify,
fetch, start, swap), with compile time reported apart.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from postgres import Postgres

UPLOADS = 20
HOSTS = 3


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def upload_everywhere(host: Path, wasm: bytes, operator: str, free_port, admin) -> dict[str, float]:
    """Seconds from each upload's 201 until every host serves it, over
    UPLOADS uploads: p50 and max; and the first (cold cache) apart."""
    print(f"cluster: {UPLOADS} uploads through one of {HOSTS} hosts", flush=True)
    with Postgres() as pg:
        config = Path(tempfile.mkdtemp(prefix="cello-bench-cluster-")) / "cello.toml"
        config.write_text(f'[cluster]\npostgres = "{pg.url("cello")}"\n')
        empty = Path(tempfile.mkdtemp(prefix="cello-bench-empty-"))
        hosts = []
        try:
            for _ in range(HOSTS):
                port, admin_port = free_port(), free_port()
                command = [str(host), "serve", str(empty), "--allow-empty", "--no-watch"]
                command += ["--listen", f"127.0.0.1:{port}", "--config", str(config)]
                command += ["--state-dir", tempfile.mkdtemp(prefix="state-")]
                command += ["--admin-listen", f"127.0.0.1:{admin_port}"]
                command += ["--admin-token", operator]
                process = subprocess.Popen(
                    command,
                    env={**os.environ, "CELLO_LOG": "warn"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                hosts.append((process, port, admin_port))
            for _, port, _ in hosts:
                deadline = time.perf_counter() + 60
                while status(f"http://127.0.0.1:{port}/t/none/") == 0:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("a cluster host did not start")
                    time.sleep(0.05)
            first_admin = hosts[0][2]
            admin(first_admin, "POST", "/v1/tenants", json.dumps({"name": "bench"}).encode())

            def deploy(n: int) -> float:
                path = "/v1/tenants/bench/components/app"
                boundary = "cello-bench-boundary"
                form = b"".join(
                    [
                        f'--{boundary}\r\nContent-Disposition: form-data; name="settings"'
                        f'\r\n\r\nprefix = "/r{n}"\r\n'.encode(),
                        f'--{boundary}\r\nContent-Disposition: form-data; name="component"'
                        "\r\n\r\n".encode(),
                        wasm,
                        f"\r\n--{boundary}--\r\n".encode(),
                    ]
                )
                admin(first_admin, "PUT", path, form, f"multipart/form-data; boundary={boundary}")
                acknowledged = time.perf_counter()
                for _, port, _ in hosts:
                    while status(f"http://127.0.0.1:{port}/t/bench/r{n}/") != 200:
                        if time.perf_counter() - acknowledged > 60:
                            raise RuntimeError(f"upload {n} not served everywhere within 60 s")
                        time.sleep(0.002)
                return time.perf_counter() - acknowledged

            cold = deploy(0)
            times = [deploy(n) for n in range(1, UPLOADS + 1)]
        finally:
            for process, _, _ in hosts:
                process.terminate()
            for process, _, _ in hosts:
                process.wait(timeout=20)
    return {"p50": statistics.median(times), "max": max(times), "cold": cold}


def section(measured: dict[str, float]) -> list[str]:
    """The "Upload to everywhere" section of RESULTS.md."""
    p50, most, cold = (measured[k] * 1000 for k in ("p50", "max", "cold"))
    return [
        "## Upload to everywhere",
        "",
        f"{HOSTS} cello-hosts on one PostgreSQL (`[cluster] postgres`), each with its own "
        f"state directory; {UPLOADS} uploads of the Rust hello through host 1, each with a "
        "new `prefix`, timed from the 201 until all three serve it (the hosts' compile "
        "caches hold the bytes). The first upload, which every host compiles, is apart.",
        "",
        "| measure | ms | target |",
        "|---|---:|---:|",
        f"| p50, {UPLOADS} uploads | {p50:.0f} | 1000 |",
        f"| max, {UPLOADS} uploads | {most:.0f} | 1000 |",
        f"| first upload (cold compile cache) | {cold:.0f} | |",
        "",
    ]
