"""Builds a Python app into a Cello component with componentize-py.

The app module is imported once natively first, so a Python error in it is
reported as a plain Python traceback rather than a componentize-py failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "cello:component@0.1.0"
ENTRY = "cello_entry"
#: SDK modules whose import means the app uses a host capability, and the
#: WIT interface each one needs.
CAPABILITIES = {"cello.kv": "kv", "cello.config": "config", "cello.http": "outbound"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cello")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build an app into a component")
    build.add_argument("app", help="the app file, optionally with the App's name: app.py:app")
    build.add_argument("-o", "--output", required=True, help="where to write the .wasm")
    build.add_argument("--wit", help="the WIT directory (default: the one shipped with cello)")
    args = parser.parse_args(argv)
    try:
        build_component(args.app, Path(args.output), args.wit)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


class BuildError(Exception):
    """A build failure, with a message for the developer."""


def build_component(app: str, output: Path, wit: str | None = None) -> None:
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
    capabilities = _check_imports(path.parent, module, attr, sdk_parent)
    componentize = _componentize_py()
    with tempfile.TemporaryDirectory(prefix="cello-build-") as tmp:
        world = _world(wit_dir, Path(tmp) / "wit", capabilities)
        (Path(tmp) / f"{ENTRY}.py").write_text(
            f"import {module} as _app_module\n"
            "from cello._guest import make_world\n"
            f"WitWorld = make_world(_app_module.{attr})\n"
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        command = [
            componentize, "-d", str(Path(tmp) / "wit"), "-w", world,
            "componentize", ENTRY,
            "-p", tmp, "-p", str(path.parent), "-p", str(sdk_parent),
            "-o", str(output.resolve()),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"componentize-py failed to build {file}:\n{result.stderr.strip()}")
    uses = f" (imports {', '.join(capabilities)})" if capabilities else ""
    print(f"built {output} from {file}{uses}")


def _world(wit_dir: Path, into: Path, capabilities: list[str]) -> str:
    """A WIT directory whose world imports exactly ``capabilities`` beside
    the app world, so the component asks the host for nothing it does not
    use; returns the world's name."""
    shutil.copytree(wit_dir, into)
    imports = "".join(f"  import {name};\n" for name in capabilities)
    (into / "cello-build.wit").write_text(
        f"package {PACKAGE};\n\nworld app-build {{\n  include app;\n{imports}}}\n"
    )
    return "cello:component/app-build"


def _check_imports(directory: Path, module: str, attr: str, sdk_parent: Path) -> list[str]:
    """Imports the app natively; an exception in it becomes a BuildError.
    Returns the capabilities (WIT interfaces) the app's imports need."""
    probe = (
        "import sys, importlib\n"
        f"sys.path[:0] = [{str(directory)!r}, {str(sdk_parent)!r}]\n"
        f"m = importlib.import_module({module!r})\n"
        "from cello import App\n"
        f"a = getattr(m, {attr!r}, None)\n"
        "if not isinstance(a, App):\n"
        f"    sys.exit({f'{module}.py defines no cello.App named {attr!r}'!r})\n"
        f"print(' '.join(w for m, w in {CAPABILITIES!r}.items() if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{module}.py cannot be imported:\n{result.stderr.strip()}")
    lines = result.stdout.strip().splitlines()
    return lines[-1].split() if lines else []


def _componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.exists() else shutil.which("componentize-py")
    if not found:
        raise BuildError(
            "componentize-py is not installed; run `make setup` or "
            "`pip install -r guest-python/requirements.txt`"
        )
    return found
