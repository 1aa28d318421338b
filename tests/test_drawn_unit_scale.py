"""A user's forward of a built-in layer is compared with ours at the spec's tensors and at
points drawn on each tensor's own scale; where a tensor's scale is far from 1 (or set by a few
elements far above the rest), at one more on the unit scale. At 1e17 a linear without its bias
matched ours everywhere it was compared (b is below z's last bit) and its db = 0 passed; one
score of 1e8 set an svm row's whole scale and an svm without its + 1 passed (outside test t68b
F1, F2). Oracles: the forwards by hand; twins: the right forwards still match."""

import numpy as np

import gradcli
from gradcli.checking.userwork import _far_from_unit


def _linear_inputs():
    rng = np.random.default_rng(1)
    return {"x": 1e17 * rng.standard_normal((6, 5)), "W": rng.standard_normal((3, 5)),
            "b": np.array([0.5, -0.7, 0.3])}  # fmt: skip


def _lin(with_bias):
    def forward(x, W, b):
        return x @ W.T + (b if with_bias else 0.0)

    def backward(grad_output, x, W, b):
        db = grad_output.sum(0) if with_bias else np.zeros_like(b)
        return {"x": grad_output @ W, "W": grad_output.T @ x, "b": db}

    return forward, backward


def test_a_linear_without_its_bias_at_1e17_fails_its_forward():
    forward, backward = _lin(False)
    r = gradcli.check("linear", _linear_inputs(), forward=forward, backward=backward)
    assert not r.passed and not r.forward.passed, r.verdict()


def test_twin_the_linear_with_its_bias_matches_ours_there():
    forward, backward = _lin(True)
    r = gradcli.check("linear", _linear_inputs(), forward=forward, backward=backward)
    assert r.forward.passed, r.verdict()  # (db itself cannot be resolved at 1e17)


MIX = np.array([[1e8, 0.5, 0.3, -3.0], [0.2, 0.9, 0.1, 0.7], [2.0, -1.5, 1.5, 1.2]], np.float32)
Y = np.array([1, 3, 0])


def _svm_loss(plus):
    def svm_loss(x, y):
        n = x.shape[0]
        m = np.maximum(0, x - x[np.arange(n), y][:, None] + x.dtype.type(plus))
        m[np.arange(n), y] = 0
        dx = (m > 0).astype(x.dtype)
        dx[np.arange(n), y] -= dx.sum(1)
        return m.sum() / x.dtype.type(n), dx / x.dtype.type(n)

    return svm_loss


def test_an_svm_without_its_plus_one_beside_a_score_of_1e8_fails():
    r = gradcli.check("svm", {"x": MIX, "y": Y}, forward=_svm_loss(0), dtype="float32")
    assert not r.passed and not r.forward.passed, r.verdict()


def test_twin_cs231n_svm_there_passes():
    r = gradcli.check("svm", {"x": MIX, "y": Y}, forward=_svm_loss(1), dtype="float32")
    assert r.passed, r.verdict()


def test_which_tensors_are_far_from_the_unit_scale():
    rng = np.random.default_rng(0)
    assert not _far_from_unit(rng.standard_normal(1000))
    assert not _far_from_unit(np.where(rng.random(1000) < 0.7, 0.0, rng.standard_normal(1000)))
    assert _far_from_unit(1e17 * rng.standard_normal(100))
    assert _far_from_unit(1e-5 * rng.standard_normal(100))
    assert _far_from_unit(MIX)


def test_a_right_svm_at_1e17_beside_unit_scores_is_read_by_the_complex_step():
    """float64 scores of 1e17 beside unit ones: the loss of 3e16 swallows every move of the
    unit scores, and the real differences at larger steps read exactly 0 where the complex
    step reads -2/3: no evidence against it, and a right svm of yours, 'cannot resolve' with
    its complex reading 'not trusted' where the built-in passed (outside test t68b F3),
    passes as the built-in does."""
    x = np.array([[1e17, 0.5, 0.3, -3.0], [0.2, 0.9, 0.1, 0.7], [2.0, -1e17, 1.5, 1.2]])
    r = gradcli.check("svm", {"x": x, "y": Y}, forward=_svm_loss(1))
    assert r.passed, r.verdict()
    assert r.results["x"].method == "complex"
