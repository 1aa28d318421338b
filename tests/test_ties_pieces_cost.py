"""What the search for ties no coordinate sees (numeric/pieces.py) costs a user's layer, which
is one forward call per copy. A correct loop max-pool at 0/1 inputs took 17,000 calls (10 s of
CPU, counted as 2.7): every coordinate with a central difference of 0 (an input that wins no
window) was moved against each of its ~50 equal values, 4 copies a pair. Only a coordinate that
moves nothing alone starts a group now, and one of a crowded value only once flipping its sign
in the value's random-sign moves shows it interacting. Oracle: the pieces written by hand (a
window's valid gradients route each output to one of its tied maxima); the twins: wrong
routings still fail, and a middle of three among many equal values is still found."""

import json

import numpy as np
import pytest

import gradcli

X = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=float)
POOL_X = np.stack([X, X[::-1]], -1)[None]  # (1, 4, 4, 2): ties in most windows
POOL_G = np.random.default_rng(2).standard_normal((1, 3, 3, 2))


def _pool(x):
    """A student's 2x2 max-pool at stride 1: a loop over windows, one output each."""
    z = np.zeros((x.shape[0], x.shape[1] - 1, x.shape[2] - 1, x.shape[3]))
    for i in range(z.shape[1]):
        for j in range(z.shape[2]):
            z[:, i, j] = x[:, i : i + 2, j : j + 2].reshape(x.shape[0], 4, -1).max(1)
    return z


def _pool_backward(route):
    """Each window's gradient to its tied maxima by ``route`` (window values, max) -> mask."""

    def backward(grad_output, x):
        dx = np.zeros_like(x)
        for i in range(grad_output.shape[1]):
            for j in range(grad_output.shape[2]):
                win = x[:, i : i + 2, j : j + 2].reshape(x.shape[0], 4, -1)
                mask = route(win, win.max(1, keepdims=True), (i, j))
                g = mask * grad_output[:, i, j][:, None]
                dx[:, i : i + 2, j : j + 2] += g.reshape(x.shape[0], 2, 2, -1)
        return {"x": dx}

    return backward


def _first(win, m, at):
    mask = np.zeros_like(win)
    np.put_along_axis(mask, np.argmax(win, 1)[:, None], 1.0, 1)
    return mask


def _check_pool(route):
    calls = []

    def forward(x):
        calls.append(1)
        return _pool(x)

    r = gradcli.check(forward=forward, backward=_pool_backward(route), tensors={"x": POOL_X},
                      grad_output=POOL_G)  # fmt: skip
    return r, len(calls)


def test_a_loop_max_pool_at_ties_passes_in_few_forward_calls():
    r, calls = _check_pool(_first)
    assert r.passed, str(r)
    # 1,009 before, 396, then 598 with each kink's group held to its sum (t26 F7: one call
    # of 4 copies a group) (the check itself: about 150)
    assert calls < 700, calls


@pytest.mark.parametrize("route", ["every tied", "dropped window"])
def test_a_loop_max_pool_routing_wrongly_at_ties_still_fails(route):
    def every(win, m, at):  # a mask `>=`: every tied maximum the whole gradient
        return (win >= m) * 1.0

    def dropped(win, m, at):  # the last window forgotten
        return _first(win, m, at) * (at != (2, 2))

    r, _ = _check_pool(every if route == "every tied" else dropped)
    assert not r.passed, str(r)


def _nothing(grad_output, a, b, c):
    """max(min(a, b), c)'s strict masks: no tied input gets anything (0 within each one's own
    slopes: only the group tells)."""
    m = np.minimum(a, b)
    return {"a": grad_output * ((a < b) & (m > c)), "b": grad_output * ((b < a) & (m > c)),
            "c": grad_output * (c > m)}  # fmt: skip


def _nested_check(values, backward, **kw):
    return gradcli.check(forward=lambda a, b, c: np.maximum(np.minimum(a, b), c),
                         backward=backward, tensors={"a": values, "b": values.copy(),
                                                     "c": values.copy()},
                         grad_output=np.linspace(-1.0, 1.3, values.size), **kw)  # fmt: skip


def test_a_middle_of_three_among_many_equal_values_is_still_found():
    # 12 coordinates at 0 (more than PAIRWISE): the random-sign screen picks the silent ones
    # that interact before their pairs are moved
    r = _nested_check(np.zeros(4), _nothing)
    assert not r.passed, str(r)

    def first(grad_output, a, b, c):  # the twin: every tie to a, a piece's gradient
        return {"a": grad_output, "b": np.zeros_like(b), "c": np.zeros_like(c)}

    r = _nested_check(np.zeros(4), first)
    assert r.passed, str(r)


def _notes(budget):
    doc = json.loads(_nested_check(np.arange(9.0), _nothing, budget=budget).to_json())
    return " ".join(doc["notes"])


def test_the_search_stops_at_the_budget_and_says_so():
    said = _notes(0.01)
    # a and b: c, at a kink, moves something alone
    assert "2 coordinates that passed sit at ties of equal values not searched" in said, said
    assert "at 8 ties of equal values" in said, said  # FLOOR groups, whatever the budget


def test_the_search_reaches_every_tie_within_the_budget():
    said = _notes(60.0)  # the twin of the above
    assert "not searched" not in said and "at 9 ties of equal values" in said, said


def test_a_middle_of_three_among_too_many_equal_values_is_said_unsearched():
    # 66 coordinates at 0 (more than CANDIDATES): moving each member of a group against the
    # others took 16,000 copies; the screen sees them interact and a note says they were left
    # out (they passed in silence). The twin above: at 12 they are searched, and fail
    doc = json.loads(_nested_check(np.zeros(22), _nothing).to_json())
    said = " ".join(doc["notes"])
    assert "44 coordinates that passed are tied with more than 64 equal values" in said, said


class _Counted:
    """numpy, as numeric/pieces.py sees it, counting np.sort: one call per coordinate the
    search's loop takes up."""

    def __init__(self):
        self.sorts = 0

    def __getattr__(self, name):
        return getattr(np, name)

    def sort(self, *a, **k):
        self.sorts += 1
        return np.sort(*a, **k)


def _embedding(idx, W):
    return W[idx]


def _embedding_backward(grad_output, idx, W):
    dW = np.zeros_like(W)
    np.add.at(dW, idx, grad_output)
    return {"W": dW}


@pytest.mark.parametrize("pair", [False, True])
def test_a_value_no_other_coordinate_holds_is_not_searched(monkeypatch, pair):
    """A user's embedding: the unread rows of W are silent (a central difference of 0) and,
    drawn, each value is its own: no tie to search, and none taken up one by one (0.6 s of CPU
    for the 60,000 of an M-size embedding, estimated at 0.012 s: a sort each). The twin: two
    equal silent values are taken up, and the counter sees the search's loop."""
    from gradcli.numeric import pieces

    counted = _Counted()
    monkeypatch.setattr(pieces, "np", counted)
    W = np.random.default_rng(0).standard_normal((200, 4))
    if pair:
        W[-1, 0] = W[-2, 0]
    report = gradcli.check("embedding", {"idx": np.array([[0, 1, 2]]), "W": W}, seed=0,
                           forward=_embedding, backward=_embedding_backward)  # fmt: skip
    assert report.passed
    assert counted.sorts < 8, counted.sorts  # each of the 780 silent coordinates took one
    assert (counted.sorts > 1) is pair, counted.sorts


def test_a_builtin_layers_ties_are_not_searched(monkeypatch):
    """A built-in layer says where its kinks are, or has none: embedding's equal values of W
    (rows read by no index, tied) are not searched; the twin above, a user's embedding, is."""
    from gradcli.numeric import pieces

    counted = _Counted()
    monkeypatch.setattr(pieces, "np", counted)
    W = np.ones((200, 4))
    report = gradcli.check("embedding", {"idx": np.array([[0, 1, 2]]), "W": W}, seed=0)
    assert report.passed and counted.sorts == 0
