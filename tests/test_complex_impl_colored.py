"""A user's forward read by the complex step is held to central differences at every coordinate
(userwork.complex_agrees), colored as the complex step is (outside test t52a F2): linear's W at
hidden 512 was differenced one coordinate at a time, counted 1,786 s, sampled at the default
budget, and ran past 11 minutes under --mode full, where central differences took 7 s.

And a sample that matched where a probe disagreed fails saying so (t52a F1): the summary named
only 'only 64 of the 262144 coordinates promised were compared', the built-in backward's
mismatch (the only wrong value shown) was left out, and the row read FAIL | good."""

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)


def _tensors(n, d):
    return {"x": RNG.standard_normal((n, d)), "W": 0.05 * RNG.standard_normal((d, d)),
            "b": RNG.standard_normal(d)}  # fmt: skip


def _counted():
    calls = {"n": 0}

    def forward(x, W, b):
        calls["n"] += 1
        return x @ W.T + b

    return forward, calls


def _backward(slip):
    def backward(grad_output, x, W, b):
        dW = grad_output.T @ x
        if slip:
            dW[7, 10] *= -1
        return {"x": grad_output @ W, "W": dW, "b": grad_output.sum(0)}

    return backward


def test_the_complex_steps_central_hold_is_colored():
    t = _tensors(8, 48)
    seen = {}
    for method in ("central", "complex"):
        forward, calls = _counted()
        r = gradcli.check("linear", t, forward=forward, backward=_backward(False), method=method,
                          mode="full")  # fmt: skip
        assert r.passed, r.verdict()
        seen[method] = (calls["n"], r.check.estimated_seconds)
    # every coordinate of W (2,304) twice: 6,800 calls against central's 244; colored 1,500
    assert seen["complex"][0] < 8 * seen["central"][0], seen
    assert seen["complex"][1] < 10 * seen["central"][1], seen


@pytest.mark.parametrize("slip", [True, False], ids=["slip", "right"])
def test_a_sample_a_probe_contradicts_fails_naming_the_probe(slip):
    """A layer of yours (no built-in to compare with): the sample matched, the probe did not."""
    forward, _ = _counted()
    r = gradcli.check(tensors=_tensors(32, 128), forward=forward, backward=_backward(slip),
                      method="complex", budget=0.3)  # fmt: skip
    w = r.results["W"]
    assert w.mode == "sample"
    if not slip:  # the twin: the right backward's sample passes
        assert r.passed, r.verdict()
        return
    assert not r.passed
    assert w.band == "not located"
    assert w.reason.startswith("a random direction disagreed, but none of the 64 sampled"), w


def test_the_builtins_worst_element_joins_the_sample():
    """--impl of linear: the built-in backward's comparison at drawn points named dW[7, 10];
    that element is sampled too, and the tensor fails as a mismatch there, named, where it
    failed 'not located' beside it (outside test t54a F1)."""
    forward, _ = _counted()
    r = gradcli.check("linear", _tensors(32, 128), forward=forward, backward=_backward(True),
                      method="complex", budget=0.3)  # fmt: skip
    w = r.results["W"]
    assert w.mode == "sample" and w.checked == 65 and not w.reason, w
    assert not r.passed and w.worst_index == (7, 10), r.verdict()
