"""``clip(x, lo, hi)`` with tensor bounds at ``x == lo == hi`` on quantized data (outside test
t53b F3): x and lo move nothing alone there (the clip lands on hi or lo, both x), and each such
value is shared by dozens to hundreds of coordinates of the three tensors, each triple apart.
A value's coordinates that interact only within groups sharing an output are read group by
group, but a member that moves nothing alone had no known group, so the whole value was left
'not verified' (torch's rule failed, exit 1). Each such member now joins the group whose
outputs its sign flips change in the value's random-sign moves (numeric/pieces.py
``_flipped_outputs``).

Oracle: at a triple tie the pieces' gradients are (1, 0, 0), (0, 1, 0) and (0, 0, 1) times the
upstream gradient (which of x, lo, hi the clip returns), so any shares s >= 0 summing to 1 are
right (torch's gives x all of it); a sum other than 1, or a negative share, is wrong."""

import numpy as np
import pytest

import gradcli


def _case():
    rng = np.random.default_rng(1)
    x = 0.75 + np.round(rng.standard_normal((16, 24)) * 2) / 4  # steps of 0.25: widely shared
    lo, hi = np.full(x.shape, -0.5), np.full(x.shape, 0.5)  # -0.5, 0.5: past 256 coordinates
    lo[:, :5], hi[:, :5] = x[:, :5], np.maximum(0.5, x[:, :5])
    hi[:, 5:10], lo[:, 5:10] = x[:, 5:10], np.minimum(-0.5, x[:, 5:10])
    return {"x": x, "lo": lo, "hi": hi}


def _forward(x, lo, hi):
    return np.clip(x, lo, hi)


def _backward(shares):
    """torch.clamp's rule, with the shares (of x, lo, hi) at a triple tie."""

    def backward(grad_output, x, lo, hi):
        triple = (x == lo) & (x == hi)
        out = {"x": grad_output * ((x >= lo) & (x <= hi)), "lo": grad_output * (x < lo),
               "hi": grad_output * (x > hi)}  # fmt: skip
        for n, s in zip(("x", "lo", "hi"), shares, strict=True):
            out[n] = np.where(triple, s * grad_output, out[n])
        return out

    return backward


def test_the_case_has_triple_ties_at_widely_shared_values():
    t = _case()
    triple = (t["x"] == t["lo"]) & (t["x"] == t["hi"])
    assert triple.sum() >= 20
    values, counts = np.unique(np.concatenate([a.ravel() for a in t.values()]), return_counts=True)
    shared = dict(zip(values.tolist(), counts.tolist(), strict=True))
    at = np.unique(t["x"][triple]).tolist()
    assert shared[0.5] > 256 and shared[-0.5] > 256 and {0.5, -0.5} <= set(at)  # past LARGE
    assert sum(64 < shared[v] <= 256 for v in at) >= 2  # past CANDIDATES, up to LARGE


@pytest.mark.parametrize("shares", [(1, 0, 0), (0.5, 0.5, 0)], ids=["torch", "halves"])
def test_right_rules_at_triple_ties_pass(shares):
    r = gradcli.check(forward=_forward, backward=_backward(shares), tensors=_case())
    assert r.passed, r.verdict()


# a sum other than 1 (1.2: x and lo's full shares, a sum of 2, failed alike, 8 s more), and a
# negative share summing to 1
@pytest.mark.parametrize("shares", [(0.7, 0.5, 0), (1.5, -0.5, 0)], ids=["sum-1.2", "negative"])
def test_wrong_rules_at_triple_ties_fail(shares):
    r = gradcli.check(forward=_forward, backward=_backward(shares), tensors=_case())
    assert not r.passed
    failed = {n for n, res in r.results.items() if not res.passed}
    assert failed & {"x", "lo"}, r.verdict()
    assert "not verified" not in r.verdict(), r.verdict()
