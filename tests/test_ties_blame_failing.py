"""A crowd of equal values spanning tensors (numeric/crowds.py) that the pieces read contradict
blames the members that failed before, where the others alone are a mix of those pieces: a
CS231n TwoLayerNet (softmax loss, zero biases, weights rounded to 0.1) whose db2 alone sums over
the wrong axis failed its right dW1 and db1 too, their values the nearest mix of a crowd of
zeros shared with b2 (outside test t71b F1: dW1 and db1 are bit for bit the right net's, which
passes). The twin: the same db2 bug beside dW1 0.3 off at the element the crowd read keeps dW1
failing."""

from pathlib import Path

import numpy as np

import gradcli

DATA = Path(__file__).parent / "fixtures" / "twolayer_zero_b2_t71b.npz"


def _net(bug: str = "", off: float = 0.0):
    def loss(X, y, W1, b1, W2, b2, reg=0.1):
        a = X @ W1 + b1
        h = np.maximum(0, a)
        s = h @ W2 + b2
        n = s.shape[0]
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        value = -np.log(p[np.arange(n), y]).sum() / n + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        ds = p.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        da = (ds @ W2.T) * (a > 0)
        dW1 = X.T @ da + 2 * reg * W1
        dW1.flat[19] += off
        db2 = ds.sum(axis=1).mean() * np.ones_like(b2) if bug == "axis" else ds.sum(axis=0)
        return value, {"W1": dW1, "b1": da.sum(axis=0), "W2": h.T @ ds + 2 * reg * W2,
                       "b2": db2}  # fmt: skip

    return loss


def _check(net):
    """At --budget 10 (counted seconds): the crowd's reading reaches its contradiction, in 7 s
    of wall time (less leaves it unread, and nothing to blame)."""
    t = dict(np.load(DATA))
    tensors = {"X": t["X"], "y": t["y"], "W1": t["W1"], "b1": np.zeros(10), "W2": t["W2"],
               "b2": np.zeros(3)}  # fmt: skip
    return gradcli.check("custom", tensors, forward=net, data=["X"], options={"reg": 0.1},
                         budget=10)  # fmt: skip


def test_only_the_wrong_tensor_fails():
    right = _check(_net())
    assert right.passed, str(right)
    r = _check(_net("axis"))
    assert not r.passed and not r.results["b2"].passed, str(r)
    assert r.results["W1"].passed and r.results["b1"].passed, str(r)


def test_twin_a_wrong_element_in_the_crowd_still_fails():
    r = _check(_net("axis", off=0.3))
    assert not r.results["b2"].passed and not r.results["W1"].passed, str(r)


def test_a_smooth_coordinate_in_a_crowd_fails_on_its_own_with_no_kink():
    """db2 is smooth (the loss along b2 has one slope each way), tied in value with the zero
    biases: its failure read '3 coordinates at a kink' with the hint 'db2 fails only near
    kinks' (outside test t71b F2). Every piece its crowd read gives it one value: it fails
    on its central difference, and no kink is counted. The twin: the nested relu's dx at a
    zero row, which the pieces read give different values, stays a kink (test_nested_kinks_
    many_outputs.py)."""
    res = _check(_net("axis")).results["b2"]
    assert not res.passed and res.kinks == 0, res
    assert not any("kink" in h.text for h in res.hints), res.hints


def test_a_crowd_contradicted_beside_a_value_too_large_to_screen(monkeypatch):
    """Both paths in one check: a value of more than LARGE equal values, too many to screen
    (each failing one moved against the rest), and a contradicted crowd. The name of the
    first's result once shadowed the second's set, and the check crashed (a review's rename;
    found on t68a's MLP with CS231n's rule). Small constants reach both here."""
    from gradcli.numeric import pieces

    monkeypatch.setattr(pieces, "LARGE", 8)
    monkeypatch.setattr(pieces, "SCREEN_MOST", 1)
    r = _check(_net("axis"))
    assert not r.results["b2"].passed, str(r)
