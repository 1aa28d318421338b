"""What a failure shows. The summary's worst element is the one furthest beyond its tolerance;
where that is a tail element of a far smaller error (held to its own round-off), the failing
element of the largest error is said beside it (a GELU in the erf form read 'worst dx:
analytic 3.5e-11, numeric -1.4e-16', which looks like noise, its errors of 1e-3 ranked fifth:
outside test t60a F3); the twin: where the worst is also the largest, nothing is added. The
pass rule names each tensor's atol where they differ."""

from __future__ import annotations

import json
import math

import numpy as np

import gradcli
from gradcli.checking.compare import compare


def test_a_tail_worst_gets_the_largest_error_beside_it():
    n = np.array([1e-15, 1.0, 2.0, -1.5])
    a = n + np.array([3e-11, 0.0, 2e-3, 0.0])
    noise = np.array([1e-17, 1e-12, 1e-12, 1e-12])  # the tail element's own round-off
    r = compare("x", a, n, 0.0, 1e-6, noise=noise)
    assert not r.passed and r.worst_index == (0,)
    assert r.largest is not None and r.largest["index"] == [2]
    assert np.isclose(r.largest["abs_error"], 2e-3)
    same = compare("x", n + np.array([0.0, 0.0, 2e-3, 0.0]), n, 0.0, 1e-6, noise=noise)
    assert same.worst_index == (2,) and same.largest is None


def test_the_summary_and_json_say_it():
    """The exact (erf) GELU's derivative as answers to the tanh form's: its tails, 1e-70
    against 1e-190, lead by error / tolerance; its errors of 2e-3 are said beside them."""
    rng = np.random.default_rng(1)
    x, g = 8 * rng.normal(size=(10, 10)), rng.normal(size=(10, 10))
    erf = np.vectorize(math.erf)
    d = 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    r = gradcli.check("gelu", {"x": x}, grad_output=g, grads={"x": g * d})
    doc = json.loads(r.to_json())["results"]["x"]
    assert abs(doc["analytic"] - doc["numeric"]) < 1e-6, doc
    big = doc["largest_error"]
    assert big["abs_error"] > 1e-3 and big["index"] != doc["worst_index"], big
    assert "(by error / tolerance; the largest error: dx[" in r.verdict(), r.verdict()


def test_the_rule_names_each_atol_where_they_differ(cli, tmp_path, write_spec):
    """'pass if |a-n| <= atol + 1e-06|n|' named no value where the atols differ and the atol
    column had gone at 80 columns: a dw failing at 3.2e-8 read as within dx's 1e-7 (outside
    test t62b F3)."""
    (tmp_path / "tiny.py").write_text(
        "import numpy as np\n"
        "def forward(x, w): return x * 1e-8 * np.cos(w).sum()\n"
        "def backward(grad_output, x, w):\n"
        "    return {'x': grad_output * 1e-8 * np.cos(w).sum(),\n"
        "            'w': np.zeros_like(w)}\n")  # fmt: skip
    spec = write_spec("layer: custom\nseed: 3\ntensors:\n  x: {shape: [4, 5]}\n"
                      "  w: {shape: [5]}\n")  # fmt: skip
    r = cli("check", "custom", spec, "--impl", tmp_path / "tiny.py", env={"COLUMNS": "80"})
    rule = next(line for line in r.stdout.splitlines() if line.startswith("pass if"))
    assert "(atol: dx " in rule and ", dw " in rule, rule
