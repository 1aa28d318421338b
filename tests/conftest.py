"""Shared fixtures for the CLI and spec tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gradcli.__main__ import single_threaded_blas

single_threaded_blas()  # as the command line runs, before numpy loads (its import reads it once)

from gradcli.cli.app import app  # noqa: E402  (after the BLAS setting)

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner) -> Callable[..., Any]:
    """``cli(*args, input=None, env=None)``: run gradcli in-process, return the click Result."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, [str(a) for a in args], input=input, env=env)

    return run


@pytest.fixture
def cli_json(cli: Callable[..., Any]) -> Callable[..., Any]:
    """``cli_json(*args, code=0)``: run with ``--format json``, check the exit code, parse."""

    def run(*args: str, code: int = 0, input: str | None = None) -> dict[str, Any]:
        result = cli(*args, "--format", "json", input=input)
        assert result.exit_code == code, (result.exit_code, result.stderr)
        return json.loads(result.stdout)

    return run


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """``write_spec(text, name="spec.yaml")``: a spec file in tmp_path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def example_spec() -> Callable[[str], Path]:
    """The example spec of a layer in specs/."""
    return lambda layer: SPECS / f"{layer}.yaml"


@pytest.fixture
def assert_usage_error() -> Callable[..., None]:
    """Exit 2, stdout empty, exactly one stderr line 'gradcli: error: ...' holding needles."""

    def check(result: Any, *needles: str) -> None:
        assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("gradcli: error:"), lines[0]
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])

    return check
