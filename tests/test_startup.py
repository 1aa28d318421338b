"""Start-up: ``gradcli --help`` and ``import gradcli`` import nothing heavy, and the quick help
page is the one Typer renders (so it cannot drift from the commands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradcli.cli import quickhelp

ROOT = Path(__file__).resolve().parent.parent


def _imports(*args: str, env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """(stdout, the top-level modules imported) of ``python -X importtime ARGS``."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT, check=True,
    )  # fmt: skip
    mods = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()}
    return out.stdout, mods


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_imports_neither_typer_nor_numpy(flag):
    stdout, mods = _imports("-m", "gradcli", flag, env={"COLUMNS": "120"})
    assert stdout == quickhelp.TOP_HELP
    assert not mods & {"typer", "click", "rich", "numpy", "yaml"}, mods


def test_import_gradcli_is_light():
    _, mods = _imports("-c", "import gradcli; gradcli.__version__")
    assert not mods & {"typer", "click", "rich", "numpy", "yaml"}, mods


def test_a_passing_check_imports_only_what_it_uses():
    # each of these costs milliseconds at every start: the JSON, the sweep, user code and the
    # failure's hypotheses wait until a run needs them (json and tempfile are not listed: a
    # newer typer imports them itself); numpy.ma (10 ms) loads on the first touch of np.ma,
    # np.unique or np.union1d
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gradcli", "check", "linear"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.rstrip().endswith("match the numerical ones")
    mods = {line.split("|")[-1].strip() for line in out.stderr.splitlines()}
    # nor do the modules of kinks and ties, for a check that meets none
    late = {"yaml", "rich._emoji_codes", "gradcli.checking.hypotheses",
            "gradcli.checking.sweep", "gradcli.render.jsondoc", "gradcli.user.impl",
            "gradcli.api", "numpy.ma", "gradcli.numeric.kinks", "gradcli.numeric.ties",
            "gradcli.numeric.joint", "gradcli.numeric.pieces", "gradcli.numeric.partners",
            "gradcli.numeric.kinkplan", "gradcli.checking.routing"}  # fmt: skip
    assert not mods & late, mods & late


def test_typer_builds_only_the_command_invoked():
    from gradcli.cli import app

    def names(argv):
        return [app._name(c) for c in app._invoked(argv).registered_commands]

    every = names([])
    assert {"check", "compute", "init", "explain", "layers"} <= set(every)
    assert names(["check", "linear"]) == ["check"]
    assert names(["init", "--help"]) == ["init"]
    # the group's own options and an unknown name (to suggest one) need every command
    assert names(["--version"]) == names(["chek"]) == every


@pytest.mark.parametrize("columns", ["80", "200"])
def test_the_quick_page_is_typers_own(cli, columns):
    """Typer renders the page at min(columns, 80) - 2: from 80 columns on, it is this text."""
    result = cli("--help", env={"COLUMNS": columns})
    assert result.exit_code == 0
    assert result.stdout == quickhelp.TOP_HELP


def test_narrow_terminals_get_typers_wrapping():
    out = subprocess.run(
        [sys.executable, "-m", "gradcli", "--help"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}, cwd=ROOT, check=True,
    )  # fmt: skip
    assert out.stdout != quickhelp.TOP_HELP
    assert max(map(len, out.stdout.splitlines())) <= 60
