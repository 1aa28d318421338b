"""Small things an engineer met (outside test t38b N3, N5).

- ``--dtype float32`` on the command line was called "the spec's dtype" in the note on arrays
  given in float64, for a spec without a dtype key; the spec's own dtype is still named so.
- A failing ``assert_gradients`` in pytest showed gradcli's own body and locals before the
  verdict: its frame is hidden (pytest's ``__tracebackhide__``).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

SPEC = """layer: tanh
{dtype}tensors:
  x: x.npy
"""


@pytest.mark.parametrize(("key", "flag", "said"), [
    ("", ["--dtype", "float32"], "(--dtype float32;"),
    ("dtype: float32\n", [], "(the spec's dtype;"),
])  # fmt: skip
def test_the_dtype_note_names_where_the_dtype_came_from(cli, tmp_path, key, flag, said):
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 6))
    (tmp_path / "s.yaml").write_text(SPEC.format(dtype=key))
    r = cli("check", "tanh", str(tmp_path / "s.yaml"), "-q", *flag)
    assert r.exit_code == 0 and said in r.stderr, r.stderr


def test_assert_gradients_hides_its_own_frame():
    def forward(x):
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": -grad_output * (1 - np.tanh(x) ** 2)}

    with pytest.raises(AssertionError) as e:
        gradcli.assert_gradients(forward=forward, backward=backward,
                                 tensors={"x": np.linspace(-1, 1, 5)})  # fmt: skip
    frames = [t.frame for t in e.traceback if t.frame.code.name == "assert_gradients"]
    assert frames and frames[0].f_locals.get("__tracebackhide__") is True
