"""Issue 14's activations, softmax, flatten and dropout against PyTorch (optional: skipped
without torch), forward and backward to round-off on an option grid, batched shapes."""

import numpy as np
import pytest

from gradcli.layers import REGISTRY

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(5,), (3, 4), (2, 3, 4, 2)]


def torch_forward(name, raw, x, keep=None):
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, negative_slope=raw.get("alpha", 0.01))
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "gelu":
        return F.gelu(x, approximate="tanh")
    if name == "softmax":
        return torch.softmax(x, dim=-1)
    if name == "flatten":
        return torch.nn.Flatten(start_dim=raw.get("start", 1))(x)
    if name == "dropout":  # torch draws its own mask: apply ours the way F.dropout scales
        return x * keep / (1 - raw.get("p", 0.5))
    raise KeyError(name)


GRID = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": 0.2}),
    ("leaky_relu", {"alpha": -1.5}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("gelu", {}),
    ("softmax", {}),
    ("flatten", {}),
    ("flatten", {"start": 0}),
    ("flatten", {"start": -2}),
    ("dropout", {}),
    ("dropout", {"p": 0.2, "seed": 3}),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name, raw", GRID, ids=[f"{n}-{r}" for n, r in GRID])
def test_matches_torch(name, raw, shape):
    if name == "flatten" and not -len(shape) <= raw.get("start", 1) < len(shape):
        pytest.skip("start outside x")
    layer = REGISTRY[name]
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape) * 4
    opts = layer.resolve_options(layer.make_options(raw), {"x": shape})
    y, cache = layer.forward({"x": x}, opts)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy, cache)["x"]

    keep = None
    if name == "dropout":
        keep = torch.from_numpy(
            (np.random.default_rng(raw.get("seed", 0)).random(shape) >= raw.get("p", 0.5)) * 1.0
        )
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_forward(name, raw, xt, keep)
    yt.backward(torch.tensor(dy))
    # round-off: relative, with a floor at the tensor's scale (gelu's tail: torch's
    # 1 + tanh(u) cancels for x << 0, ours does not)
    for ours, theirs in ((y, yt.detach().numpy()), (dx, xt.grad.numpy())):
        scale = float(np.max(np.abs(theirs), initial=0.0))
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * scale)


def test_relu_at_zero_agrees_with_torch_subgradient():
    """pytorch#114234: torch's relu backward at exactly 0 is 0; so is ours."""
    x = np.array([-1.0, 0.0, 1.0])
    y, cache = REGISTRY["relu"].forward({"x": x}, None)
    xt = torch.tensor(x, requires_grad=True)
    F.relu(xt).sum().backward()
    assert list(REGISTRY["relu"].backward(np.ones(3), cache)["x"]) == list(xt.grad.numpy())
