"""The layer promise: a new layer is one file plus one registry line, and every command picks
it up from the registry. Proved on a copy of the package with a toy layer added that way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TOY = '''"""softplus, written the way the README says a layer is added."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.layers.base import Arrays, Layer, Shapes, TensorInfo, same


# y = log(1 + exp(x))
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x = t["x"]
    return np.logaddexp(0, x) if not np.iscomplexobj(x) else np.log(1 + np.exp(x)), {"x": x}


# dL/dx = dL/dy * sigmoid(x)
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": dy / (1 + np.exp(-cache["x"]))}


def footprint(name: str, s: Shapes, options: Any = None):
    return tuple(same(k, n) for k, n in enumerate(s["x"]))


LAYER = Layer(
    name="softplus",
    summary="y = log(1 + exp(x))",
    tensors=(TensorInfo("x", ("n",), ("i",), "input", "input"),),
    output=TensorInfo("y", ("n",), ("i",), "output", "output"),
    forward=forward,
    backward=backward,
    output_shape=lambda s, o=None: tuple(s["x"]),
    default_shapes={"x": (5,)},
    footprint=footprint,
)
'''


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "gradcli", tree / "gradcli",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (tree / "gradcli" / "layers" / "softplus.py").write_text(TOY)
    registry = tree / "gradcli" / "layers" / "__init__.py"
    text = registry.read_text()
    entries = "_ENTRIES: dict[str, str] = {\n"
    assert entries in text, "the registry's layout changed: update this test"
    text = text.replace(entries, entries + '    "softplus": "softplus",\n', 1)  # the one line
    registry.write_text(text)
    return tree


def _run(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "gradcli", *args], capture_output=True,
                          text=True, env=env, cwd=tree, check=False)  # fmt: skip


def test_a_new_layer_is_listed_and_documented(toy_tree):
    out = _run(toy_tree, "layers", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["softplus"]["formula"] == "y = log(1 + exp(x))"
    explain = _run(toy_tree, "explain", "softplus")
    assert explain.returncode == 0, explain.stderr
    assert "log(1 + exp(x))" in explain.stdout and "∂L/∂x" in explain.stdout


@pytest.mark.parametrize("impl", [False, True])
def test_a_new_layer_has_templates(toy_tree, impl):
    out = _run(toy_tree, "init", "softplus", *(["--impl"] if impl else []))
    assert out.returncode == 0, out.stderr
    if impl:  # the generic skeleton: its tensor names, a dict of gradients
        assert "def forward(x)" in out.stdout and '"x": ...' in out.stdout
        compile(out.stdout, "my_softplus.py", "exec")


def test_a_new_layer_is_computed_and_checked(toy_tree):
    assert _run(toy_tree, "compute", "softplus").returncode == 0
    out = _run(toy_tree, "check", "softplus", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] and set(doc["results"]) == {"x"}


def test_a_new_layer_with_a_wrong_backward_fails(toy_tree, tmp_path):
    """The twin: a user's softplus whose backward forgot the upstream gradient."""
    impl = tmp_path / "mine.py"
    impl.write_text(
        "import numpy as np\n"
        "def forward(x):\n    return np.logaddexp(0, x)\n"
        "def backward(grad_output, x):\n    return {'x': 1 / (1 + np.exp(-x))}\n"
    )
    out = _run(toy_tree, "check", "softplus", "--impl", str(impl), "--format", "json")
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["results"]["x"]["passed"] is False
