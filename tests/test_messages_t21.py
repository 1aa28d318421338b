"""Outside test t21's smaller findings: a few-elements hint only for a few of many (F7), the
flip hint's convolution words only for a kernel (F7), -o's suffix read in any case and an
explicit --format refused for an .npz (F11)."""

from __future__ import annotations

import numpy as np

import gradcli

RNG = np.random.default_rng(0)
BN = {"x": RNG.normal(size=(6, 3)) * 2 + 1, "gamma": RNG.normal(size=3),
      "beta": RNG.normal(size=3)}  # fmt: skip
G = RNG.normal(size=(6, 3))


def _hints(layer, t, g, bug):
    right = gradcli.compute(layer, t, grad_output=g).gradients
    answers = {k: v.copy() for k, v in right.items()}
    bug(answers)
    r = gradcli.check(layer, t, grads=answers, grad_output=g)
    assert not r.passed
    return [str(h) for res in r.results.values() for h in res.hints]


def test_every_element_wrong_is_no_few_elements_hint():
    # dgamma from x, not xhat: all 3 of its 3 elements wrong
    def bug(a):
        a["gamma"] = (G * BN["x"]).sum(0)

    assert not any("elements only" in h for h in _hints("batchnorm", BN, G, bug))


def test_one_element_of_many_wrong_is_named():
    t = {"x": RNG.normal(size=(4, 5)), "W": RNG.normal(size=(3, 5)), "b": RNG.normal(size=3)}
    g = RNG.normal(size=(4, 3))

    def bug(a):
        a["W"][1, 2] *= 1.5

    assert any("wrong at one element only" in h for h in _hints("linear", t, g, bug))


def test_a_flip_of_a_layer_without_kernel_says_no_convolution():
    t = {"x": RNG.normal(size=(3, 4)), "gamma": RNG.normal(size=4), "beta": RNG.normal(size=4)}
    g = RNG.normal(size=(3, 4))

    def bug(a):
        a["x"] = a["x"][::-1].copy()

    hints = _hints("layernorm", t, g, bug)
    flipped = [h for h in hints if "flipped" in h]
    assert flipped and not any("convolution" in h for h in flipped)


def test_a_kernel_flip_still_says_convolution():
    t = {"X": RNG.normal(size=(6, 6, 2)), "W": RNG.normal(size=(3, 3, 2, 2)),
         "b": RNG.normal(size=2)}  # fmt: skip
    g = RNG.normal(size=(4, 4, 2))

    def bug(a):
        a["W"] = a["W"][::-1, ::-1].copy()

    assert any("convolution where the layer correlates" in h
               for h in _hints("conv2d", t, g, bug))  # fmt: skip


def test_output_suffix_in_any_case_and_format_with_npz(cli, tmp_path):
    out = tmp_path / "out.NPZ"
    assert cli("check", "linear", "-o", out).exit_code == 0
    assert out.read_bytes()[:2] == b"PK"  # an archive, not a table
    r = cli("check", "linear", "--format", "json", "-o", tmp_path / "o.npz")
    assert r.exit_code == 2 and "--format" in r.stderr and not (tmp_path / "o.npz").exists()


_TANH_SCALED = """
import numpy as np


def forward(x):
    return np.tanh(1e12 * x)


def backward(grad_output, x):
    return {"x": grad_output * 1e12 * (1 - np.tanh(1e12 * x) ** 2)}
"""


def test_inputs_far_below_the_step_advise_a_smaller_eps(cli, tmp_path, write_spec):
    """t21 F9: at |x| ~ 1e-12 'use a larger --eps' was the wrong way; a smaller one passes.
    The twin: a smaller eps indeed passes, and inputs of size 1 keep the old advice."""
    impl = tmp_path / "t.py"
    impl.write_text(_TANH_SCALED)
    x = np.random.default_rng(0).standard_normal((3, 4)) * 1e-12
    np.save(tmp_path / "x.npy", x)
    spec = write_spec("layer: custom\ntensors:\n  x: x.npy\n")
    r = cli("check", "custom", spec, "--impl", impl, "--eps", "6.06e-6")
    text = " ".join(r.stdout.split())
    assert r.exit_code == 1 and "use a smaller --eps" in text and "larger --eps" not in text
    assert cli("check", "custom", spec, "--impl", impl, "--eps", "1e-15").exit_code == 0
    # at the automatic step the complex step reads it again (checking/complex_recheck.py):
    # never a mismatch
    r = cli("check", "custom", spec, "--impl", impl)
    assert r.exit_code in (0, 1) and "does not match" not in r.stdout, r.stdout


def test_format_with_an_npz_output_names_the_format_plainly(cli, tmp_path):
    r = cli("check", "linear", "--format", "json", "-o", tmp_path / "o.npz")
    assert r.exit_code == 2 and "Format." not in r.stderr and "is json" in r.stderr


def test_a_float32_copy_of_a_weight_is_named():
    """t22 N4: dx = g @ W.astype(np.float32) in a float64 check got 'dx is wrong only at i=14
    (one slice)'; the right backward with W rounded to float32 rebuilds it exactly. Twin: a
    float64 slip of the same size is not called a float32 copy."""
    rng = np.random.default_rng(0)
    t = {"x": rng.standard_normal((16, 32)), "W": rng.standard_normal((24, 32)),
         "b": rng.standard_normal(24)}  # fmt: skip

    def forward(x, W, b):
        return x @ W.T + b

    def backward(k):
        def back(grad_output, x, W, b):
            dx = grad_output @ (W.astype(np.float32) if k == "cast" else W * (1 + 3e-7))
            return {"x": dx, "W": grad_output.T @ x, "b": grad_output.sum(0)}

        return back

    r = gradcli.check("linear", t, forward=forward, backward=backward("cast"))
    hints = [str(h) for h in r.results["x"].hints]
    assert not r.passed and any("with W rounded to float32" in h for h in hints), hints
    r = gradcli.check("linear", t, forward=forward, backward=backward("scaled"))
    assert not any("rounded to float32" in str(h) for h in r.results["x"].hints)
