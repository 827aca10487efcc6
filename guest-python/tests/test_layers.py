"""The SDK's modules form layers: each imports only modules of the layers
below its own, at module level or inside a function, so no two import each
other. A new module takes its place here."""

import ast
from pathlib import Path

import cello

#: Bottom first. What a layer's modules may import is what lies below it.
LAYERS = [
    # The pools made inline in a component.
    ["concurrency"],
    # The loop a `def` route's stream runs on, which host calls consult.
    ["_blocking"],
    # Values and host calls that need nothing else of the SDK.
    [
        "status",
        "messages",
        "log",
        "security",
        "config",
        "kv",
        "background",
        "_hostcalls",
        "wasi_packages",
        "docs",
    ],  # fmt: skip
    ["guards", "sleeps", "http", "sql", "markers", "build"],
    ["host", "_tasks", "params", "json_schema", "analysis", "sse"],
    ["validation"],
    ["models", "deps"],
    ["routing"],
    ["openapi"],
    ["app"],
    ["controllers", "testing", "_guest"],
    ["__init__", "__main__"],
]

PACKAGE = Path(cello.__file__).parent


def imports(module: str) -> set[str]:
    """The SDK modules ``module`` imports, anywhere in it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cello."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cello."))
    return {name.split(".")[0] for name in found}


def test_every_module_has_a_layer():
    placed = [m for layer in LAYERS for m in layer]
    assert sorted(placed) == sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_no_module_imports_one_of_its_own_layer_or_above():
    below: set[str] = set()
    upward = []
    for layer in LAYERS:
        for module in layer:
            upward += [f"{module} imports {name}" for name in sorted(imports(module) - below)]
        below.update(layer)
    assert upward == []
