"""Issue 14's kinks: a stencil that meets a point where the forward has no derivative is checked
one-sidedly (a built-in layer says where, through ``Layer.kinks``; any other layer gets the
detector), is counted in JSON and the report, and never hides a wrong gradient: twins with
wrong masks fail on the coordinates away from kinks, at exact ties too."""

import json

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import numerical_gradients

EPS = 2.0**-52
AUTO = {"central": EPS ** (1 / 3), "central4": EPS**0.2, "forward": EPS**0.5,
        "backward": EPS**0.5, "complex": 1e-20}  # fmt: skip


def step(x, eps):
    """The README's step, written out again: the power of two below eps * max(1, |x|)."""
    return 2.0 ** np.floor(np.log2(eps * np.maximum(1.0, np.abs(x))))


def expected_kinks(x, method):
    """Coordinates whose stencil reaches 0 (relu's kink), from the stencil's offsets alone."""
    h = step(x, AUTO[method])
    right, left = {"central": (1, 1), "central4": (2, 2), "forward": (1, 0),
                   "backward": (0, 1), "complex": (0, 0)}[method]  # fmt: skip
    met = (x == 0) | ((x < 0) & (x + right * h >= 0)) | ((x > 0) & (x - left * h <= 0))
    return int(np.sum(met))


def ties(seed=0, n=40):
    """x with exact zeros, points within a step of 0 on both sides, and ordinary values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    x[:6] = 0.0
    x[6:16] = rng.integers(-12, 13, 10) * 2.0**-20  # within central4's reach
    x[16:20] = [3e-6, -3e-6, 7e-6, -7e-6]
    return rng.permutation(x).reshape(4, n // 4)


def user(mask, alpha=0.0):
    """A user's relu (alpha 0) or leaky relu whose backward uses ``mask(x, out)``."""

    def forward(x):
        return np.where(x > 0, x, alpha * x)

    def backward(grad_output, x):
        out = forward(x)
        m = mask(x, out)
        return {"x": grad_output * np.where(m, 1.0, alpha)}

    return forward, backward


def test_pytorch_114234_relu_at_zero():
    """The central difference of relu at 0 reads 0.5, the slope is 0 (or 1): no false FAIL."""
    x = np.array([0.0, 1.5, -2.0])
    g = np.ones(3)
    raw = numerical_gradients(REGISTRY["relu"], {"x": x}, None, g)["x"]
    assert raw[0] == 0.5  # the anchor's false failure, reproduced by the raw stencil
    report = gradcli.check("relu", {"x": x}, grad_output=g)
    assert report.passed and report.results["x"].kinks == 1
    fwd, bwd = user(lambda x, out: x >= 0)  # the other convention: slope 1 at 0
    report = gradcli.check("relu", {"x": x}, grad_output=g, forward=fwd, backward=bwd)
    assert report.passed and report.results["x"].kinks == 1


@pytest.mark.parametrize("method", list(AUTO))
def test_builtin_relu_counts_exactly_the_stencils_that_meet_zero(method):
    x = ties()
    report = gradcli.check("relu", {"x": x}, method=method)
    assert report.passed, str(report)
    assert report.results["x"].kinks == expected_kinks(x, method) > 0


@pytest.mark.parametrize("alpha", [0.01, 0.3, -0.5, 4.0])
def test_builtin_leaky_relu_at_ties_passes(alpha):
    report = gradcli.check("leaky_relu", {"x": ties(1)}, options={"alpha": alpha})
    assert report.passed and report.results["x"].kinks == expected_kinks(ties(1), "central")


def test_leaky_relu_with_slope_one_has_no_kink():
    report = gradcli.check("leaky_relu", {"x": ties(2)}, options={"alpha": 1})
    assert report.passed and report.results["x"].kinks == 0


GOOD_MASKS = {
    "x > 0": lambda x, out: x > 0,
    "x >= 0": lambda x, out: x >= 0,  # differs at exact 0 only: a subgradient, not a bug
    "out > 0": lambda x, out: out > 0,  # the same mask for relu
}
BAD_MASKS = {
    "inverted": lambda x, out: x <= 0,
    "out >= 0": lambda x, out: out >= 0,  # always true for relu: slope 1 where x < 0
    "x > 0.3": lambda x, out: x > 0.3,  # moves the kink off 0
}


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("name", list(GOOD_MASKS))
def test_a_correct_mask_passes_at_ties_through_the_detector(name, alpha):
    fwd, bwd = user(GOOD_MASKS[name], alpha)
    report = gradcli.check("custom", {"x": ties(3)}, forward=fwd, backward=bwd)
    assert report.passed, str(report)
    assert report.results["x"].kinks > 0


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("name", list(BAD_MASKS))
def test_a_wrong_mask_fails_away_from_kinks(name, alpha):
    x = ties(4)
    fwd, bwd = user(BAD_MASKS[name], alpha)
    if name == "out >= 0" and alpha:
        bwd = user(lambda x, out: out >= -1e300, alpha)[1]  # leaky's out < 0: mask all ones
    g = np.random.default_rng(1).standard_normal(x.shape)
    report = gradcli.check("custom", {"x": x}, grad_output=g, forward=fwd, backward=bwd)
    assert not report.passed and not report.results["x"].passed
    # away from every kink the numerical side is the true slope, and the wrong mask differs
    far = np.abs(x) > 1e-4
    truth = g * np.where(x > 0, 1.0, alpha)
    np.testing.assert_allclose(report.numeric["x"][far], truth[far], rtol=1e-8, atol=1e-10)
    assert np.any(np.abs(bwd(g, x)["x"] - truth)[far] > 1e-3)


@pytest.mark.parametrize("name", list(BAD_MASKS))
def test_wrong_answers_fail_through_the_builtin_kinks(cli, tmp_path, name):
    """--grads keeps the built-in layer, so its own kinks are used; wrong answers still fail,
    right answers in either convention at 0 pass."""
    x = ties(5)
    g = np.random.default_rng(9).standard_normal(x.shape)
    spec = tmp_path / "s.yaml"
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    spec.write_text("tensors: {x: x.npy}\ngrad_output: g.npy\n")
    for mask, passes in ((BAD_MASKS[name], False), (GOOD_MASKS["x >= 0"], True)):
        np.save(tmp_path / "dx.npy", g * mask(x, np.maximum(x, 0)))
        r = cli("check", "relu", spec, "--grads", tmp_path / "dx.npy", "--wrt", "x",
                "--format", "json")
        assert r.stdout, r.stderr
        doc = json.loads(r.stdout)
        assert (r.exit_code, doc["passed"]) == ((0, True) if passes else (1, False)), r.stdout
        assert doc["results"]["x"]["kinks"] == expected_kinks(x, "central")


def test_a_slope_outside_the_one_sided_ones_fails_at_a_tie():
    """At 0 any slope between the two sides' passes (0, 1, 0.5 for relu); 2 does not."""
    x = np.array([0.0, 1.0, -1.0])
    for slope, passes in ((0.0, True), (1.0, True), (0.5, True), (2.0, False), (-0.5, False)):
        fwd, _ = user(lambda x, out: x > 0)

        def bwd(grad_output, x, slope=slope):
            return {"x": grad_output * np.where(x == 0, slope, (x > 0) * 1.0)}

        report = gradcli.check("custom", {"x": x}, forward=fwd, backward=bwd)
        assert report.passed is passes, (slope, str(report))


def test_abs_subgradient_and_a_wrong_sign():
    x = ties(6)

    def fwd(x):
        return np.abs(x)

    def good(grad_output, x):
        return {"x": grad_output * np.sign(x)}

    def bad(grad_output, x):
        return {"x": grad_output * np.sign(x) * np.where(x < -0.5, -1, 1)}

    assert gradcli.check("custom", {"x": x}, forward=fwd, backward=good).passed
    report = gradcli.check("custom", {"x": x}, forward=fwd, backward=bad)
    assert not report.passed and x[report.results["x"].worst_index] < -0.5


def test_a_smooth_bug_is_no_kink():
    x = ties(7)

    def fwd(x):
        return x**3

    def bad(grad_output, x):
        return {"x": grad_output * 3.01 * x**2}

    r = gradcli.check("custom", {"x": x}, forward=fwd, backward=bad).results["x"]
    assert not r.passed and r.kinks == 0


@pytest.mark.parametrize("mode", ["sample", "probe"])
def test_modes_handle_ties(mode):
    x = ties(8)
    report = gradcli.check("relu", {"x": x}, mode=mode, samples=40)
    assert report.passed, str(report)


def test_float32_ties_pass():
    assert gradcli.check("relu", {"x": ties(9).astype(np.float32)}, dtype="float32").passed


def test_kinks_are_shown(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors: {x: [[0.0, 1.0], [-2.0, 0.0]]}\n")
    doc = json.loads(cli("check", "relu", spec, "--format", "json").stdout)
    assert doc["passed"] and doc["results"]["x"]["kinks"] == 2
    table = cli("check", "relu", spec)
    assert table.exit_code == 0
    assert "dx: 2 coordinates at a kink" in table.stdout
    last = table.stdout.strip().splitlines()[-1]
    assert last.endswith("2 coordinates at kinks checked one-sidedly")
    plain = json.loads(cli("check", "linear", "--format", "json").stdout)
    assert all(r["kinks"] == 0 for r in plain["results"].values())


def test_sign_kinks_agree_with_a_brute_force_walk():
    """relu's declaration against walking the segment in tiny steps (an independent oracle)."""
    rng = np.random.default_rng(0)
    x = rng.integers(-8, 9, 400) * 0.25
    step_ = rng.choice([-1.0, -0.5, 0.0, 0.25, 1.0], 400)
    said = REGISTRY["relu"].kinks("x", {"x": x}, None, step_)
    for xi, si, s in zip(x, step_, said, strict=True):
        if si == 0:
            truth = xi == 0
        else:
            pts = xi + si * np.linspace(0, 1, 401)[1:]  # the half-open segment beyond x
            truth = bool(np.any(pts == 0)) or len(set(pts > 0)) > 1
        assert s == truth, (xi, si)


def test_builtin_max_pooling_at_ties_is_checked_by_the_detector():
    """A built-in that declares no kinks (maxpool2d) still gets the detector: a window of equal
    values is a tie, where the first maximum's gradient (torch's choice) is right."""
    X = np.ones((4, 4, 2))
    report = gradcli.check("maxpool2d", {"X": X})
    assert report.passed and report.results["X"].kinks > 0


def test_max_pooling_routed_to_the_wrong_element_fails_at_ties_too():
    """A user's 1-D max over pairs: routing to the last maximum at a tie is right, routing to
    the minimum is wrong and fails away from ties."""
    x = np.array([1.0, 1.0, 2.0, 0.5, -1.0, -1.0, 3.0, 4.0])

    def forward(x):
        return x.reshape(-1, 2).max(axis=1)

    def route(pick):
        def backward(grad_output, x):
            pairs = x.reshape(-1, 2)
            dx = np.zeros_like(pairs)
            dx[np.arange(len(pairs)), pick(pairs)] = grad_output
            return {"x": dx.ravel()}

        return backward

    last_max = route(lambda p: 1 - np.argmax(p[:, ::-1], axis=1))
    arg_min = route(lambda p: np.argmin(p, axis=1))
    assert gradcli.check("custom", {"x": x}, forward=forward, backward=last_max).passed
    report = gradcli.check("custom", {"x": x}, forward=forward, backward=arg_min)
    r = report.results["x"]
    assert not report.passed and r.worst_index[0] >= 2  # a pair without a tie


def test_sweep_leaves_kinks_to_the_check(cli, tmp_path):
    """--sweep at relu's ties: the stencils across 0 read no derivative at any step, so they
    are not 'off at every step'; a wrong mask still is."""
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors: {x: [[0.0, 1.5, -2.0, 0.0], [3.0e-6, -2.0e-6, 0.0, 0.7]]}\n")
    assert cli("check", "relu", spec, "--sweep", "-q").exit_code == 0
    for mask, code in (("x >= 0", 0), ("x <= 0", 1)):
        impl = tmp_path / f"r{code}.py"
        impl.write_text(
            "def forward(x):\n    return x * (x > 0)\n\n\n"
            f"def backward(dout, x):\n    return {{'x': dout * ({mask})}}\n"
        )
        r = cli("check", "relu", spec, "--sweep", "-q", "--impl", impl)
        assert r.exit_code == code, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("body", "code"),
    [("np.maximum(x, 0)", 0), ("(x + np.abs(x)) / 2", 2)],
    ids=["safe", "abs-drops-the-imaginary-part"],
)
def test_complex_safety_is_not_misled_by_an_input_at_a_kink(cli, tmp_path, body, code):
    """The probe of a user's forward for the complex step compared it with a central
    difference across relu's kink (0.5 at x = 0) and refused a correct forward; the twin: a
    forward that drops the imaginary part is still refused, away from the kink."""
    (tmp_path / "mine.py").write_text(
        f"import numpy as np\ndef forward(x):\n    return {body}\n"
        "def backward(grad_output, x):\n    return {'x': grad_output * (x >= 0)}\n"
    )
    (tmp_path / "s.yaml").write_text("tensors:\n  x: [1.0, -1.0, 0.0, -2.0]\n")
    result = cli("check", "relu", tmp_path / "s.yaml", "--impl", tmp_path / "mine.py",
                 "--method", "complex")  # fmt: skip
    assert result.exit_code == code, result.stderr
    assert ("not complex-safe" in result.stderr) == (code == 2)


@pytest.mark.parametrize(("x", "code"), [("[0.0, 0.0, 0.0]", 2), ("[0.0, 1.0, -2.0]", 0)],
                         ids=["all-at-the-kink", "some-off-it"])  # fmt: skip
def test_a_sweep_with_every_coordinate_at_a_kink_says_there_is_no_curve(cli, tmp_path, x, code):
    """It printed an error of 0 at every step and 'best step: 1e-01'; the twin: one coordinate
    off the kink gives a sweep (relu's: exact at every step, so any step works)."""
    (tmp_path / "s.yaml").write_text(f"tensors:\n  x: {x}\n")
    result = cli("check", "relu", tmp_path / "s.yaml", "--sweep")
    assert result.exit_code == code, result.stderr
    assert ("no curve to sweep" in result.stderr) == (code == 2)
    assert ("any step works" in " ".join(result.stdout.split())) == (code == 0)
