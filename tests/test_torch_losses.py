"""embedding and the losses against PyTorch (optional: skipped without torch).

torch's F.embedding, F.mse_loss (mean), F.cross_entropy (mean) and F.multi_margin_loss (p=1,
margin=1, which averages the hinge over the C classes as well: times C it is CS231n's svm
loss) with autograd, on a grid of shapes; labels as torch's int64."""

from __future__ import annotations

import numpy as np
import pytest

from gradcli.layers import REGISTRY

torch = pytest.importorskip("torch")
F = torch.nn.functional

GRID = [(1, 2), (3, 2), (5, 7), (16, 10)]  # (N, C)


def _ours(name, t, g=1.0):
    layer = REGISTRY[name]
    out, cache = layer.forward(t, None)
    return out, layer.backward(np.asarray(g), cache)


@pytest.mark.parametrize("N, C", GRID)
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])  # 30: saturated softmax rows
def test_softmax_cross_entropy_matches_torch(N, C, scale):
    rng = np.random.default_rng(N * C)
    x, y = scale * rng.standard_normal((N, C)), rng.integers(0, C, N)
    out, grads = _ours("softmax_cross_entropy", {"x": x, "y": y})
    xt = torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, torch.tensor(y))
    loss.backward()
    assert out == pytest.approx(loss.item(), rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("N, C", GRID)
def test_svm_matches_torch_multi_margin(N, C):
    rng = np.random.default_rng(N + C)
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    out, grads = _ours("svm", {"x": x, "y": y}, g=2.0)
    xt = torch.tensor(x, requires_grad=True)
    loss = C * F.multi_margin_loss(xt, torch.tensor(y), p=1, margin=1.0)
    (2.0 * loss).backward()
    assert out == pytest.approx(loss.item(), rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 5, 3)])
def test_mse_matches_torch(shape):
    rng = np.random.default_rng(len(shape))
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    out, grads = _ours("mse", {"pred": pred, "target": target})
    pt = torch.tensor(pred, requires_grad=True)
    loss = F.mse_loss(pt, torch.tensor(target), reduction="none").mean(dim=(-2, -1))
    loss.sum().backward()
    np.testing.assert_allclose(out, loss.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(grads["pred"], pt.grad.numpy(), rtol=1e-13)


@pytest.mark.parametrize("idx_shape, V, D", [((4,), 5, 3), ((2, 6), 3, 4), ((1,), 1, 1)])
def test_embedding_matches_torch(idx_shape, V, D):
    rng = np.random.default_rng(V * D)
    idx, W = rng.integers(0, V, idx_shape), rng.standard_normal((V, D))
    out, _ = REGISTRY["embedding"].forward({"idx": idx, "W": W}, None)
    g = rng.standard_normal(out.shape)
    _, grads = _ours("embedding", {"idx": idx, "W": W}, g)
    Wt = torch.tensor(W, requires_grad=True)
    y = F.embedding(torch.tensor(idx), Wt)
    (y * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(out, y.detach().numpy())
    np.testing.assert_allclose(grads["W"], Wt.grad.numpy(), rtol=1e-14, atol=1e-15)
