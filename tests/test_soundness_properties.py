"""Property: a wrong gradient never passes. Random wrong answers, made from the correct gradients
of every registry layer (default and example specs) by perturbations beyond tolerance, sign
flips, scalings, zeros and NaN/inf, go through the whole check (``check(spec, grads=...)``, as
``--grads`` does) and must fail, each naming the wrong tensor; their twin, the correct answer
itself, passes."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gradcli.checking.check import check, compute, default_tolerances
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY

SPECS = Path(__file__).resolve().parent.parent / "specs"
CASES = [(layer, None) for layer in REGISTRY] + [
    (yaml.safe_load(path.read_text())["layer"], str(path)) for path in sorted(SPECS.glob("*.yaml"))
]
SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is never a fluke
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
WRONGS = ("perturb", "noise", "flip", "scale", "zeros", "nonfinite")


@functools.cache
def _correct(case: tuple[str, str | None]):
    """The spec, its correct gradients, the numerical ones and each tensor's tolerance."""
    spec = load_spec(*case)
    grads = {n: np.array(g, dtype=np.float64) for n, g in compute(spec).gradients.items()}
    report = check(spec, grads=grads)
    _, numeric = report.computation, report.numeric
    assert report.passed, case  # the twin: the correct answers pass
    kinks = {n: np.asarray(r.kink_at, dtype=np.int64) for n, r in report.results.items()}
    return spec, grads, numeric, {n: r.atol for n, r in report.results.items()}, kinks


def _wrong(data: st.DataObject, kind: str, g: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    flat = g.ravel().copy()
    k = data.draw(st.integers(1, flat.size), label="elements")
    where = rng.choice(flat.size, size=k, replace=False)
    if kind == "perturb":  # a few elements moved by up to a million tolerances
        size = 10 ** data.draw(st.floats(-6, 2), label="log10 size")
        flat[where] += size * rng.choice([-1.0, 1.0], size=k) * (1 + np.abs(flat[where]))
    elif kind == "noise":  # every element jittered
        flat += 10 ** data.draw(st.floats(-6, 1), label="log10 noise") * rng.standard_normal(
            flat.size
        )
    elif kind == "flip":
        flat[where] *= -1
    elif kind == "scale":
        flat[where] *= data.draw(st.floats(-10, 10, allow_nan=False), label="factor")
    elif kind == "zeros":
        flat[where] = 0.0
    else:
        flat[where] = rng.choice([np.nan, np.inf, -np.inf], size=k)
    return flat.reshape(g.shape)


@settings(SETTINGS, max_examples=150)
@given(data=st.data())
def test_random_wrong_gradients_never_pass(data):
    case = data.draw(st.sampled_from(CASES), label="case")
    spec, grads, numeric, atols, kinks = _correct(case)
    name = data.draw(st.sampled_from(sorted(grads)), label="tensor")
    kind = data.draw(st.sampled_from(WRONGS), label="wrong")
    wrong = _wrong(data, kind, grads[name])
    if kind != "nonfinite":
        # the oracle of "wrong": some element off by more than twice its tolerance (the
        # correct answer itself may sit anywhere within one), away from kinks (relu at 0:
        # any slope between the two sides' is right there, issue 14)
        rtol = default_tolerances(spec.dtype, "central")[1]
        n = numeric[name]
        off = np.abs(wrong - n) > 2 * (atols[name] + rtol * np.abs(n))
        off.flat[kinks[name]] = False
        assume(np.any(off))
    report = check(spec, grads={**grads, name: wrong})
    assert not report.passed
    assert not report.results[name].passed
    assert all(r.passed for n, r in report.results.items() if n != name)


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_nan_or_inf_anywhere_never_passes_in_any_mode(data):
    """Sample and probe modes compare fewer coordinates; a non-finite answer still fails,
    wherever it is (the analytic side costs nothing to look at)."""
    case = data.draw(st.sampled_from(CASES), label="case")
    spec, grads, _, _, _ = _correct(case)
    name = data.draw(st.sampled_from(sorted(grads)), label="tensor")
    wrong = _wrong(data, "nonfinite", grads[name])
    mode = data.draw(st.sampled_from(["sample", "probe"]), label="mode")
    report = check(spec, grads={**grads, name: wrong}, mode=mode, samples=2)
    assert not report.passed and not report.results[name].passed
    assert report.results[name].nonfinite >= 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[1] and Path(c[1]).name or c[0])
@pytest.mark.parametrize("mode", ["sample", "probe"])
def test_correct_answers_pass_in_every_mode(case, mode):
    spec, grads, _, _, _ = _correct(case)
    assert check(spec, grads=grads, mode=mode, samples=2).passed
