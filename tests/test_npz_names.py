"""Outside test t15 (NPZCOL): `compute -o FILE.npz` of a custom layer with tensors x and dx wrote
the gradient of x over the tensor dx (and a tensor named output over the output), exit 0."""

from __future__ import annotations

import numpy as np

MINE = """
import numpy as np

def forward(x, dx):
    return x * dx

def backward(grad_output, x, dx):
    return {"x": grad_output * dx, "dx": grad_output * x}
"""


def test_colliding_archive_names_are_refused_and_nothing_is_written(cli, tmp_path,
                                                                    assert_usage_error):
    (tmp_path / "mine.py").write_text(MINE)
    spec = tmp_path / "coll.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: [1.0, 2.0]\n  dx: [0.5, -1.0]\n")
    out = tmp_path / "coll.npz"
    result = cli("compute", "custom", spec, "--impl", tmp_path / "mine.py", "-o", out)
    assert_usage_error(result, "two arrays named dx")
    assert not out.exists()
    # the twin: names apart, an archive with every array under its own name
    spec.write_text("layer: custom\ntensors:\n  x: [1.0, 2.0]\n  step: [0.5, -1.0]\n")
    (tmp_path / "mine.py").write_text(MINE.replace("dx", "step"))
    assert cli("compute", "custom", spec, "--impl", tmp_path / "mine.py", "-o", out).exit_code == 0
    with np.load(out) as npz:
        assert {"x", "step", "dx", "dstep", "output"} <= set(npz.files)
