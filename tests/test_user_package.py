"""Outside test t8 (T10): a user's file inside a package (its folder has __init__.py, as
CS231n's cs231n/ has) imports its siblings as Python imports them as part of the package:
``from pkg.sibling import *`` (fast_layers.py) and ``from .sibling import *`` (layer_utils.py),
with no working folder on sys.path (the installed console script's case). Each package's
modules still serve its own files alone. Twins: a wrong backward in such a package fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli

X = {"x": np.array([1.0, -2.0, 0.5])}
SPEC = "layer: custom\ntensors:\n  x: [1.0, -2.0, 0.5]\n"
IMPORTS = {"absolute": "from pkg.sibling import *\n", "relative": "from .sibling import *\n"}


def _package(root: Path, factor: int) -> Path:
    """root/assign/pkg/: a sibling helper (dx = factor * x * g; 2 is right), and one file per
    import style; the package's __init__ runs first and its name is set."""
    pkg = root / "assign" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("INIT = True\n")
    (pkg / "sibling.py").write_text(f"def dsq(x, g):\n    return {factor} * x * g\n")
    for style, line in IMPORTS.items():
        (pkg / f"{style}.py").write_text(
            line + "import pkg\n"
            "def forward(x):\n    assert pkg.INIT and __package__ == 'pkg'\n    return x**2\n"
            "def backward(grad_output, x):\n    return {'x': dsq(x, grad_output)}\n"
        )
    return pkg


@pytest.mark.parametrize("style", list(IMPORTS))
def test_a_package_file_imports_its_siblings_without_the_working_folder(
    tmp_path, monkeypatch, cli, style
):
    right = _package(tmp_path / "right", 2)
    wrong = _package(tmp_path / "wrong", 3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "spec.yaml").write_text(SPEC)
    monkeypatch.chdir(elsewhere)  # neither package's parent is the working folder
    assert not any(str(tmp_path) in p for p in sys.path if p)
    path, modules = list(sys.path), set(sys.modules)
    result = cli("check", "custom", "spec.yaml", "--impl", right / f"{style}.py", "-q")
    assert result.exit_code == 0, result.stderr
    assert cli("check", "custom", "spec.yaml", "--impl", wrong / f"{style}.py").exit_code == 1
    assert gradcli.check(str(right / f"{style}.py"), X).passed  # right's pkg, not wrong's
    assert not gradcli.check(str(wrong / f"{style}.py"), X).passed
    assert sys.path == path  # and nothing of either package stays imported
    assert not {m for m in set(sys.modules) - modules if m == "pkg" or m.startswith("pkg.")}


def test_a_package_file_still_finds_a_helper_beside_it_imported_as_a_script_would(tmp_path):
    """Code written to run as a script inside a package folder (``from helpers import ...``)
    keeps working: the file's own folder is searched after the package's root."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for factor, name in ((2, "right"), (3, "wrong")):
        (pkg / f"help_{name}.py").write_text(f"def dsq(x, g):\n    return {factor} * x * g\n")
        (pkg / f"{name}.py").write_text(
            f"from help_{name} import dsq\ndef forward(x):\n    return x**2\n"
            "def backward(grad_output, x):\n    return {'x': dsq(x, grad_output)}\n"
        )
    assert gradcli.check(str(pkg / "right.py"), X).passed
    assert not gradcli.check(str(pkg / "wrong.py"), X).passed


def test_an_installed_package_in_a_projects_venv_is_imported_once(tmp_path, monkeypatch):
    """A project's own .venv lies inside the folder of its files: what the user's code imports
    from there (torch, which cannot be imported twice) is the process's, not lent and taken
    back after each call as the project's own modules are."""
    site = tmp_path / "proj" / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "fakelib").mkdir(parents=True)
    (site / "fakelib" / "__init__.py").write_text(
        "import sys\nsys.modules[__name__].imports = getattr(sys, '_gradcli_test_imports', 0)\n"
        "sys._gradcli_test_imports = sys.modules[__name__].imports + 1\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "_gradcli_test_imports", 0, raising=False)
    pkg = tmp_path / "proj" / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("a", "b"):
        (pkg / f"{name}.py").write_text(
            "import fakelib\ndef forward(x):\n    return x**2\n"
            "def backward(grad_output, x):\n    return {'x': 2 * x * grad_output}\n"
        )
    try:
        assert gradcli.check(str(pkg / "a.py"), X).passed
        assert gradcli.check(str(pkg / "b.py"), X).passed
        assert sys._gradcli_test_imports == 1 and "fakelib" in sys.modules
    finally:
        sys.modules.pop("fakelib", None)
