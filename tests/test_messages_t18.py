"""Outside test t18's messages: each says what the user's code did, and its twin is quiet."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcli


def test_an_erf_gelu_is_named_against_the_tanh_one():
    """N2: torch's default GELU (erf) checked as gelu failed with no word of the two forms.
    The twin: a forward off by 1e-3 everywhere gets no such name."""
    erf = np.vectorize(math.erf)

    def backward(grad_output, x):  # the erf form's own derivative
        return {"x": grad_output * (0.5 * (1 + erf(x / math.sqrt(2)))
                                    + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))}

    for forward, named in ((lambda x: x / 2 * (1 + erf(x / math.sqrt(2))), True),
                           (lambda x: x / 2 * (1 + erf(x / math.sqrt(2))) + 1e-3, False)):
        report = gradcli.check("gelu", forward=forward, backward=backward)
        said = " ".join(str(h) for h in report.check.forward.hints)
        assert not report.passed and ("exact GELU" in said) is named, said


def test_a_cs231n_backward_returning_a_dict_is_told_how_it_is_read(tmp_path, cli):
    """N1: a backward(dout, cache) returning gradcli's dict was told its 'x' 'must be numbers,
    got dict'. The twin: returning the gradient by position passes."""
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors:\n  x: {shape: [3, 4]}\n")
    for body, code in (("{'x': dout * (1 - y ** 2)}", 2), ("dout * (1 - y ** 2)", 0)):
        mine = tmp_path / f"m{code}.py"
        mine.write_text("import numpy as np\n"
                        "def forward(x):\n    y = np.tanh(x)\n    return y, (x, y)\n"
                        "def backward(dout, cache):\n    x, y = cache\n"
                        f"    return {body}\n")  # fmt: skip
        r = cli("check", "custom", spec, "--impl", mine, "-q")
        assert r.exit_code == code, r.output
        assert ("returns its gradients by position" in r.output) is (code == 2)


@pytest.mark.parametrize("scalar", ["np.sqrt(4.0)", "math.sqrt(4.0)"])
def test_the_float32_advice_names_numpy_scalars(cli, tmp_path, scalar):
    """N3: a float64 result from np.sqrt(d) (NumPy 2 promotes float32 arrays by a NumPy
    float64 scalar) was told only to allocate like its inputs. The twin: math.sqrt keeps
    float32 and the contract."""
    mine = tmp_path / "m.py"
    mine.write_text("import math\nimport numpy as np\n"
                    f"def forward(x):\n    return x / {scalar}\n"
                    f"def backward(grad_output, x):\n    return {{'x': grad_output / {scalar}}}\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("dtype: float32\ntensors:\n  x: {shape: [3, 4]}\n")
    r = cli("check", "custom", spec, "--impl", mine, "--format", "json")
    promoted = scalar.startswith("np.")
    assert (r.exit_code == 1) is promoted, r.output
    assert ("keep NumPy float64 scalars out" in r.stdout) is promoted
