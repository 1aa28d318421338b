"""Round-off is no kink: the generic detector (numeric/kinks.py, for a layer of the user's)
measures a candidate kink's round-off on lines off the step grid.

A confident classifier's loss of 1e-9 is log(1 + 1e-9), rounded at the 1: a step of a logit
moves it by some of 1's last bits and a fraction, the same at every step. On the equally spaced
line x + k h that rounding drifts evenly and reads as smooth: ECnoise (methods.line_noise) read
2e-22 on one side where the rounding's spread is 4e-18, and two one-sided slopes apart by that
round-off were a kink. A correct softmax cross-entropy of the user's under --method backward
read 'dx: 3 coordinates at a kink (the stencil met a point where the forward has no
derivative)'; 31 of 720 random confident classifiers (forward, backward and central
differences) were reported at kinks, one after (with the refinement that stops below the
rounding: test_refine_flat.py).

Oracle: the loss in extended precision (np.longdouble, the others' share through log1p) gives
each point's round-off; the gradient written without cancellation. Twins: a wrong gradient at
the coordinates read at kinks before still fails, and a real kink at the same point (|x - c| at
x = c) is still read as one: its subgradient passes, a slope beyond it fails.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import gradcli
from gradcli.numeric import kinks, methods

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_refine_flat import _probs, confident, loss  # noqa: E402  (the same classifier)


def gradient(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(softmax(x) - onehot(y)) / N, the label's entry as minus the others' sum (no 1 - p)."""
    p = _probs(x)
    g = p.copy()
    g[np.arange(len(y)), y] = -(p.sum(axis=1) - p[np.arange(len(y)), y])
    return g / len(y)


def exact_loss(x: np.ndarray, y: np.ndarray) -> np.longdouble:
    """The oracle: each row's -log p_y = log1p(sum of the others' exp(x_j - x_y)), in
    np.longdouble (the label leads every row here)."""
    z = x.astype(np.longdouble) - x[np.arange(len(y)), y].astype(np.longdouble)[:, None]
    z[np.arange(len(y)), y] = -np.inf
    return np.log1p(np.exp(z).sum(axis=1)).mean()


def check(t, method, wrong=None):
    def backward(grad_output, x, y):
        g = gradient(x, y)
        if wrong is not None:
            g.flat[wrong[0]] *= wrong[1]
        return {"x": grad_output * g}

    return gradcli.check(forward=loss, backward=backward, tensors=t, method=method)


def test_the_round_off_of_a_confident_loss_is_read_off_the_grid():
    """Along dx[2, 3] at margin 16, on the detector's lines (a quarter of backward's step):
    the equally spaced line's ECnoise is 4 orders below the oracle's spread of the rounding
    on one side; what a cubic leaves off the grid is that spread, on both sides."""
    t = confident(6, 16)
    x, y, j = t["x"], t["y"], 13
    h = methods.steps(x.flat[j : j + 1], methods.METHODS["backward"].auto_eps)[0] / 4

    def line(moves):
        got, err = [], []
        for s in np.concatenate([[0.0], moves]):
            z = x.copy()
            z.flat[j] += s * h
            got.append(loss(z, y))
            err.append(float(loss(z, y) - exact_loss(z, y)))
        return np.array(got[1:]) - got[0], np.std(err)

    D, spread = line(-np.arange(1.0, 7.0))
    assert 2e-18 < spread < 2e-17, spread  # the rounding at the 1, over 8 examples
    assert methods.line_noise(D[:, None])[0] < 1e-4 * spread  # the even drift, read as smooth
    for moves in (kinks.RIGHT_MOVES, kinks.LEFT_MOVES):
        D, spread = line(np.array(moves))
        assert 4e-18 < spread < 2e-17, spread
        got = methods.offgrid_noise(np.array(moves), D[:, None])[0]
        assert spread / 4 < got < 4 * spread, (got, spread)


# each a correct backward reported at kinks before (PASS, or 'cannot resolve' at this step)
@pytest.mark.parametrize(("method", "margin", "seed"), [
    ("backward", 16, 0), ("backward", 16, 6), ("backward", 16, 7), ("backward", 20, 7),
    ("forward", 16, 11), ("forward", 20, 15), ("forward", 28, 6),
])  # fmt: skip
def test_round_off_is_no_kink_of_a_confident_cross_entropy(method, margin, seed):
    t = confident(seed, margin)
    report = check(t, method)
    x = report.results["x"]
    assert x.kinks == 0, (x.kink_at, report.verdict())
    assert report.passed or x.unresolved, report.verdict()


# a zeroed and a sign-flipped element (a halved one, 0.5, was a scale as the flip is)
@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_a_wrong_gradient_where_a_kink_was_read_still_fails(factor):
    t = confident(6, 16)
    for j in (13, 21, 38):  # the three read at kinks before
        assert not check(t, "backward", wrong=(j, factor)).passed, (j, factor)


@pytest.mark.parametrize("size", [1e-6, 1e-7])
def test_a_real_kink_in_the_confident_loss_is_still_read(size):
    """|x - c| added at dx[2, 3] with c = x there: a kink at x itself, slopes g -+ size; the
    subgradient sign(0) = 0 passes, a slope of 3 size fails (the interval is [-size, size])."""
    t = confident(6, 16)
    j, c = 13, float(t["x"].flat[13])

    def forward(x, y):
        return loss(x, y) + size * abs(x.flat[j] - c)

    def backward(slope):
        def run(grad_output, x, y):
            g = gradient(x, y)
            g.flat[j] += size * (np.sign(x.flat[j] - c) if x.flat[j] != c else slope)
            return {"x": grad_output * g}

        return run

    right = gradcli.check(forward=forward, backward=backward(0.0), tensors=t, method="backward")
    assert right.passed and 13 in right.results["x"].kink_at, right.verdict()
    wrong = gradcli.check(forward=forward, backward=backward(3.0), tensors=t, method="backward")
    assert not wrong.passed, wrong.verdict()


def test_the_command_line_reports_no_kink(tmp_path, cli):
    """The case as a user runs it: `gradcli check custom SPEC --impl my_loss.py --method
    backward` printed 'dx: 3 coordinates at a kink' under its PASS."""
    t = confident(6, 16)
    np.save(tmp_path / "scores.npy", t["x"])
    np.save(tmp_path / "labels.npy", t["y"])
    (tmp_path / "spec.yaml").write_text(
        "layer: custom\ntensors:\n  x: scores.npy\n  y: labels.npy\n", encoding="utf-8")
    (tmp_path / "my_loss.py").write_text(
        "import numpy as np\n\n\n"
        "def _probs(x):\n"
        "    e = np.exp(x - x.max(axis=1, keepdims=True))\n"
        "    return e / e.sum(axis=1, keepdims=True)\n\n\n"
        "def forward(x, y):\n"
        "    return -np.log(_probs(x)[np.arange(len(y)), y]).mean()\n\n\n"
        "def backward(grad_output, x, y):\n"
        "    p = _probs(x)\n"
        "    p[np.arange(len(y)), y] -= 1\n"
        "    return {'x': grad_output * p / len(y)}\n", encoding="utf-8")  # fmt: skip
    result = cli("check", "custom", tmp_path / "spec.yaml", "--impl", tmp_path / "my_loss.py",
                 "--method", "backward")  # fmt: skip
    assert result.exit_code == 0, result.stdout
    assert "kink" not in result.stdout, result.stdout
