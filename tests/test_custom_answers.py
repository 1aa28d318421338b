"""A custom layer checked on saved answers: its forward from --impl (or forward=), the
gradients checked from --grads (grads=). Refused before (a forward and a hand-computed answer
file had no path but writing a backward: outside test t59b F5). The oracle: the gradients of
y = sum(tanh(x W) * t) written out by hand below; the twins: one element off fails there."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcli

FORWARD = """
import numpy as np

def forward(x, W, t):
    return np.sum(np.tanh(x @ W) * t)
"""
WITH_BACKWARD = FORWARD + """
def backward(grad_output, x, W, t):
    raise RuntimeError("never called: the answers are checked")
"""
SPEC = """layer: custom
seed: 4
tensors:
  x: {shape: [3, 4]}
  W: {shape: [4, 2]}
  t: {shape: [3, 2]}
data: [t]
"""


def _right(x: np.ndarray, W: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """By hand: y = sum(tanh(z) t), z = x W: dz = (1 - tanh(z)^2) t."""
    dz = (1 - np.tanh(x @ W) ** 2) * t
    return {"x": dz @ W.T, "W": x.T @ dz}


def test_answers_of_a_custom_layer_pass_and_one_element_off_fails(cli, tmp_path, write_spec):
    spec = write_spec(SPEC)
    (tmp_path / "fwd.py").write_text(FORWARD)
    (tmp_path / "both.py").write_text(WITH_BACKWARD)
    drawn = gradcli.check_spec(spec, "custom", impl=tmp_path / "fwd.py",
                               grads={"x": np.zeros((3, 4))})  # fmt: skip
    x, W, t = (np.asarray(drawn.spec.tensors[n]) for n in ("x", "W", "t"))
    right = _right(x, W, t)
    np.savez(tmp_path / "right.npz", dx=right["x"], dW=right["W"])
    for impl in ("fwd.py", "both.py"):  # a backward of the file's is never called
        r = cli("check", "custom", spec, "--impl", tmp_path / impl, "--grads",
                tmp_path / "right.npz")  # fmt: skip
        assert r.exit_code == 0, r.stderr + r.stdout
        head = r.stdout.splitlines()[0]
        assert "with your answers (--grads)" in head and (
            ("not your backward" in head) == (impl == "both.py")), head
        assert "built-in" not in r.stdout  # no backward of ours beside the answers
    bad = dict(right)
    bad["W"] = right["W"].copy()
    bad["W"][2, 1] += 0.01
    np.savez(tmp_path / "bad.npz", dx=bad["x"], dW=bad["W"])
    r = cli("check", "custom", spec, "--impl", tmp_path / "fwd.py", "--grads",
            tmp_path / "bad.npz", "-f", "json")  # fmt: skip
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["results"]["x"]["passed"] and not doc["results"]["W"]["passed"]
    assert doc["results"]["W"]["worst_index"] == [2, 1]
    # a partial file: what it gives is checked, the rest named unchecked
    np.savez(tmp_path / "part.npz", dW=right["W"])
    r = cli("check", "custom", spec, "--impl", tmp_path / "fwd.py", "--grads",
            tmp_path / "part.npz")  # fmt: skip
    assert r.exit_code == 0 and "not checked (no answer given): dx" in r.stdout, r.stdout


def test_the_api_checks_answers_of_your_forward(tmp_path, write_spec):
    spec = write_spec(SPEC)
    (tmp_path / "fwd.py").write_text(FORWARD)
    drawn = gradcli.check_spec(spec, "custom", impl=tmp_path / "fwd.py",
                               grads={"x": np.zeros((3, 4))})  # fmt: skip
    assert not drawn.passed  # zeros are not dx
    t = {n: np.asarray(drawn.spec.tensors[n]) for n in ("x", "W", "t")}
    right = _right(*t.values())

    def forward(x, W, t):
        return np.sum(np.tanh(x @ W) * t)

    assert gradcli.check(forward=forward, tensors=t, data=["t"], grads=right).passed
    off = {**right, "x": right["x"] * 1.001}
    report = gradcli.check(forward=forward, tensors=t, data=["t"], grads=off)
    assert not report.passed and report.results["W"].passed


def test_a_built_in_layer_still_takes_one_of_them(cli, tmp_path):
    (tmp_path / "fwd.py").write_text(FORWARD)
    np.savez(tmp_path / "g.npz", dx=np.zeros((2, 3)))
    r = cli("check", "linear", "--impl", tmp_path / "fwd.py", "--grads", tmp_path / "g.npz")
    assert r.exit_code == 2 and "a custom layer takes both" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "raised" not in r.stderr  # refused before it ran
    with pytest.raises(gradcli.GradcliError, match="your own layer takes both"):
        gradcli.check("linear", forward=lambda x, W, b: x @ W.T + b, grads={"x": 0})


LOSS = """
import numpy as np

def my_loss(x, t):
    d = x - t
    return 0.5 * np.sum(d * d), d        # CS231n's (loss, dx)

def affine_forward(x, W):
    return x @ W, (x, W)                 # CS231n's (out, cache), its backward not given
"""


def test_cs231n_forms_take_answers_too(cli, tmp_path, write_spec):
    """A (loss, dx) function and a forward returning (out, cache) were refused with answers:
    'a tuple of 2 items' (outside test t61b F1); their first item is the output."""
    (tmp_path / "cs.py").write_text(LOSS)
    spec = write_spec("layer: custom\nseed: 2\ntensors:\n  x: {shape: [3, 4]}\n"
                      "  t: {shape: [3, 4]}\ndata: [t]\n")  # fmt: skip
    drawn = gradcli.check_spec(spec, "custom", impl=f"{tmp_path / 'cs.py'}:my_loss",
                               grads={"x": np.zeros((3, 4))})  # fmt: skip
    x, t = (np.asarray(drawn.spec.tensors[n]) for n in ("x", "t"))
    np.savez(tmp_path / "right.npz", dx=x - t)
    np.savez(tmp_path / "wrong.npz", dx=2 * (x - t))
    for answers, code in (("right.npz", 0), ("wrong.npz", 1)):
        r = cli("check", "custom", spec, "--impl", f"{tmp_path / 'cs.py'}:my_loss", "--grads",
                tmp_path / answers, "-q")  # fmt: skip
        assert r.exit_code == code, r.stderr + r.stdout
    aspec = write_spec("layer: custom\nseed: 2\ntensors:\n  x: {shape: [3, 4]}\n"
                       "  W: {shape: [4, 2]}\n", name="a.yaml")  # fmt: skip
    drawn = gradcli.check_spec(aspec, "custom", impl=f"{tmp_path / 'cs.py'}:affine_forward",
                               grads={"x": np.zeros((3, 4))})  # fmt: skip
    xa, W = (np.asarray(drawn.spec.tensors[n]) for n in ("x", "W"))
    g = np.asarray(drawn.spec.grad_output)
    np.savez(tmp_path / "a.npz", dx=g @ W.T, dW=xa.T @ g)
    r = cli("check", "custom", aspec, "--impl", f"{tmp_path / 'cs.py'}:affine_forward",
            "--grads", tmp_path / "a.npz", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr + r.stdout


def test_a_forward_alone_is_explained_and_told_how_it_is_checked(cli, tmp_path, write_spec):
    """explain refused the forward-only file check takes with --grads, and check without
    --grads said only 'has no function backward' (outside test t61b F5)."""
    spec = write_spec(SPEC)
    (tmp_path / "fwd.py").write_text(FORWARD)
    r = cli("explain", "custom", spec, "--impl", tmp_path / "fwd.py")
    assert r.exit_code == 0 and "∂L/∂W (4, 2)" in r.stdout, r.stderr + r.stdout
    r = cli("check", "custom", spec, "--impl", tmp_path / "fwd.py")
    assert r.exit_code == 2 and "forward alone checks saved answers: give them with --grads" in (
        r.stderr), r.stderr


SAME_SHAPE = """
import numpy as np

def relu_forward(x):
    return np.maximum(x, 0), x           # CS231n's (out, cache): the cache the input itself

def sq_loss(x):
    return x ** 2, 2 * x                 # (loss, dx) on a 0-d x: two items of one shape
"""


def test_a_named_functions_pair_of_one_shape_is_its_output_and_cache(cli, tmp_path,
                                                                      write_spec):
    """relu_forward's (out, x) and a 0-d loss's (loss, dx) were stacked into one output, and
    the right answers failed or blamed the spec's grad_output (outside test t63b F1)."""
    (tmp_path / "same.py").write_text(SAME_SHAPE)
    rng = np.random.default_rng(4)
    x, g = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    spec = write_spec(f"layer: custom\ntensors:\n  x: {tmp_path / 'x.npy'}\n"
                      f"grad_output: {tmp_path / 'g.npy'}\n")  # fmt: skip
    for answer, code in ((g * (x > 0), 0), (g, 1)):
        np.savez(tmp_path / "a.npz", dx=answer)
        r = cli("check", "custom", spec, "--impl", f"{tmp_path / 'same.py'}:relu_forward",
                "--grads", tmp_path / "a.npz", "-q")  # fmt: skip
        assert r.exit_code == code, r.stderr + r.stdout
    scalar = write_spec("layer: custom\ntensors:\n  x: 1.5\n", name="s.yaml")
    (tmp_path / "ans.yaml").write_text("dx: 3.0\n")
    r = cli("check", "custom", scalar, "--impl", f"{tmp_path / 'same.py'}:sq_loss", "--grads",
            tmp_path / "ans.yaml", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr + r.stdout


def test_a_module_named_by_its_forward_is_read_as_the_module(cli, tmp_path, write_spec):
    """FILE.py:forward on a module with forward(x, W) and backward(grad_output, x, W) was read
    as CS231n's pair and refused ('forward must return (out, cache)'), with or without answers
    (outside test t63b F2)."""
    spec = write_spec(SPEC)
    (tmp_path / "both.py").write_text(FORWARD + """
def backward(grad_output, x, W, t):
    dz = (1 - np.tanh(x @ W) ** 2) * t * grad_output
    return {"x": dz @ W.T, "W": x.T @ dz}
""")
    r = cli("check", "custom", spec, "--impl", f"{tmp_path / 'both.py'}:forward", "-q")
    assert r.exit_code == 0, r.stderr + r.stdout


def test_answers_for_a_drawn_upstream_gradient_say_so(cli, tmp_path, write_spec):
    """Answers for an upstream of ones failed with no word that grad_output was drawn (outside
    test t63b F6); the twin: a spec giving grad_output says nothing of it."""
    (tmp_path / "t.py").write_text("import numpy as np\ndef forward(x): return np.tanh(x)\n")
    np.savez(tmp_path / "a.npz", dx=np.ones((2, 3)))
    for extra, said in (("", True), ("grad_output: [[1, 1, 1], [1, 1, 1]]\n", False)):
        spec = write_spec("layer: custom\nseed: 5\ntensors:\n  x: {shape: [2, 3]}\n" + extra)
        r = cli("check", "custom", spec, "--impl", tmp_path / "t.py", "--grads",
                tmp_path / "a.npz")  # fmt: skip
        assert ("grad_output is not in the spec: drawn from its seed (5)" in r.stderr) == said


def test_a_forward_adding_noise_is_named_with_answers_too(cli, tmp_path, write_spec):
    """With a backward, a forward drawing noise anew is named 'not deterministic'; checked on
    answers it read 'cannot resolve ... use a larger --eps', and at noise 1e-9 passed in one
    run and failed the next (outside test t63b F3). The twin: the same forward without noise
    passes."""
    spec = write_spec(SPEC)
    drawn = gradcli.check_spec(spec, "custom", impl=_fwd(tmp_path, ""),
                               grads={"x": np.zeros((3, 4))})  # fmt: skip
    x, W, t = (np.asarray(drawn.spec.tensors[n]) for n in ("x", "W", "t"))
    right = _right(x, W, t)
    np.savez(tmp_path / "right.npz", dx=right["x"], dW=right["W"])
    for noise, code in ((" + 1e-9 * np.random.randn()", 1), ("", 0)):
        r = cli("check", "custom", spec, "--impl", _fwd(tmp_path, noise), "--grads",
                tmp_path / "right.npz", "-q")  # fmt: skip
        assert r.exit_code == code, r.stdout + r.stderr
        assert ("your forward is not deterministic" in r.stdout) == (code == 1), r.stdout


def _fwd(tmp_path, noise):
    path = tmp_path / f"noisy{len(noise)}.py"
    path.write_text(FORWARD.replace("* t)", f"* t){noise}"))
    return path


def test_explain_reads_a_named_cs231n_forward_as_a_forward(cli, tmp_path, write_spec):
    """explain custom FILE.py:relu_forward read it as a loss, 'its loss must be a scalar'
    (outside test t63b F8)."""
    (tmp_path / "same.py").write_text(SAME_SHAPE)
    spec = write_spec("layer: custom\nseed: 1\ntensors:\n  x: {shape: [4, 5]}\n")
    r = cli("explain", "custom", spec, "--impl", f"{tmp_path / 'same.py'}:relu_forward")
    assert r.exit_code == 0 and "∂L/∂x (4, 5)" in r.stdout, r.stderr + r.stdout
