"""Hints that named a cause the layer does not have, or none, or a symbol left undefined
(outside test t44a F1, N2, N6):
- a max-pool's gradient shared out as an average pool's is named for its window: divided by 4
  at a batch of 4 read 'divided by the batch size 4 (a mean over the batch where the loss
  sums)', which a max-pool has none of, and at a batch of 2 no cause at all. Twin: a linear
  layer's db taken as a mean over the batch is still the batch size's;
- dropout scaled by 1/p where 1/(1 - p) belongs (CS231n's p keeps, ours drops) is named;
- a normalization's hint says what its r is;
- a loss of a 3-D prediction says why it gives no scalar (N10).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _pool(X):
    n, H, W, C = X.shape
    return X.reshape(n, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))


def _pool_avg_back(grad_output, X):  # the slip: each window's gradient over its 4 elements
    n, H, W, C = X.shape
    win = X.reshape(n, H // 2, 2, W // 2, 2, C)
    mask = win == win.max(axis=(2, 4), keepdims=True)
    return {"X": (mask * grad_output[:, :, None, :, None, :] / 4).reshape(X.shape)}


@pytest.mark.parametrize("batch", [2, 4])
def test_a_max_pool_divided_by_its_window_is_named_for_it(batch):
    X = np.random.default_rng(0).standard_normal((batch, 4, 4, 3))
    r = gradcli.check("maxpool2d", {"X": X}, forward=_pool, backward=_pool_avg_back)
    hint = str(r.results["X"].hints[0])
    assert not r.passed and "the window's size 2x2" in hint, hint
    assert hint.index("window") < hint.find("batch") or "batch" not in hint


@pytest.mark.parametrize(("batch", "size"), [(2, 2), (3, 3)])
def test_a_max_pool_divided_by_one_side_of_its_window_is_named_for_it(batch, size):
    """`/ size` (the README's own example slip) at a batch of the same size was 'divided by the
    batch size', which a max-pool has no mean over (outside test t59b F2)."""
    X = np.random.default_rng(0).standard_normal((batch, 2 * size, 2 * size, 3))

    def forward(X, **options):
        n, H, W, C = X.shape
        return X.reshape(n, H // size, size, W // size, size, C).max(axis=(2, 4))

    def backward(grad_output, X, **options):
        n, H, W, C = X.shape
        win = X.reshape(n, H // size, size, W // size, size, C)
        mask = win == win.max(axis=(2, 4), keepdims=True)
        return {"X": (mask * grad_output[:, :, None, :, None, :] / size).reshape(X.shape)}

    r = gradcli.check("maxpool2d", {"X": X}, options={"size": size}, forward=forward,
                      backward=backward)  # fmt: skip
    hint = str(r.results["X"].hints[0])
    assert not r.passed and f"divided by {size}, one side of the window" in hint, hint
    assert hint.index("window") < hint.find("batch") or "batch" not in hint


def test_the_twin_a_mean_over_the_batch_is_still_the_batch_size_s():
    def forward(x, W, b):
        return x @ W.T + b

    def backward(grad_output, x, W, b):
        return {"x": grad_output @ W, "W": grad_output.T @ x, "b": grad_output.mean(0)}

    rng = np.random.default_rng(1)
    t = {"x": rng.standard_normal((4, 3)), "W": rng.standard_normal((2, 3)),
         "b": rng.standard_normal(2)}
    r = gradcli.check("linear", t, forward=forward, backward=backward)
    assert not r.results["b"].passed and "batch size 4" in str(r.results["b"].hints[0])


def test_dropout_scaled_by_1_over_p_is_named():
    """CS231n's p keeps, ours drops: 1/p where 1/(1 - p) belongs was 'a constant factor this
    layer does not name' (outside test t44a N2). Twin: a right dropout passes."""
    from gradcli.layers import REGISTRY

    layer, p = REGISTRY["dropout"], 0.3
    x = np.random.default_rng(2).standard_normal((8, 16))
    opts = {"p": p, "seed": 1}
    mask = layer.forward({"x": x}, layer.options(**opts))[0] != 0

    def forward(x, p, seed):
        return x * mask / (1 - p)

    def wrong(grad_output, x, p, seed):
        return {"x": grad_output * mask / p}

    def right(grad_output, x, p, seed):
        return {"x": grad_output * mask / (1 - p)}

    r = gradcli.check("dropout", {"x": x}, options=opts, forward=forward, backward=wrong)
    assert not r.passed and "1/p where 1/(1 - p) belongs" in str(r.results["x"].hints[0])
    assert gradcli.check("dropout", {"x": x}, options=opts, forward=forward,
                         backward=right).passed  # fmt: skip


def test_a_normalization_hint_says_what_r_is():
    """The hints quoted r = 1/sqrt(var + eps) undefined (outside test t44a N6)."""
    def forward(x, gamma, beta):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * gamma + beta

    def constants(grad_output, x, gamma, beta):  # the statistics' paths left out
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        xhat = (x - mu) / np.sqrt(var + 1e-5)
        return {"x": grad_output * gamma / np.sqrt(var + 1e-5),
                "gamma": (grad_output * xhat).sum(0), "beta": grad_output.sum(0)}

    rng = np.random.default_rng(3)
    t = {"x": rng.standard_normal((4, 6)), "gamma": rng.standard_normal(6),
         "beta": rng.standard_normal(6)}
    r = gradcli.check("layernorm", t, forward=forward, backward=constants)
    assert not r.passed and "r = 1/sqrt(var + eps)" in str(r.results["x"].hints[0])


def test_a_loss_of_a_3d_prediction_says_why_it_is_no_scalar():
    """'the loss must give a scalar, got shape [4]' did not say that the axes in front of the
    loss's own are separate losses (outside test t44a N10). Twin: flattened, it checks."""
    rng = np.random.default_rng(4)
    model = {"inputs": {"X": rng.standard_normal((4, 5, 3)), "t": rng.standard_normal((4, 5, 2))},
             "network": [{"layer": "linear", "name": "fc",
                          "tensors": {"W": rng.standard_normal((2, 3))}}],
             "loss": {"layer": "mse", "target": "t"}}  # fmt: skip
    with pytest.raises(gradcli.SpecError, match=r"as separate losses; reshape it to \(N, D\)"):
        gradcli.check_network(model)
    model["network"].append({"layer": "flatten"})
    model["inputs"]["t"] = model["inputs"]["t"].reshape(4, 10)
    assert gradcli.check_network(model).passed
