"""CS231n's model.loss form: (loss, grads) with grads a dict keyed by the parameters' names
(outside test t20 F12: refused, 'it must return (loss, dX, dW1, ...); got a tuple of 2')."""

from __future__ import annotations

_TWO_LAYER = """
import numpy as np


def two_layer_loss(X, W1, b1, W2, b2, y):
    h = np.maximum(0, X @ W1 + b1)
    s = h @ W2 + b2
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    N = X.shape[0]
    loss = -np.log(p[np.arange(N), y]).mean()
    ds = p.copy()
    ds[np.arange(N), y] -= 1
    ds /= N
    dW2 = h.T @ ds%s
    dh = ds @ W2.T
    dh[h <= 0] = 0
    return loss, {%s"W1": X.T @ dh, "b1": dh.sum(0), "W2": dW2, "b2": ds.sum(0)}
"""
SPEC = """layer: custom
seed: 1
tensors:
  X: {shape: [5, 4]}
  W1: {shape: [4, 6]}
  b1: {shape: [6]}
  W2: {shape: [6, 3]}
  b2: {shape: [3]}
  y: {shape: [5], init: labels, classes: 3}
"""


def _run(cli, tmp_path, write_spec, bug="", keys='"X": dh @ W1.T, '):
    impl = tmp_path / "net.py"
    impl.write_text(_TWO_LAYER % (bug, keys))
    return cli("check", "custom", write_spec(SPEC), "--impl", f"{impl}:two_layer_loss", "-q")


def test_a_dict_of_gradients_is_read_by_name(cli, tmp_path, write_spec):
    r = _run(cli, tmp_path, write_spec)
    assert r.exit_code == 0, r.stdout + r.stderr


def test_a_wrong_gradient_in_the_dict_fails(cli, tmp_path, write_spec):
    r = _run(cli, tmp_path, write_spec, bug=" * 1.01")
    assert r.exit_code == 1 and "dW2" in r.stdout


def test_a_dict_missing_a_tensor_names_it(cli, tmp_path, write_spec):
    r = _run(cli, tmp_path, write_spec, keys="")
    assert r.exit_code == 2 and "no 'X'" in r.stderr
    # X left out of the dict as data is: the spec must say so, and the message says how (a
    # forward/backward module's said it; this form did not: outside test t59b F4)
    assert "list it in the spec as data: [X]" in r.stderr, r.stderr
    r = cli("check", "custom", write_spec(SPEC + "data: [X]\n"), "--impl",
            f"{tmp_path / 'net.py'}:two_layer_loss", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr


_TUPLE_LOSS = """
import numpy as np


def mse_loss(X, W, target):
    d = X @ W - target
    return (d ** 2).sum(), 2 * X.T @ d
"""


def test_a_tuple_one_short_says_how_data_is_listed(cli, tmp_path, write_spec):
    """(loss, dW) where the spec has X, W and target: a tensor the user means as data."""
    impl = tmp_path / "mse.py"
    impl.write_text(_TUPLE_LOSS)
    spec = "layer: custom\nseed: 1\ntensors:\n  X: {shape: [5, 4]}\n  W: {shape: [4, 2]}\n" \
           "  target: {shape: [5, 2]}\n"
    r = cli("check", "custom", write_spec(spec), "--impl", f"{impl}:mse_loss", "-q")
    assert r.exit_code == 2 and "got a tuple of 2" in r.stderr, r.stderr
    assert "is listed in the spec as data: [NAME]" in r.stderr
    r = cli("check", "custom", write_spec(spec + "data: [X, target]\n"), "--impl",
            f"{impl}:mse_loss", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr
