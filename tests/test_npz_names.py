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


def test_a_label_gradient_in_a_compute_archive_is_refused_as_in_any_answer_file(cli, tmp_path):
    """Outside test t17 F11: didx added to a `compute -o` archive was ignored (PASS) while
    {dW, didx} was refused; both are refused now, and the archive alone still passes."""
    archive = tmp_path / "a.npz"
    assert cli("compute", "embedding", "-o", archive).exit_code == 0
    arrays = dict(np.load(archive))
    assert cli("check", "embedding", "--grads", archive, "-q").exit_code == 0
    for name, keep in (("with_didx.npz", arrays), ("only.npz", {"dW": arrays["dW"]})):
        bad = tmp_path / name
        np.savez(bad, **keep, didx=np.zeros(arrays["idx"].shape))
        r = cli("check", "embedding", "--grads", bad, "-q")
        assert r.exit_code == 2 and "idx is not differentiated" in r.output, r.output


def test_a_misspelled_gradient_in_a_compute_archive_is_refused(cli, tmp_path):
    """Outside test t18 R-F11: a compute -o archive skipped every key it did not know, so dW
    edited into dw passed (exit 0) with dW never compared. Now refused with a did-you-mean;
    the archive as written still passes."""
    archive = tmp_path / "a.npz"
    assert cli("compute", "linear", "-o", archive).exit_code == 0
    arrays = dict(np.load(archive))
    arrays["dw"] = arrays.pop("dW")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    r = cli("check", "linear", "--grads", bad, "-q")
    assert r.exit_code == 2 and "did you mean 'dW'" in r.output, r.output
    assert cli("check", "linear", "--grads", archive, "-q").exit_code == 0
