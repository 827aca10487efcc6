"""`python -m cello build`: a broken app is reported as a Python error."""

import shutil
import subprocess
import sys
from pathlib import Path


def build(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "cello", "build", str(app), "-o", str(tmp_path / "app.wasm")],
        capture_output=True,
        text=True,
    )


def test_an_exception_in_the_app_is_reported_as_a_python_traceback(tmp_path):
    result = build(tmp_path, "from cello import App\napp = App()\n1 / 0\n")
    assert result.returncode == 1
    assert "error: app.py cannot be imported" in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "panicked" not in result.stderr
    assert not (tmp_path / "app.wasm").exists()


def test_an_app_without_an_app_object_is_reported(tmp_path):
    result = build(tmp_path, "x = 1\n")
    assert result.returncode == 1
    assert "defines no cello.App named 'app'" in result.stderr


def test_a_missing_file_is_reported(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cello", "build", str(tmp_path / "nope.py"), "-o", "x.wasm"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "is not a Python file" in result.stderr


def test_a_pydantic_import_failure_names_the_cause_and_the_alternative():
    from cello.build import _explain

    output = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 1, in <module>\n'
        "ModuleNotFoundError: No module named 'pydantic_core._pydantic_core'\n"
        "\nStack backtrace:\n   0: anyhow::error\n" + "   1: frame\n" * 80
    )
    message = _explain("app.py", output)
    assert len(message.splitlines()) == 1
    assert "pydantic_core is a native extension" in message
    assert "pydantic==2.14.4" in message
    assert "from cello import BaseModel, Field" in message


def test_pydantic_is_staged_with_the_wasi_pydantic_core(tmp_path):
    import pydantic
    import pydantic_core
    from cello.wasi_packages import EXTENSION_SUFFIX, stage_pydantic

    found = {
        "pydantic": (pydantic.VERSION, pydantic.__file__),
        "pydantic_core": (pydantic_core.__version__, pydantic_core.__file__),
    }
    stage_pydantic(found, tmp_path / "staged")
    core = tmp_path / "staged" / "pydantic_core"
    assert (core / f"_pydantic_core{EXTENSION_SUFFIX}").read_bytes()[:4] == b"\0asm"
    assert not list(core.glob("*x86_64*")) and not list(core.glob("*linux*"))
    assert (tmp_path / "staged" / "pydantic" / "main.py").is_file()


def test_another_pydantic_version_names_the_one_to_install(tmp_path):
    from cello.wasi_packages import Unsupported, stage_pydantic

    found = {"pydantic": ("2.9.0", "x"), "pydantic_core": ("2.23.2", "y")}
    try:
        stage_pydantic(found, tmp_path)
    except Unsupported as error:
        assert "pydantic==2.14.4" in str(error) and "2.23.2" in str(error)
    else:
        raise AssertionError("a mismatched pydantic-core was accepted")


def test_other_failures_keep_the_python_traceback_and_drop_the_rust_backtrace():
    from cello.build import _explain

    output = (
        "Error: initialization failed\nTraceback (most recent call last):\n"
        '  File "app.py", line 3\nValueError: bad\n\nStack backtrace:\n   0: x\n'
    )
    message = _explain("app.py", output)
    assert message.endswith("ValueError: bad")
    assert "Stack backtrace" not in message


def test_the_build_reports_its_stages(tmp_path):
    result = build(tmp_path, "from cello import App\napp = App()\n1 / 0\n")
    assert "checking that" in result.stdout and "imports (natively, Python 3." in result.stdout


def test_a_plain_install_builds_from_any_folder(tmp_path):
    """`pip install ./guest-python`, not editable, then a build elsewhere."""
    # A copy, so pip's in-tree build leaves the checkout as it was.
    sdk = tmp_path / "sdk"
    shutil.copytree(
        Path(__file__).resolve().parents[1],
        sdk,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "examples", "tests"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(sdk)], check=True)
    app = tmp_path / "elsewhere" / "app.py"
    app.parent.mkdir()
    app.write_text("from cello import App\napp = App()\napp.get('/')(lambda: 'hi')\n")
    result = subprocess.run(
        [str(python), "-m", "cello", "build", "app.py", "-o", "app.wasm"],
        cwd=app.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "componentizing" in result.stdout
    assert (app.parent / "app.wasm").stat().st_size > 1_000_000
