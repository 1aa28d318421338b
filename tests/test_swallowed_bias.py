"""A gradient of its own size is no round-off of the others' (outside test t50b F1).

``linear`` at x of about 1e16: z = W x + b is about 1e16 too, a step of b moves no output
past its last bit, and the differences read db exactly 0. db was then held to 64 eps of the
largest other gradient (dW, 5e16): an atol of 750, under which ``db = 2 dout`` passed beside
the right dx and dW, while the right db alone in an answer file 'could not be resolved'. db is
dout whatever x is (the oracle: torch's and ours agree, 1.6 here), nothing the step reads: it
cannot be resolved, right or wrong, with or without the other answers."""

import numpy as np
import pytest

import gradcli

_X = np.array([1e16, -2.1e16, 3.3e16])
_W = np.array([[-0.3125853255705855, 0.7560104639851339, 0.15126599395024154],
               [-0.3777030472530831, -0.01125653702262884, 0.00323144049747465]])  # the tester's
_B = np.array([0.5, -0.5])


def _forward(x, W, b):
    return W @ x + b


def _backward(k):
    def backward(grad_output, x, W, b):
        return {"x": W.T @ grad_output, "W": np.outer(grad_output, x), "b": k * grad_output}

    return backward


@pytest.mark.parametrize("layer", ["linear", "custom"])
@pytest.mark.parametrize("k", [1.0, 2.0], ids=["right", "twice"])
def test_a_bias_no_step_moves_is_unresolved_right_or_wrong(layer, k):
    r = gradcli.check(layer, {"x": _X, "W": _W, "b": _B}, forward=_forward,
                      backward=_backward(k), eps=6.06e-6)  # fmt: skip
    assert not r.passed
    assert "cannot resolve db" in r.verdict(), r.verdict()
    # at the automatic step the complex step reads it again (checking/complex_recheck.py);
    # code of yours is confirmed there by real steps far larger, which a bias no step moves
    # cannot give: it stays unresolved, right or wrong, never passed wrong
    r = gradcli.check(layer, {"x": _X, "W": _W, "b": _B}, forward=_forward,
                      backward=_backward(k))  # fmt: skip
    assert not r.passed and "cannot resolve db" in r.verdict(), r.verdict()


@pytest.mark.parametrize("given", [["b"], ["x", "W", "b"]], ids=["db alone", "beside dx, dW"])
def test_an_answer_files_db_gets_one_verdict_whatever_is_beside_it(given):
    g = np.array([0.20045561655278596, 1.6012880289723341])
    right = _backward(1.0)(g, _X, _W, _B)
    for k in (1.0, 2.0):
        grads = {n: right[n] * (k if n == "b" else 1.0) for n in given}
        r = gradcli.check("linear", {"x": _X, "W": _W, "b": _B}, grad_output=g, grads=grads,
                          eps=6.06e-6)  # fmt: skip
        assert not r.passed and "cannot resolve db" in r.verdict(), (k, r.verdict())
        r = gradcli.check("linear", {"x": _X, "W": _W, "b": _B}, grad_output=g, grads=grads)
        assert r.passed == (k == 1.0), (k, r.verdict())  # the complex step's reading


def test_twin_at_sizes_the_step_reads_a_wrong_db_fails_and_the_right_one_passes():
    x = _X / 1e12  # z of about 1e4: a step of b moves it
    assert gradcli.check("custom", {"x": x, "W": _W, "b": _B}, forward=_forward,
                         backward=_backward(1.0)).passed  # fmt: skip
    r = gradcli.check("custom", {"x": x, "W": _W, "b": _B}, forward=_forward,
                      backward=_backward(2.0))  # fmt: skip
    assert not r.passed and "does not match (db)" in r.verdict(), r.verdict()
