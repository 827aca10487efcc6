"""The port changed the FastAPI original's imports and nothing else."""

import ast
from pathlib import Path

HERE = Path(__file__).parent


def body(path: Path) -> list[str]:
    """The module's statements other than its docstring and imports."""
    tree = ast.parse(path.read_text())
    return [
        ast.unparse(node)
        for node in tree.body[1:]
        if not isinstance(node, ast.Import | ast.ImportFrom)
    ]


def test_only_the_imports_differ():
    assert body(HERE / "main.py") == body(HERE / "fastapi_main.py")
