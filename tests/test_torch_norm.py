"""The normalizations and poolings against PyTorch (optional: skipped without torch), on the
option grids of test_norm_pool.py, forward and every gradient to round-off. torch is
channel-first: our channel-last arrays are moved there and back."""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_norm_pool import _norm_cases, _pool_cases, _run  # noqa: E402


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _channel_first(a, core):
    """(..., *core spatial, C) -> (B, C, *spatial) with B the leading axes flattened."""
    a = a.reshape((-1,) + a.shape[a.dim() - core :])
    return a.movedim(-1, 1)


def _torch_forward(name, t, raw):
    """Our output shape, computed by torch on the same tensors."""
    x = t.get("x", t.get("X"))
    gamma, beta = t.get("gamma"), t.get("beta")
    if gamma is not None and beta is None:
        beta = torch.zeros_like(gamma)
    eps = float(raw.get("eps", 1e-5))
    if name == "layernorm":
        return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)
    if name == "batchnorm":
        core = raw.get("spatial", 0) + 2
        lead = x.shape[: x.dim() - core]
        if math.prod(x.shape[x.dim() - core : -1]) == 1:
            pytest.skip("torch refuses one value per channel in training; ours gives y = beta")
        outs = []
        for b in x.reshape((-1,) + x.shape[x.dim() - core :]):  # each independent batch
            y = F.batch_norm(b.movedim(-1, 1), None, None, gamma, beta, True, 0.0, eps)
            outs.append(y.movedim(1, -1))
        return torch.stack(outs).reshape(lead + x.shape[x.dim() - core :])
    if name == "groupnorm":
        core = raw.get("spatial", 2) + 1
        y = F.group_norm(_channel_first(x, core), raw.get("groups", 2), gamma, beta, eps)
        return y.movedim(1, -1).reshape(x.shape)
    size = _pair(raw.get("size", 2))
    stride = _pair(raw.get("stride") or raw.get("size", 2))
    padding = _pair(raw.get("padding", 0))
    xc = _channel_first(x, 3)
    if name == "maxpool2d":
        y = F.max_pool2d(xc, size, stride, padding)
    else:
        y = F.avg_pool2d(xc, size, stride, padding,
                         count_include_pad=raw.get("count_include_pad", True))  # fmt: skip
    y = y.movedim(1, -1)
    return y.reshape(x.shape[:-3] + y.shape[1:])


@pytest.mark.parametrize("name, shapes, raw", [*_norm_cases(), *_pool_cases()])
def test_matches_torch_on_the_option_grid(name, shapes, raw):
    rng = np.random.default_rng(7 + len(str(raw)))
    t = {k: rng.standard_normal(s) * 2 for k, s in shapes.items()}
    tt = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in t.items()}
    expected = _torch_forward(name, tt, raw)
    g = rng.standard_normal(tuple(expected.shape))
    (expected * torch.tensor(g)).sum().backward()
    out, grads = _run(name, t, raw, g)
    scale = float(np.max(np.abs(expected.detach().numpy())))
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12 * scale)
    for k, v in tt.items():
        want = v.grad.numpy()
        atol = 1e-10 * max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(grads[k], want, rtol=1e-9, atol=atol, err_msg=f"d{k}")
    assert math.isfinite(scale)


def test_maxpool_ties_route_like_torch():
    X = np.zeros((1, 4, 4, 2))
    X[0, 1, 1], X[0, 0, 1] = 2.0, 2.0
    Xt = torch.tensor(X, requires_grad=True)
    F.max_pool2d(Xt.movedim(-1, 1), 2).sum().backward()
    _, grads = _run("maxpool2d", {"X": X}, {}, np.ones((1, 2, 2, 2)))
    np.testing.assert_array_equal(grads["X"], Xt.grad.numpy())
