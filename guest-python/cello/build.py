"""Builds a Python app into a Cello component with componentize-py.

The app module is imported once natively first, so a Python error in it is
reported as a plain Python traceback rather than a componentize-py failure.
That check runs this Python (3.11 or later); the component runs the
CPython that componentize-py bundles (3.14 for 0.25), so an import that
only the newer Python has passes here and is checked again inside the
build, where a failure is reported with its Python traceback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import wasi_packages

ENTRY = "cello_entry"
#: SDK modules whose import means the app uses a host capability, and the
#: WIT interface each one needs.
CAPABILITIES = {
    "cello.kv": "kv",
    "cello.config": "config",
    "cello.http": "outbound",
    "cello.sql": "sql",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cello")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build an app into a component")
    build.add_argument("app", help="the app file, optionally with the App's name: app.py:app")
    build.add_argument("-o", "--output", required=True, help="where to write the .wasm")
    build.add_argument("--wit", help="the WIT directory (default: the one shipped with cello)")
    build.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    args = parser.parse_args(argv)
    try:
        build_component(args.app, Path(args.output), args.wit, quiet=args.quiet)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


class BuildError(Exception):
    """A build failure, with a message for the developer."""


def _stage(quiet: bool):
    """Prints build stages as they start, with the time the last one took."""
    started = [time.monotonic()]

    def say(line: str) -> None:
        if not quiet:
            now = time.monotonic()
            print(f"[{now - started[0]:5.1f}s] {line}", flush=True)

    return say


def build_component(app: str, output: Path, wit: str | None = None, quiet: bool = False) -> None:
    say = _stage(quiet)
    file, _, attr = app.partition(":")
    attr = attr or "app"
    path = Path(file).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise BuildError(f"{file} is not a Python file")
    wit_dir = Path(wit or os.environ.get("CELLO_WIT") or Path(__file__).parent / "wit").resolve()
    if not wit_dir.is_dir():
        raise BuildError(f"WIT directory {wit_dir} not found; pass --wit")
    sdk_parent = Path(__file__).resolve().parent.parent
    module = path.stem
    say(f"checking that {file} imports (natively, Python {sys.version.split()[0]})")
    capabilities, found = _check_imports(path.parent, module, attr, sdk_parent)
    if capabilities:
        say(f"it uses host capabilities: {', '.join(capabilities)}")
    componentize = _componentize_py()
    with tempfile.TemporaryDirectory(prefix="cello-build-") as tmp:
        # First on the path: ahead of a site-packages with native builds.
        packages = Path(tmp) / "wasi-packages"
        staged = "pydantic" in found
        if staged:
            say(f"adding pydantic {found['pydantic'][0]} with pydantic-core built for WASI")
            try:
                wasi_packages.stage_pydantic(found, packages)
            except wasi_packages.Unsupported as error:
                raise BuildError(f"cannot build {file}: {error}") from None
        world = _world(wit_dir, Path(tmp) / "wit", capabilities)
        entry = Path(tmp) / "entry"
        entry.mkdir()
        (entry / f"{ENTRY}.py").write_text(
            # Before the app: its `ProcessPoolExecutor()` must be the inline one.
            "import cello.concurrency\ncello.concurrency.install()\n"
            f"import {module} as _app_module\n"
            # pydantic's lazy imports, into the snapshot: nothing else exists at run time.
            + ("import cello.wasi_packages\ncello.wasi_packages.preload()\n" if staged else "")
            + "from cello._guest import make_streaming, make_world\n"
            f"WitWorld = make_world(_app_module.{attr})\n"
            f"Streaming = make_streaming(_app_module.{attr})\n"
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        say("componentizing with componentize-py (this takes 30-60 s)")
        command = [
            componentize, "-d", str(Path(tmp) / "wit"), "-w", world,
            "componentize", ENTRY,
            "-p", str(packages), "-p", str(entry), "-p", str(path.parent), "-p", str(sdk_parent),
            "-o", str(output.resolve()),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(_explain(file, result.stderr + result.stdout))
    uses = f" (imports {', '.join(capabilities)})" if capabilities else ""
    size = output.stat().st_size / 1e6 if output.exists() else 0
    say(f"built {output} ({size:.1f} MB) from {file}{uses}")


#: Import failures inside the component with a known cause and a fix.
_KNOWN = [
    (
        re.compile(r"No module named '(pydantic_core[\w.]*)'"),
        "pydantic_core is a native extension and its WASI build was not added: the build "
        f"adds pydantic-core {wasi_packages.PYDANTIC_CORE} when the app's own import loads "
        f"pydantic (install `pydantic=={wasi_packages.PYDANTIC}`); or use `from cello import "
        "BaseModel, Field`, which validates the same models with the SDK's own code",
    ),
    (
        re.compile(r"No module named '([\w.]+)'"),
        "the component cannot import {0}: componentize-py packs pure-Python modules "
        "found on the path (and native ones built for WASI); install it beside the "
        "app, or drop the import",
    ),
]


def _explain(file: str, output: str) -> str:
    """componentize-py's failure, trimmed to what the developer can act on:
    a known cause in one line, else the Python traceback without the Rust
    backtrace that follows it."""
    for pattern, sentence in _KNOWN:
        found = pattern.search(output)
        if found:
            return f"cannot build {file}: {sentence.format(*found.groups())}"
    lines = []
    for line in output.splitlines():
        if line.startswith(("Stack backtrace:", "stack backtrace:")):
            break
        if re.match(r"\s+\d+: ", line) or line.strip().startswith("at /"):
            continue
        lines.append(line)
    text = "\n".join(lines).strip()
    traceback = text.rfind("Traceback (most recent call last):")
    if traceback > 0:
        text = text[traceback:]
    return f"componentize-py failed to build {file}:\n{text}"


def _world(wit_dir: Path, into: Path, capabilities: list[str]) -> str:
    """A WIT directory whose world imports exactly ``capabilities`` beside
    the app world, so the component asks the host for nothing it does not
    use; returns the world's name."""
    shutil.copytree(wit_dir, into)
    imports = "".join(f"  import {name};\n" for name in capabilities)
    (into / "cello-build.wit").write_text(
        f"package {_package(wit_dir)};\n\n"
        f"world app-build {{\n  include streaming-app;\n{imports}}}\n"
    )
    return "cello:component/app-build"


def _package(wit_dir: Path) -> str:
    """The contract's package, as its WIT declares it (with its version):
    the world made for a build must be in the same package."""
    for file in sorted(wit_dir.glob("*.wit")):
        declared = re.search(r"^package\s+(cello:component@[^;\s]+)\s*;", file.read_text(), re.M)
        if declared:
            return declared.group(1)
    raise BuildError(f"no `package cello:component@...;` in the WIT at {wit_dir}")


def _check_imports(
    directory: Path, module: str, attr: str, sdk_parent: Path
) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Imports the app natively; an exception in it becomes a BuildError.
    Returns the capabilities (WIT interfaces) the app's imports need, and
    the version and file of each module loaded that has a WASI build here."""
    probe = (
        "import sys, importlib, json\n"
        f"sys.path[:0] = [{str(directory)!r}, {str(sdk_parent)!r}]\n"
        f"m = importlib.import_module({module!r})\n"
        "from cello import App\n"
        f"a = getattr(m, {attr!r}, None)\n"
        "if not isinstance(a, App):\n"
        f"    sys.exit({f'{module}.py defines no cello.App named {attr!r}'!r})\n"
        f"caps = [w for m, w in {CAPABILITIES!r}.items() if m in sys.modules]\n"
        f"mods = [sys.modules.get(n) for n in {wasi_packages.PYDANTIC_MODULES!r}]\n"
        "found = {m.__name__: (getattr(m, '__version__', ''), m.__file__) for m in mods if m}\n"
        "print(json.dumps([caps, found]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{module}.py cannot be imported:\n{result.stderr.strip()}")
    lines = result.stdout.strip().splitlines()
    capabilities, found = json.loads(lines[-1]) if lines else ([], {})
    return capabilities, {name: tuple(value) for name, value in found.items()}


def _componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.exists() else shutil.which("componentize-py")
    if not found:
        raise BuildError(
            "componentize-py is not installed; run `make setup` or "
            "`pip install -r guest-python/requirements.txt`"
        )
    return found
