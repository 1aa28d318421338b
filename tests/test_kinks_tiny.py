"""A layer of your own near a kink closer to x than the step (outside test t21 F1, F1b).

The kink detector read both sides at H/4 and H/2 (H = eps * max(1, |x|), 6e-6): stable and
apart, so a kink at x, where any slope between passes. From x = 1e-13 the kink of |x| and relu
at 0 is crossed by one side, whose slope moves by only 3 gap x / H (1e-7 of it) as the step
halves: a sign-flipped |x|, an inverted relu mask and a zero backward passed. Oracle: the
gradients by hand, sign(x) and (x > 0), which hold at every x != 0; the numerical side itself
is compared with them at those coordinates, and the twins (the right backward) pass."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli

ROOT = Path(__file__).resolve().parents[1]


def relu(x):
    return np.maximum(x, 0)


BACKWARDS = {
    "right": lambda g, x: g * (x > 0),
    "mask >=": lambda g, x: g * (x >= 0),  # the same at every x != 0
    "inverted": lambda g, x: g * (x <= 0),
    "zeros": lambda g, x: 0 * g,
}


def _check(forward, backward, x, g):
    return gradcli.check(forward=forward, backward=lambda grad_output, x: {
        "x": backward(grad_output, x)}, tensors={"x": x}, grad_output=g)  # fmt: skip


@pytest.mark.parametrize("scale", [1e-11, 1e-13, 1e-15, 1e-20])
@pytest.mark.parametrize("seed", [0])  # 7 of 12 elements positive (seed 1: 10), one draw is enough
def test_relu_at_tiny_inputs_reads_the_piece_x_lies_on(scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4)) * scale
    g = rng.normal(size=(3, 4))
    truth = g * (x > 0)  # by hand: no x here is 0
    for name, backward in BACKWARDS.items():
        r = _check(relu, backward, x, g)
        right = np.allclose(backward(g, x), truth)
        assert r.passed is right, (name, str(r))
        if right:  # the numerical side is the truth, not just wide enough to hold it
            np.testing.assert_allclose(r.numeric["x"], truth, rtol=1e-6, atol=1e-7)
        else:  # a mismatch, read as one, not a step that could not resolve it
            assert not r.results["x"].unresolved, str(r)


@pytest.mark.parametrize("scale", [1e-13, 1e-15, 1e-20])
def test_a_sign_flipped_abs_near_zero_fails_and_the_right_one_passes(scale):
    rng = np.random.default_rng(3)
    x = rng.normal(size=8) * scale
    g = rng.normal(size=8)
    right = _check(lambda x: np.abs(x), lambda g, x: g * np.sign(x), x, g)
    assert right.passed, str(right)
    np.testing.assert_allclose(right.numeric["x"], g * np.sign(x), rtol=1e-6, atol=1e-7)
    flipped = _check(lambda x: np.abs(x), lambda g, x: -g * np.sign(x), x, g)
    assert not flipped.passed and not flipped.results["x"].unresolved, str(flipped)
    hints = flipped.results["x"].hints
    assert hints and hints[0].cause == "near-kink", hints  # not "ties": no choice there


def test_a_kink_at_x_itself_still_takes_any_slope_between():
    # the twin of the closer reading: at x == 0 the two sides stay apart at every step
    x = np.array([0.0, 0.0, 1.0, -2.0])
    g = np.array([1.0, -0.5, 2.0, 0.3])
    for backward in (lambda g, x: g * (x > 0), lambda g, x: g * (x >= 0),
                     lambda g, x: 0.5 * g * (x >= 0) + 0.5 * g * (x > 0)):  # fmt: skip
        assert _check(relu, backward, x, g).passed
    assert not _check(relu, lambda g, x: 2 * g * (x >= 0), x, g).passed


def _cli(tmp_path, backward_body, spec_x):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def forward(x):\n    return np.abs(x)\n"
        f"def backward(grad_output, x):\n    return {{'x': {backward_body}}}\n"
    )
    (tmp_path / "spec.yaml").write_text(
        f"layer: custom\ntensors:\n  x: {spec_x}\ngrad_output: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gradcli", "check", "custom", "spec.yaml",
                           "--impl", "mine.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


X_F1 = "[1.0e-13, 2.0e-13, 3.0e-13, 0.5, -0.7, 1.2]"


def test_t21_f1_repro_exits_1_and_its_twin_0_without_a_stray_note(tmp_path):
    bug = _cli(tmp_path, "grad_output * np.where(x > 1e-9, 1.0, -1.0)", X_F1)
    assert bug.returncode == 1, bug.stdout + bug.stderr
    assert "analytic -1, numeric 1" in bug.stdout, bug.stdout
    right = _cli(tmp_path, "grad_output * np.sign(x)", X_F1)
    assert right.returncode == 0, right.stdout + right.stderr
    # the kinks explained the coordinates the smaller steps left moving: no 'they fail as
    # computed' beside a PASS
    assert "still moving" not in right.stdout + right.stderr, right.stdout + right.stderr


def test_the_still_moving_note_counts_only_what_no_kink_explained():
    # the twin: coordinates left moving that no kink explains keep the note, and its count
    from gradcli.checking.kinkstage import _unsettled
    from gradcli.numeric.kinks import KinkFix
    from gradcli.numeric.refine import Refined

    refined = Refined(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), unsettled=3,
                      moving=np.array([0, 1, 2]))  # fmt: skip
    assert "3 failing coordinates were still moving" in _unsettled("x", refined, None)[0]
    one = KinkFix(np.array([1]), np.ones(1), np.zeros(1))
    assert "2 failing coordinates were still moving" in _unsettled("x", refined, one)[0]
    every = KinkFix(np.array([0, 1, 2]), np.ones(3), np.zeros(3))
    assert _unsettled("x", refined, every) == []


def test_builtin_relu_at_tiny_inputs_unchanged():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4)) * 1e-13
    g = rng.normal(size=(3, 4))
    truth = g * (x > 0)
    assert gradcli.check("relu", {"x": x}, grad_output=g, grads={"x": truth}).passed
    for wrong in (g - truth, 0 * truth):
        assert not gradcli.check("relu", {"x": x}, grad_output=g, grads={"x": wrong}).passed
