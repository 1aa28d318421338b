"""Checking attention's intermediates (dQ, dK, dV, dS, dA) against numerical gradients of the
layer's tail from each: the numerics against the backward and the loop oracle, answer files
(.npz, .yaml, .npy --wrt) and --impl backwards, the masked-position hints, and twins that show
each check catching an injected bug."""

import dataclasses
import itertools
import json
import pathlib
import sys

import numpy as np
import pytest
import yaml

from gradcli.checking import intermediates
from gradcli.checking.check import check, compute
from gradcli.inputs.spec import load_spec
from gradcli.layers import attention
from gradcli.layers.base import same

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as ref  # noqa: E402

NAMES = ("Q", "K", "V", "S", "A")
MULTI = pathlib.Path(__file__).resolve().parent.parent / "specs/attention_causal_multihead.yaml"
HINT_S = "errors only on masked positions (j > i): dS must be 0 there"
HINT_A = "errors only on masked positions (j > i): gradcli takes dA = dH V^T everywhere"


def _spec(tmp_path, causal=True, heads=2, w_o=True, batch=(2,), T=4, seed=3):
    doc = {
        "layer": "attention", "seed": seed, "options": {"causal": causal, "heads": heads},
        "tensors": {
            "X": {"shape": [*batch, T, 6], "init": "normal"},
            "W_Q": {"shape": [6, 4], "init": "normal"}, "W_K": {"shape": [6, 4], "init": "normal"},
            "W_V": {"shape": [6, 4], "init": "normal"},
        },
    }  # fmt: skip
    if w_o:
        doc["tensors"]["W_O"] = {"shape": [4, 3], "init": "normal"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _masked(shape):
    return np.broadcast_to(~np.tri(shape[-1], dtype=bool), shape)


GRID = list(itertools.product([False, True], [1, 2], [False, True], [(), (2,)]))


@pytest.mark.parametrize(("causal", "heads", "w_o", "batch"), GRID)
def test_numerical_intermediate_gradients_equal_the_backward_and_the_loops(
    tmp_path, causal, heads, w_o, batch
):
    spec = load_spec("attention", str(_spec(tmp_path, causal, heads, w_o, batch)))
    comp = compute(spec)
    engines = intermediates.engines(spec, NAMES)
    t = {n: np.asarray(a) for n, a in spec.tensors.items()}
    g = np.asarray(spec.grad_output)
    for name in NAMES:
        numeric, info = engines[name].gradient(name)
        assert np.isfinite(numeric).all() and not info.note
        scale = np.abs(numeric).max()
        np.testing.assert_allclose(comp.intermediates["d" + name], numeric, atol=1e-8 * scale)
        plain, _ = engines[name].gradient(name, coloring=False)
        np.testing.assert_allclose(plain, numeric, atol=1e-8 * scale)
        if causal and name == "S":  # the tail re-applies the mask: not a step, not a nan
            assert np.all(numeric[_masked(numeric.shape)] == 0)
        per_head = numeric.reshape((*batch, heads, *numeric.shape[-2:]))
        for b in np.ndindex(*batch):
            loops = ref.attention_intermediate_grads_opts(
                g[b], t["X"][b], t["W_Q"], t["W_K"], t["W_V"], t.get("W_O"), causal, heads
            )[name]
            np.testing.assert_allclose(per_head[b], loops, atol=1e-8 * scale, err_msg=name)


@pytest.mark.parametrize("method", ["central", "forward", "backward", "central4", "complex"])
def test_every_method_gives_an_exact_zero_at_masked_scores(tmp_path, method):
    spec = load_spec("attention", str(_spec(tmp_path)))
    numeric, _ = intermediates.engines(spec, ("S",), method=method)["S"].gradient("S")
    assert np.isfinite(numeric).all() and np.all(numeric[_masked(numeric.shape)] == 0)
    ours = compute(spec).intermediates["dS"]
    np.testing.assert_allclose(numeric, ours, atol=1e-6 * np.abs(ours).max())


def test_twins_a_wrong_dS_and_a_wrong_footprint_are_caught(tmp_path):
    spec = load_spec("attention", str(_spec(tmp_path)))
    comp = compute(spec)
    numeric, _ = intermediates.engines(spec, ("S",))["S"].gradient("S")
    no_rowsum = comp.intermediates["A"] * comp.intermediates["dA"]  # the classic wrong dS
    assert np.abs(numeric - no_rowsum).max() > 1e-3 * np.abs(numeric).max()

    def wrong(name, s, options=None):  # K's row j moves every output row, not only row j
        info, fp = attention.tail_info(name, s, options)
        return info, (*fp[:-2], same(1, s["X"][-2]), None) if name == "K" else fp

    lying = dataclasses.replace(spec, layer=dataclasses.replace(spec.layer, tail_info=wrong))
    dK, info = intermediates.engines(lying, ("K",))["K"].gradient("K")
    assert "declared footprint of K is wrong" in info.note and not info.coloring
    np.testing.assert_allclose(dK, comp.intermediates["dK"], atol=1e-8 * np.abs(dK).max())


def _answers(bad=None):
    """The built-in intermediates' gradients of the multi-head causal example, maybe broken."""
    comp = compute(load_spec("attention", str(MULTI)))
    out = {n: np.array(comp.intermediates["d" + n]) for n in NAMES}
    if bad:
        bad(out)
    return out


def _write(tmp_path, answers, fmt):
    if fmt == "yaml":
        path = tmp_path / "answers.yaml"
        path.write_text(yaml.safe_dump({"d" + n: a.tolist() for n, a in answers.items()}))
        return [path]
    if fmt == "npy":
        np.save(tmp_path / "dS.npy", answers["S"])
        return [tmp_path / "dS.npy", "--wrt", "S"]
    keys = {("d" + n if fmt == "npz-d" else n): a for n, a in answers.items()}
    np.savez(tmp_path / "answers.npz", **keys)
    return [tmp_path / "answers.npz"]


def _one_off(out):
    out["S"][1, 0, 2, 1] += 1e-3


@pytest.mark.parametrize("fmt", ["npz", "npz-d", "yaml", "npy"])
@pytest.mark.parametrize("bad", [None, _one_off], ids=["right", "one-wrong-dS"])
def test_answer_files_with_intermediates(cli, tmp_path, fmt, bad):
    args = _write(tmp_path, _answers(bad), fmt)
    result = cli("check", "attention", MULTI, "--grads", *args, "--format", "json")
    assert result.exit_code == (1 if bad else 0), result.stderr
    doc = json.loads(result.stdout)
    checked = {"S"} if fmt == "npy" else set(NAMES)
    assert set(doc["results"]) == checked and set(doc["builtin"]) == checked
    assert doc["not_checked"] == ["X", "W_Q", "W_K", "W_V", "W_O"]
    for name, r in doc["results"].items():
        assert r["intermediate"] is True and r["passed"] == (name != "S" or bad is None)
        assert {"max_abs_error", "worst_index", "analytic", "numeric", "hints", "band"} <= set(r)
    if bad:
        s = doc["results"]["S"]
        assert s["worst_index"] == [1, 0, 2, 1] and s["worst"][0]["index"] == [1, 0, 2, 1]
        assert s["shape"] == [2, 2, 5, 5] and not any("masked" in h["text"] for h in s["hints"])


def _float32_dS(bad=False):
    """The built-in float32 dS of the multi-head causal example; ``bad``: one element off by 1e-3
    of dS's largest entry."""
    dS = np.array(compute(load_spec("attention", str(MULTI), dtype="float32")).intermediates["dS"])
    if bad:
        dS[1, 0, 2, 1] += 1e-3 * np.abs(dS).max()
    return dS


@pytest.mark.parametrize("bad", [False, True], ids=["right", "one-wrong-dS"])
def test_float32_answer_gets_its_round_off_level(cli, tmp_path, bad):
    """A float32 dS answer is reported with dS's float32 round-off (our float32 backward against
    float64 on the same inputs), as a tensor is; it only raises the default atol to what float32
    resolves, so one element off by 1e-3 of dS's scale still fails."""
    np.save(tmp_path / "dS.npy", _float32_dS(bad))
    args = ("check", "attention", MULTI, "--dtype", "float32", "--grads", tmp_path / "dS.npy",
            "--wrt", "S")  # fmt: skip
    result = cli(*args, "--format", "json")
    assert result.exit_code == (1 if bad else 0), result.stderr
    s = json.loads(result.stdout)["results"]["S"]
    assert s["passed"] == (not bad) and 0 < s["float32_roundoff"] < 1e-5
    if bad:
        assert s["worst_index"] == [1, 0, 2, 1]
    assert "dS: float32 round-off" in cli(*args).stdout


def _s_at_masked(out):
    out["S"][0, 1, 1, 3] = 0.25
    out["S"][1, 0, 0, 4] = -0.5


def _s_unmasked(out):
    out["S"][0, 1, 3, 1] += 0.25
    out["S"][1, 0, 4, 0] -= 0.5


def _a_zeroed(out):
    out["A"][_masked(out["A"].shape)] = 0.0


@pytest.mark.parametrize(
    ("bad", "name", "hint"),
    [(_s_at_masked, "S", HINT_S), (_a_zeroed, "A", HINT_A), (_s_unmasked, "S", None)],
)
def test_masked_position_hints(cli, tmp_path, bad, name, hint):
    args = _write(tmp_path, _answers(bad), "npz")
    doc = json.loads(cli("check", "attention", MULTI, "--grads", *args, "--format", "json").stdout)
    assert not doc["passed"] and [n for n, r in doc["results"].items() if not r["passed"]] == [name]
    hints = doc["results"][name]["hints"]
    if hint is None:  # the twin: errors off the mask never get the masked hint
        assert not any("masked" in h["text"] for h in hints)
    else:
        assert len(hints) == 1 and hints[0]["text"].startswith(hint)
        table = cli("check", "attention", MULTI, "--grads", *args)
        assert table.exit_code == 1 and f"hint: {hint}" in " ".join(table.stdout.split())


def test_no_masked_hint_without_the_causal_mask(tmp_path):
    spec = load_spec("attention", str(_spec(tmp_path, causal=False)))
    dS = np.array(compute(spec).intermediates["dS"])
    dS[_masked(dS.shape)] += 0.1  # j > i, but nothing is masked there
    r = check(spec, grads={"S": dS}).results["S"]
    assert not r.passed and not any("masked" in h for h in r.hints)


def test_table_names_intermediate_elements_and_draws_their_T_by_T_heatmap(cli, tmp_path):
    args = _write(tmp_path, _answers(_one_off), "npz")
    out = cli("check", "attention", MULTI, "--grads", *args).stdout
    assert "dS[b0=1, a=0, i=2, j=1]" in out and "dS: the failing element" in out
    heat = out.split("dS: error / tolerance")[1]
    rows = heat.splitlines()[1:7]
    assert rows[0] == "[b0=1, a=0]" and rows[1] == "0 . . . . ."  # T x T, one character each
    assert rows[3] == "2 . # . . ."  # dS[i=2, j=1], readable without colour


@pytest.mark.parametrize("mode", ["sample", "probe"])
@pytest.mark.parametrize("bad", [None, _one_off], ids=["right", "one-wrong-dS"])
def test_sample_and_probe_modes(tmp_path, mode, bad):
    spec = load_spec("attention", str(MULTI))
    report = check(spec, grads=_answers(bad), mode=mode, samples=200)
    assert report.passed == (bad is None)
    if bad:
        assert report.results["S"].worst_index == (1, 0, 2, 1)


def test_wrong_shape_of_an_intermediate_answer_is_an_input_error(cli, tmp_path, assert_usage_error):
    answers = _answers()
    answers["A"] = answers["A"][..., :4]
    (path,) = _write(tmp_path, answers, "npz-d")
    result = cli("check", "attention", MULTI, "--grads", path)
    assert_usage_error(result, str(path), "dA", "[2, 2, 5, 4]", "[2, 2, 5, 5]", "intermediate A")


def test_unknown_key_names_the_tensors_and_intermediates(cli, tmp_path, assert_usage_error):
    np.savez(tmp_path / "odd.npz", dH=np.zeros((2, 5, 6)))
    result = cli("check", "attention", MULTI, "--grads", tmp_path / "odd.npz")
    assert_usage_error(result, "'dH' is not a tensor", "intermediates: Q, K, V, S, A")


def test_default_check_stays_on_the_tensors(cli_json):
    doc = cli_json("check", "attention", MULTI)
    assert set(doc["results"]) == {"X", "W_Q", "W_K", "W_V", "W_O"}
    assert not any("intermediate" in r for r in doc["results"].values())


IMPL = """
import numpy as np


def _fwd(X, W_Q, W_K, W_V, causal):
    S = (X @ W_Q) @ (X @ W_K).T / np.sqrt(W_Q.shape[1])
    if causal:
        S = np.where(np.tri(len(S), dtype=bool), S, -np.inf)
    A = np.exp(S - S.max(axis=1, keepdims=True))
    return A / A.sum(axis=1, keepdims=True)


def forward(X, W_Q, W_K, W_V, causal=False):
    return _fwd(X, W_Q, W_K, W_V, causal) @ (X @ W_V)


def backward(grad_output, X, W_Q, W_K, W_V, causal=False):
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V
    A, s = _fwd(X, W_Q, W_K, W_V, causal), 1 / np.sqrt(W_Q.shape[1])
    dV, dA = A.T @ grad_output, grad_output @ V.T
    dA = BUG(dA)
    dS = A * (dA - (dA * A).sum(axis=1, keepdims=True))
    dQ, dK = dS @ K * s, dS.T @ Q * s
    return {"X": dQ @ W_Q.T + dK @ W_K.T + dV @ W_V.T, "W_Q": X.T @ dQ, "W_K": X.T @ dK,
            "W_V": X.T @ dV, "Q": dQ, "K": dK, "V": dV, "S": SHAPE(dS), "A": dA}
"""
RIGHT = {"BUG(dA)": "dA", "SHAPE(dS)": "dS"}
ZEROED = {"BUG(dA)": "np.where(np.tri(len(A), dtype=bool), dA, 0.0)", "SHAPE(dS)": "dS"}


@pytest.mark.parametrize("edits", [RIGHT, ZEROED], ids=["right", "dA-zeroed-at-masked"])
def test_impl_backward_returning_intermediates(cli, tmp_path, write_spec, edits):
    body = IMPL
    for old, new in edits.items():
        body = body.replace(old, new)
    module = tmp_path / "mine.py"
    module.write_text(body)
    spec = write_spec("options: {causal: true}\ntensors:\n  X: {shape: [5, 6], init: normal}\n"
                      "  W_Q: {shape: [6, 4], init: normal}\n  W_K: {shape: [6, 4], init: normal}\n"
                      "  W_V: {shape: [6, 3], init: normal}\n")  # fmt: skip
    result = cli("check", "attention", spec, "--impl", module, "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["forward"]["passed"] and set(NAMES) <= set(doc["results"])
    assert all(doc["results"][n]["intermediate"] for n in NAMES)
    if edits is RIGHT:
        assert result.exit_code == 0 and doc["passed"]
    else:  # dA is the only wrong one: dS = A * (...) is 0 at the masked positions anyway
        assert result.exit_code == 1
        assert [n for n, r in doc["results"].items() if not r["passed"]] == ["A"]
        assert doc["results"]["A"]["hints"][0]["text"].startswith(HINT_A)


def test_impl_intermediate_of_the_wrong_shape(cli, tmp_path, example_spec, assert_usage_error):
    module = tmp_path / "mine.py"
    module.write_text(IMPL.replace("BUG(dA)", "dA").replace("SHAPE(dS)", "dS[:, :2]"))
    result = cli("check", "attention", example_spec("attention"), "--impl", module)
    assert_usage_error(result, "mine.py", "'S'", "[5, 2]", "[5, 5]")
