"""A float64 forward with a float32 branch beside its float64 path (outside test t28 R5):
``tanh(x32) + x`` is not blind to moves float32 cannot hold, yet its loss jumps by float32's
last bits; differenced at float64's steps, a correct backward failed (0.20 read for 0.31).
numeric/jumps.py reads it as float32 work. Oracles: the formulas' own derivatives, and a
detector run on forwards whose precision is known by construction; every verdict has a twin
with an injected bug, and float64 forwards that round, vary fast or cancel stay float64."""

import numpy as np
import pytest

import gradcli
from gradcli.numeric import jumps

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 4))
W = RNG.standard_normal((4, 5))


class _Forward:
    """A forward in the shape jumps.float32_jumps calls: (tensors, options) -> (out, cache)."""

    def __init__(self, f):
        self.f = f

    def forward(self, t, options):
        return self.f(**t), None


def _branch(x):
    return np.tanh(x.astype(np.float32)).astype(np.float64) + x


def _small_branch(x):
    return 1e-3 * np.tanh(x.astype(np.float32)) + x


def _amp(x, W):
    return (x.astype(np.float32) @ W.astype(np.float32)).astype(np.float64) + x.sum()


def _layernorm_1e8(x):
    return (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)


FLOAT32 = {
    "tanh32 + x": (_branch, {"x": X}),
    "1e-3 tanh32 + x": (_small_branch, {"x": X}),
    "x32 @ W32 + sum x": (_amp, {"x": X, "W": W}),
    "tiny inputs": (_branch, {"x": 1e-6 * X}),
}
FLOAT64 = {
    "tanh": (lambda x: np.tanh(x), {"x": X}),
    "x @ W": (lambda x, W: x @ W, {"x": X, "W": W}),
    "sin(1e4 x)": (lambda x: np.sin(1e4 * x), {"x": X}),
    "sin at 1e7": (lambda x: np.sin(x), {"x": 1e7 * X}),
    "exp(30 x)": (lambda x: np.exp(30 * x), {"x": X}),
    "relu at integer ties": (lambda x, W: np.maximum(x @ W, 0),
                             {"x": np.array([[1.0, -1.0], [0.5, 2.0]]), "W": np.ones((2, 1))}),
    "layernorm of 1e8 + N(0, 1)": (_layernorm_1e8, {"x": 1e8 + RNG.standard_normal((3, 40))}),
    "abs": (lambda x: np.abs(x), {"x": X}),
}


@pytest.mark.parametrize("case", list(FLOAT32))
def test_a_float32_path_beside_float64_work_is_found(case):
    f, t = FLOAT32[case]
    assert jumps.float32_jumps(_Forward(f), t, None)


@pytest.mark.parametrize("case", list(FLOAT64))
def test_the_twin_float64_work_is_not_read_as_float32(case):
    f, t = FLOAT64[case]
    assert not jumps.float32_jumps(_Forward(f), t, None)


def _tanh_back(slope):
    def backward(grad_output, x):
        t = np.tanh(x)
        return {"x": grad_output * (slope(t) + 1.0)}

    return backward


RIGHT = _tanh_back(lambda t: 1 - t**2)
BUGS = {
    "the branch left out": _tanh_back(lambda t: 0 * t),
    "its sign flipped": _tanh_back(lambda t: t**2 - 1),
    "1% off": _tanh_back(lambda t: 1.01 * (1 - t**2)),
    "0.1% off": _tanh_back(lambda t: 1.001 * (1 - t**2)),
}


@pytest.mark.parametrize("method", ["central", "central4", "forward"])
def test_a_right_backward_of_a_float32_branch_passes_and_says_why(method):
    report = gradcli.check(forward=_branch, backward=RIGHT, tensors={"x": X}, method=method)
    assert report.passed, report.verdict()
    said = " ".join(report.notes)
    assert "its output jumps by about" in said and "float32 steps" in said, said


@pytest.mark.parametrize("bug", list(BUGS))
def test_the_twin_a_wrong_backward_of_it_fails(bug):
    report = gradcli.check(forward=_branch, backward=BUGS[bug], tensors={"x": X})
    assert not report.passed and not report.results["x"].unresolved, report.verdict()


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_one_sided_differences_of_it_fail_a_two_percent_slip(method):
    """Outside test t29a F5: at the old rtol of 1e-2 a 2% slip on the branch passed, where the
    right backward reads 5e-5 off."""
    slip = _tanh_back(lambda t: 1.02 * (1 - t**2))
    report = gradcli.check(forward=_branch, backward=slip, tensors={"x": X}, method=method)
    assert not report.passed and not report.results["x"].unresolved, report.verdict()


def test_the_cli_passes_it_and_fails_the_bug(cli, tmp_path):
    (tmp_path / "s.yaml").write_text(
        "layer: custom\nseed: 0\ntensors:\n  x: {shape: [3, 4], init: normal}\n")
    (tmp_path / "ok.py").write_text(
        "import numpy as np\n"
        "def forward(x):\n"
        "    return np.tanh(x.astype(np.float32)).astype(np.float64) + x\n"
        "def backward(grad_output, x):\n"
        "    return {'x': grad_output * (2 - np.tanh(x) ** 2)}\n")
    (tmp_path / "bad.py").write_text(
        (tmp_path / "ok.py").read_text().replace("(2 - np.tanh(x) ** 2)", "1.0"))
    ok = cli("check", "custom", str(tmp_path / "s.yaml"), "--impl", str(tmp_path / "ok.py"))
    assert ok.exit_code == 0, ok.output
    bad = cli("check", "custom", str(tmp_path / "s.yaml"), "--impl", str(tmp_path / "bad.py"))
    assert bad.exit_code == 1, bad.output


def _naive_bce(x, y):
    p = 1 / (1 + np.exp(-x))
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _bce_back(scale: float, sign: float = 1.0):
    def backward(grad_output, x, y):
        p = 1 / (1 + np.exp(-x))
        return {"x": grad_output * sign * scale * (p - y) / x.size}

    return backward


BCE = {"x": np.array([[22.0, -25.0, 27.5], [30.0, 21.0, -28.0]]),
       "y": np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])}  # fmt: skip


def test_a_naive_cross_entropy_at_confident_logits_is_not_called_wrong():
    """log(1 - p) at p = 1 - 1e-11 moves in jumps of 1's last bit (outside test t27 N11): read
    at float64's steps the right backward failed, numeric 0 for 0.167. Its lines jump as a
    float32 path's do; it cannot be resolved, and the note says either may be why."""
    report = gradcli.check(forward=_naive_bce, backward=_bce_back(1.0), tensors=BCE,
                           data=["y"])  # fmt: skip
    assert report.passed or report.results["x"].unresolved, report.verdict()
    assert any("float64 work rounding far larger numbers" in n for n in report.notes)


@pytest.mark.parametrize("scale, sign", [(1.05, 1.0), (1.0, -1.0), (6.0, 1.0)])
def test_the_twin_a_wrong_cross_entropy_backward_fails(scale, sign):
    report = gradcli.check(forward=_naive_bce, backward=_bce_back(scale, sign), tensors=BCE,
                           data=["y"])  # fmt: skip
    assert not report.passed and not report.results["x"].unresolved, report.verdict()


def _rounded_square(x):
    return np.round(x, 5) ** 2


def _square_back(scale: float):
    def backward(grad_output, x):
        return {"x": grad_output * 2 * x * scale}

    return backward


def test_an_input_rounded_coarser_than_float32_is_differenced_for_its_rounding():
    """np.round(x, 5) ** 2 is blind to moves below float32's resolution, as float32 work is,
    but jumps by 5e-6 of itself: at float32's steps a right backward failed, 0.1% read off
    (outside test t29a F7). The rounding measured sets the step and the round-off; under
    one-sided differences no step resolves it."""
    x = np.random.default_rng(0).normal(size=(3, 4))
    right = gradcli.check(forward=_rounded_square, backward=_square_back(1.0), tensors={"x": x})
    assert right.passed, right.verdict()
    assert any("round-off of about" in n for n in right.notes), right.notes
    for method in ("forward", "backward"):
        one_sided = gradcli.check(forward=_rounded_square, backward=_square_back(1.0),
                                  tensors={"x": x}, method=method)  # fmt: skip
        assert one_sided.results["x"].unresolved, one_sided.verdict()


@pytest.mark.parametrize("method", ["central", "central4"])
def test_the_twin_a_slip_of_a_rounded_square_is_not_passed(method):
    x = np.random.default_rng(0).normal(size=(3, 4))
    report = gradcli.check(forward=_rounded_square, backward=_square_back(1.05),
                           tensors={"x": x}, method=method)  # fmt: skip
    assert not report.passed, report.verdict()


def _sin32(x):
    return np.sin(x.astype(np.float32)).astype(np.float64)


@pytest.mark.parametrize("method", ["central", "forward"])
def test_a_float32_input_rounding_far_coarser_than_the_function_is_not_called_wrong(method):
    """sin(x32) at |x| = 1e6 rounds x by up to 0.03 of a radian: no step reads its slope to
    the tolerance, and the refinement's readings at small steps, 5% off by that rounding,
    failed a right backward (outside test t29a F8). Each coordinate's own rounding is now in
    its round-off; a zero backward still fails."""
    x = 1e6 * np.random.default_rng(0).normal(size=(3, 4))
    right = gradcli.check(forward=_sin32, backward=lambda grad_output, x: {
        "x": grad_output * np.cos(x)}, tensors={"x": x}, method=method)  # fmt: skip
    assert not right.passed and right.results["x"].unresolved, right.verdict()
    zero = gradcli.check(forward=_sin32, backward=lambda grad_output, x: {
        "x": np.zeros_like(x)}, tensors={"x": x}, method=method)  # fmt: skip
    assert not zero.passed and not zero.results["x"].unresolved, zero.verdict()


def _half_branch(x):
    return np.tanh(x.astype(np.float16)).astype(np.float64) + x


def _half_amp(x, W):
    return (x.astype(np.float16) @ W.astype(np.float16)).astype(np.float64) + x.sum()


FLOAT16 = {
    "tanh16 + x": (_half_branch, {"x": X}),
    "tanh16": (lambda x: np.tanh(x.astype(np.float16)).astype(np.float64), {"x": X}),
    "x16 @ W16 + sum x": (_half_amp, {"x": X, "W": W}),
}


@pytest.mark.parametrize("case", list(FLOAT16))
def test_a_float16_path_is_found_at_float16_scale(case):
    f, t = FLOAT16[case]
    assert jumps.float16_jumps(_Forward(f), t, None) >= np.finfo(np.float16).eps / 64


@pytest.mark.parametrize("case", list(FLOAT64) + list(FLOAT32))
def test_the_twin_float64_and_float32_work_is_not_read_as_float16(case):
    f, t = {**FLOAT64, **FLOAT32}[case]
    assert not jumps.float16_jumps(_Forward(f), t, None)


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_a_backward_dropping_a_float16_branch_never_passes(method):
    """Outside test t29a F1: float64 steps never cross float16's cells, the branch read
    flat, and a backward dropping it passed; the right one failed, numeric 1.8 for 3.6.
    Neither can be resolved at float16's steps."""
    drop = gradcli.check(forward=_half_branch, backward=_tanh_back(lambda t: 0 * t),
                         tensors={"x": X}, method=method)  # fmt: skip
    assert not drop.passed, drop.verdict()
    right = gradcli.check(forward=_half_branch, backward=RIGHT, tensors={"x": X}, method=method)
    assert right.passed or right.results["x"].unresolved, right.verdict()


def _square32(x):
    x32 = x.astype(np.float32)
    return (x32 * x32).astype(np.float64)


def _log1p_naive(x):
    return np.log(1 + x)


SMALL = {  # a forward read as float32 work, its right backward, its tensors, an upstream
    "x32 * x32": (_square32, lambda g, x: g * 2 * x, X),
    "log(1 + x) at 1e-9": (_log1p_naive, lambda g, x: g / (1 + x),
                           1e-9 * np.random.default_rng(1).uniform(size=(3, 4))),
}


@pytest.mark.parametrize("case", list(SMALL))
@pytest.mark.parametrize("method", ["central", "central4", "forward", "complex"])
def test_small_gradients_of_a_float32_forward_do_not_pass_a_one_percent_slip(case, method):
    """Outside test t30a F2, F3: under an upstream gradient of 1e-4 the atol of a forward read
    as float32 work was 1/100 of the largest gradient, and a backward 1% off passed with every
    method (log(1 + x) at 1e-9, blind to moves below float32's cells, was read so too, and the
    complex step, exact there, was held to float32's allowance)."""
    f, d, x = SMALL[case]
    g = 1e-4 * np.random.default_rng(2).normal(size=(3, 4))
    if method == "complex" and f is _square32:
        return  # refused: the cast drops the imaginary part
    slip = gradcli.check(forward=f, backward=lambda grad_output, x: {
        "x": 1.01 * d(grad_output, x)}, tensors={"x": x}, grad_output=g, method=method)  # fmt: skip
    assert not slip.passed, slip.verdict()
    right = gradcli.check(forward=f, backward=lambda grad_output, x: {
        "x": d(grad_output, x)}, tensors={"x": x}, grad_output=g, method=method)  # fmt: skip
    assert right.passed or right.results["x"].unresolved, right.verdict()
    if method == "complex":
        assert right.passed and not any("float32" in n for n in right.notes), right.notes


def _piece(x):
    c = np.full(x.shape, 0.5)
    c[0, 0] = 1000.0
    x32 = x.astype(np.float32)
    return (x32 * x32).astype(np.float64) + c * x


def test_a_slip_on_a_float32_piece_is_not_confirmed_at_smaller_steps():
    """Outside test t30a F4: float32(x)^2 + c x with c = 1000 at one element; the rounding
    measured, 2e-7 of the outputs, was taken for float16's, whose cells excused a 2% slip on
    the float32 piece as 'confirmed at smaller steps'."""
    x = np.random.default_rng(0).normal(size=(3, 4))
    c = np.full(x.shape, 0.5)
    c[0, 0] = 1000.0
    slip = gradcli.check(forward=_piece, backward=lambda grad_output, x: {
        "x": grad_output * (2.04 * x + c)}, tensors={"x": x})  # fmt: skip
    assert not slip.passed, slip.verdict()
    right = gradcli.check(forward=_piece, backward=lambda grad_output, x: {
        "x": grad_output * (2 * x + c)}, tensors={"x": x})  # fmt: skip
    assert right.passed, right.verdict()
