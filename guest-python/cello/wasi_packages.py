"""Packages with a native extension, supplied to the component built for WASI.

componentize-py packs pure-Python modules it finds on the path, and links
native extensions only when they are WebAssembly shared libraries built for
its CPython (``.cpython-314-wasm32-wasi.so``). pydantic v2 validates in
``pydantic_core._pydantic_core``, so the SDK ships that extension built for
``wasm32-wasip2`` (``cello/wasi/``, MIT like pydantic-core; rebuilt by
``guest-python/wasi/build-pydantic-core.sh``). A build whose app imports
pydantic gets a folder, ahead of everything else on componentize-py's path,
with the app's own pydantic and its pure-Python dependencies and this
pydantic_core: its Python files from the installed one and its extension
from here. The installed pydantic-core must be the version built here, as
pydantic itself refuses any other. In the component, at build time,
``preload`` imports all of them into the snapshot.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from pathlib import Path

#: pydantic-core's version built for WASI, the pydantic that requires it,
#: and the SHA-256 of the extension (decompressed).
PYDANTIC_CORE = "2.50.5"
PYDANTIC = "2.14.4"
PYDANTIC_CORE_SHA256 = "5cb72b8570c41ee1663877aa71de232cc7e12514b19cf85a36605a42e71fbf77"

EXTENSION_SUFFIX = ".cpython-314-wasm32-wasi.so"
#: The modules pydantic imports, all pure Python but pydantic_core.
PYDANTIC_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "typing_inspection",
)

#: Modules of those packages no app's model needs at run time: a mypy
#: plugin, pydantic v1 and the experimental API.
_NOT_PRELOADED = ("pydantic.mypy", "pydantic.v1", "pydantic.experimental")

_WASI = Path(__file__).parent / "wasi"


class Unsupported(Exception):
    """The installed packages cannot be supplied to the component."""


def stage_pydantic(found: dict[str, tuple[str, str]], into: Path) -> None:
    """Copies pydantic and its dependencies into ``into``, with the WASI
    pydantic_core extension. ``found`` maps each module the app's import
    loaded to its version and file, as the native import check saw them."""
    import shutil

    core_version = found.get("pydantic_core", ("", ""))[0]
    if core_version != PYDANTIC_CORE:
        raise Unsupported(
            f"this app imports pydantic {found['pydantic'][0]} with pydantic-core "
            f"{core_version or '(none)'}, and the component's pydantic-core is "
            f"{PYDANTIC_CORE}; install `pydantic=={PYDANTIC}` (`pip install 'cello[pydantic]'`)"
        )
    into.mkdir(parents=True, exist_ok=True)
    for name in PYDANTIC_MODULES:
        if name not in found:
            continue
        source = Path(found[name][1])
        if source.name == "__init__.py":
            shutil.copytree(
                source.parent,
                into / name,
                ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
            )
        else:
            shutil.copy2(source, into / source.name)
    extension = into / "pydantic_core" / f"_pydantic_core{EXTENSION_SUFFIX}"
    extension.write_bytes(pydantic_core_extension())


def pydantic_core_extension() -> bytes:
    """pydantic_core's extension built for WASI, checked against its hash."""
    # Here, not at the top: the component imports this module (`preload`),
    # and its CPython has no _lzma.
    import hashlib
    import lzma

    data = lzma.decompress((_WASI / f"_pydantic_core-{PYDANTIC_CORE}.wasm.xz").read_bytes())
    if hashlib.sha256(data).hexdigest() != PYDANTIC_CORE_SHA256:
        raise Unsupported(
            "the SDK's WASI build of pydantic_core is damaged (its SHA-256 differs); "
            "reinstall cello"
        )
    return data


def preload(packages: tuple[str, ...] = PYDANTIC_MODULES) -> None:
    """Imports every module of ``packages``; called in the component at
    build time. Only modules in the component's snapshot exist at run time,
    and pydantic imports many lazily (``pydantic.type_adapter`` when a
    schema has a default, for one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in packages:
            package = importlib.import_module(name)
            for module in pkgutil.walk_packages(getattr(package, "__path__", []), f"{name}."):
                if not module.name.startswith(_NOT_PRELOADED):
                    try:
                        importlib.import_module(module.name)
                    except ImportError:  # an optional dependency's module
                        pass
