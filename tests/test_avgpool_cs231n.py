"""avgpool2d in CS231n's layout (outside test t22 N1): NCHW answers got no layout hint, where
conv2d's and maxpool2d's do; a student's avg_pool_forward_naive / avg_pool_backward_naive,
written as max-pool's is (NCHW, pool_param), is read. Twin: a wrong divisor fails."""

from __future__ import annotations

import numpy as np
import pytest

MODULE = '''
import numpy as np
def avg_pool_forward_naive(x, pool_param):
    N, C, H, W = x.shape
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i*s:i*s+ph, j*s:j*s+pw].mean(axis=(2, 3))
    return out, (x, pool_param)
def avg_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i*s:i*s+ph, j*s:j*s+pw] += dout[:, :, i, j][:, :, None, None] / DIVISOR
    return dx
'''
SPEC = "layer: avgpool2d\ntensors:\n  X: {shape: [2, 6, 4, 3]}\n"


def test_nchw_answers_are_named(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    archive = tmp_path / "a.npz"
    assert cli("compute", "avgpool2d", str(spec), "-o", str(archive)).exit_code == 0
    np.save(tmp_path / "dX.npy", np.load(archive)["dX"].transpose(0, 3, 1, 2))
    result = cli("check", "avgpool2d", str(spec), "--grads", str(tmp_path / "dX.npy"),
                 "--wrt", "X")  # fmt: skip
    assert result.exit_code == 2
    assert "CS231n's layout (N, C, H, W)" in result.stderr
    assert "transpose(0, 2, 3, 1)" in result.stderr


@pytest.mark.parametrize(("divisor", "code"), [("(ph * pw)", 0), ("ph", 1)])
def test_a_cs231n_style_avgpool_is_read(cli, tmp_path, divisor, code):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    impl = tmp_path / "pool.py"
    impl.write_text(MODULE.replace("DIVISOR", divisor))
    result = cli("check", "avgpool2d", str(spec), "--impl", str(impl))
    assert result.exit_code == code, result.stderr
