"""Outside test t12 (F8): a label or index out of range is refused for the user's code of a
built-in layer (``--impl``, the API's ``forward=``) as for the built-in itself, by the layer's
own ``check_values``: numpy reads idx -1 as the last row (a PASS), an index V raised in the
student's code (blamed), a label -1 failed a correct softmax_loss. Twins: in-range values still
pass, and a wrong backward still fails."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import ShapeError

RNG = np.random.default_rng(0)
W = RNG.normal(size=(6, 4))
X = RNG.normal(size=(3, 4))

LAYERS = """import numpy as np
def word_embedding_forward(x, W):
    return W[x], (x, W)
def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W); np.add.at(dW, x, dout)
    return dW
def softmax_loss(x, y):
    N = x.shape[0]
    p = np.exp(x - x.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(N), y]).mean()
    dx = p.copy(); dx[np.arange(N), y] -= 1; dx /= N
    return loss, dx
"""


def _embedding(idx, W):
    return W[idx]


def _embedding_backward(grad_output, idx, W):
    dW = np.zeros_like(W)
    np.add.at(dW, idx, grad_output)
    return {"W": dW}


@pytest.mark.parametrize("bad", [-1, 6])
def test_an_index_out_of_range_is_refused_for_your_embedding(bad):
    idx = np.array([[3, 0, bad], [5, 3, 3]])
    with pytest.raises(ShapeError, match=rf"idx\[0, 2\] = {bad} is not a row of W "
                                         r"\(expected 0 \.\.\. 5\)"):  # fmt: skip
        gradcli.check("embedding", {"idx": idx, "W": W}, forward=_embedding,
                      backward=_embedding_backward)  # fmt: skip


def test_in_range_indices_of_your_embedding_are_checked():
    idx = np.array([[3, 0, 5], [5, 3, 3]])
    assert gradcli.check("embedding", {"idx": idx, "W": W}, forward=_embedding,
                         backward=_embedding_backward).passed  # fmt: skip

    def buffered(grad_output, idx, W):  # twin: drops the repeated 3's contributions
        dW = np.zeros_like(W)
        dW[idx] += grad_output
        return {"W": dW}

    assert not gradcli.check("embedding", {"idx": idx, "W": W}, forward=_embedding,
                             backward=buffered).passed  # fmt: skip


def test_the_command_line_refuses_a_label_out_of_range_for_your_code(tmp_path, cli,
                                                                      assert_usage_error):
    (tmp_path / "layers.py").write_text(LAYERS)
    impl = str(tmp_path / "layers.py")
    spec = tmp_path / "emb.yaml"
    spec.write_text("layer: embedding\ntensors:\n  idx: [[3, 0, -1], [5, 3, 3]]\n"
                    "  W: {shape: [6, 4], init: normal}\n")  # fmt: skip
    assert_usage_error(cli("check", "embedding", spec, "--impl", impl),
                       "emb.yaml: tensors.idx: index idx[0, 2] = -1 is not a row of W")  # fmt: skip
    sce = tmp_path / "sce.yaml"
    sce.write_text("layer: softmax_cross_entropy\ntensors:\n  x: {shape: [3, 4], init: normal}\n"
                   "  y: [0, -1, 2]\n")  # fmt: skip
    assert_usage_error(cli("check", "softmax_cross_entropy", sce, "--impl", impl),
                       "sce.yaml: tensors.y: label y[1] = -1 is not a class of x")  # fmt: skip
    # twin: the same correct code on labels in range passes
    sce.write_text(sce.read_text().replace("-1", "3"))
    assert cli("check", "softmax_cross_entropy", sce, "--impl", impl).exit_code == 0
