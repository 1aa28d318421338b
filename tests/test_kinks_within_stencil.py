"""A kink inside the default stencil but away from x (outside test t31a F4).

central4 reaches 2h = 1.5e-3 from x at |x| = 1: ``max`` at 1.0 beside 1.0001, or relu at
-5e-5, has its stencil cross the kink, and the smaller steps of the refinement leave it: from
there L is constant along the coordinate (exactly: every difference 0), which is the reading 0,
not a step below L's rounding. The twins: a gradient routed to the runner-up, or a relu mask
shifted past the point, still fails; and a zero answer where L only rounds at a larger number
(a confident loss, tests/test_kinks_roundoff.py) still fails there."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def row_max(x):
    return x.max(-1)


def routed(to_runner_up: bool):
    def backward(grad_output, x):
        order = np.argsort(x, axis=-1)
        i = order[..., -2] if to_runner_up else order[..., -1]
        d = np.zeros_like(x)
        np.put_along_axis(d, i[..., None], grad_output[..., None], -1)
        return {"x": d}

    return backward


def relu(x):
    return np.maximum(x, 0.0)


def relu_backward(threshold: float):
    def backward(grad_output, x):
        return {"x": grad_output * (x > threshold)}

    return backward


METHODS = ["central", "central4", "forward", "backward"]
GAPS = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
# forward's and backward's step (1.5e-8 of max(1, |x|)) lies below every gap at scales 1 and
# 1e3, and above 1e-9 to 1e-8 at 1e-3: the half-decades between add no case for them
ONE_SIDED_GAPS = [1e-6, 1e-5, 1e-4, 1e-3]
METHOD_GAPS = [(m, g) for m in METHODS
               for g in (ONE_SIDED_GAPS if m in ("forward", "backward") else GAPS)]  # fmt: skip


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
@pytest.mark.parametrize(("method", "gap"), METHOD_GAPS)
def test_a_max_beside_a_near_runner_up(method, gap, scale):
    x = np.array([[1.0, 1.0 + gap, 0.3], [0.2, 0.2 - gap, -1.0]]) * scale
    right = gradcli.check(forward=row_max, backward=routed(False), tensors={"x": x},
                          method=method)  # fmt: skip
    assert right.passed is True, right.verdict()
    wrong = gradcli.check(forward=row_max, backward=routed(True), tensors={"x": x},
                          method=method)  # fmt: skip
    assert wrong.passed is False, wrong.verdict()


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
@pytest.mark.parametrize(("method", "gap"), METHOD_GAPS)
def test_a_relu_just_off_its_kink(method, gap, scale):
    x = np.array([-gap, gap, 0.5, -0.3, -gap / 3]) * scale
    right = gradcli.check(forward=relu, backward=relu_backward(0.0), tensors={"x": x},
                          method=method)  # fmt: skip
    assert right.passed is True, right.verdict()
    # the mask taken at a threshold below both small negatives: their gradient 1, not 0
    wrong = gradcli.check(forward=relu, backward=relu_backward(-1.5 * gap * scale),
                          tensors={"x": x}, method=method)  # fmt: skip
    assert wrong.passed is False, wrong.verdict()


def test_a_flat_piece_is_read_through_the_cli(tmp_path):
    """The student's file as the tester wrote it: exit 0, no 'missing term' hint."""
    from typer.testing import CliRunner

    from gradcli.cli.app import app

    (tmp_path / "rowmax.py").write_text(
        "import numpy as np\n"
        "def forward(x):\n    return x.max()\n"
        "def backward(grad_output, x):\n"
        "    d = np.zeros_like(x)\n    d[x.argmax()] = grad_output\n    return {'x': d}\n"
    )
    (tmp_path / "spec.yaml").write_text("layer: custom\ntensors:\n  x: [1.0, 1.0001, 0.3]\n")
    args = ["check", "custom", str(tmp_path / "spec.yaml"), "--impl",
            str(tmp_path / "rowmax.py"), "--method", "central4"]
    got = CliRunner().invoke(app, args)
    assert got.exit_code == 0, got.output
    assert "missing term" not in got.output
