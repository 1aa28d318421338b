"""A user's forward at many copies (user/impl.py's ``rows``): past the first call, the checks
of each call are made once for the copies. Oracle: the same check with every copy called
alone through the whole path of one call (``read_only_rows`` refusing, as where a run does
not cover the arrays) gives the same report, or the same error, word for word, for forwards
that misbehave only at some steps from the spec's tensors."""

import json
import warnings

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError
from gradcli.user import readonly

X = np.random.default_rng(0).normal(size=(3, 4))
AT = (1, 2)  # the element whose steps the forwards below misbehave at


def _stepped(x):  # a step of one element (not the moves of every element made before)
    return x[AT] != X[AT] and x[0, 0] == X[0, 0]


def _tanh_back(grad_output, x):
    return {"x": grad_output * (1 - np.tanh(x) ** 2)}


def _nan(x):
    return np.tanh(x) + (np.nan if _stepped(x) else 0.0)


def _shape(x):
    y = np.tanh(x)
    return y[:2] if _stepped(x) else y


def _dtype(x):
    y = np.tanh(x)
    return y.astype(np.float32) if _stepped(x) else y


def _raises(x):
    if _stepped(x):
        raise ValueError("math domain error")
    return np.tanh(x)


def _writes(x):
    if _stepped(x):
        x[0, 0] = 0.0
    return np.tanh(x)


def _sneaks(x):  # past the read-only flag: the write is found after the run
    if _stepped(x):
        x.flags.writeable = True
        x[0, 0] += 1.0
    return np.tanh(x)


_CACHE = np.zeros((3, 4))


def _one_buffer(x):  # the same array returned by every call, overwritten by the next
    np.tanh(x, out=_CACHE)
    return _CACHE


def _warns(x):
    if _stepped(x):
        warnings.warn("a step warned", UserWarning, stacklevel=1)
    return np.tanh(x)


def _listed(x):
    return [list(r) for r in np.tanh(x)]


def _json(report):
    d = json.loads(report.to_json(values=True))
    d.pop("cost")  # seconds
    return d


def _run(forward, fast, monkeypatch, **kw):
    if not fast:
        monkeypatch.setattr(readonly, "read_only_rows", lambda *a: None)
    try:
        r = gradcli.check(forward=forward, backward=_tanh_back, tensors={"x": X}, **kw)
    except GradcliError as e:
        return type(e).__name__, str(e)
    finally:
        monkeypatch.undo()
    return r.passed, _json(r)


@pytest.mark.parametrize("forward", [_nan, _shape, _dtype, _raises, _writes, _sneaks])
@pytest.mark.parametrize("method", ["central", "complex"])
def test_a_forward_misbehaving_at_some_steps_is_refused_as_call_by_call(
    forward, method, monkeypatch
):
    fast = _run(forward, True, monkeypatch, method=method)
    assert fast == _run(forward, False, monkeypatch, method=method)
    assert isinstance(fast[1], str), fast  # refused, not a verdict


@pytest.mark.parametrize("forward", [np.tanh, _one_buffer, _listed])
def test_a_right_forward_reads_the_same_as_call_by_call(forward, monkeypatch):
    fast = _run(forward, True, monkeypatch)
    assert fast[0] is True, fast
    assert fast == _run(forward, False, monkeypatch)


def test_twin_a_wrong_backward_fails_the_same_way(monkeypatch):
    def wrong(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x))}

    def run(fast):
        if not fast:
            monkeypatch.setattr(readonly, "read_only_rows", lambda *a: None)
        r = gradcli.check(forward=np.tanh, backward=wrong, tensors={"x": X})
        monkeypatch.undo()
        return r.passed, _json(r)

    fast = run(True)
    assert fast[0] is False and fast == run(False)


def test_a_warning_at_some_steps_is_said_once(capsys):
    r = gradcli.check(forward=_warns, backward=_tanh_back, tensors={"x": X})
    assert r.passed
    assert capsys.readouterr().err.count("a step warned") == 1


def test_options_written_by_one_copy_reach_no_other():
    """Each copy gets its own copy of the options' lists: a forward appending to one would
    otherwise see it grow from copy to copy (and here return other values)."""

    def forward(x, seen):
        seen.append(1)
        return np.tanh(x) * len(seen)

    def backward(grad_output, x, seen):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    r = gradcli.check("custom", {"x": X}, forward=forward, backward=backward,
                      options={"seen": []})  # fmt: skip
    assert r.passed, r.verdict()
