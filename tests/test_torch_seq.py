"""rnn_step and lstm_step against PyTorch's own cells (optional: skipped without torch).

torch.nn.RNNCell and LSTMCell are independent implementations: their weights are (out, in)
and LSTMCell orders its gates i, f, g, o where CS231n (and gradcli) use i, f, o, g, so a
wrong gate order or a transposition on either side cannot agree by accident."""

from __future__ import annotations

import numpy as np
import pytest

from gradcli.layers import REGISTRY

torch = pytest.importorskip("torch")

GRID = [  # (D, H, batch of x, batch of prev_h, batch of prev_c)
    (1, 1, (), (), ()),
    (3, 2, (4,), (4,), (4,)),
    (5, 4, (2, 3), (), ()),
    (2, 3, (6,), (1,), (6,)),
    (4, 5, (1, 2), (3, 1), (2,)),
]


def _torch_call(cell, *args):
    """Run a torch cell over arbitrary broadcast batch axes (cells take (N, features))."""
    batch = torch.broadcast_shapes(*(a.shape[:-1] for a in args))
    flat = [a.expand(*batch, a.shape[-1]).reshape(-1, a.shape[-1]) for a in args]
    out = cell(flat[0], flat[1] if len(flat) == 2 else (flat[1], flat[2]))
    if isinstance(out, tuple):
        return tuple(o.reshape(*batch, -1) for o in out)
    return out.reshape(*batch, -1)


def _grads(layer, t, g):
    out, cache = layer.forward(t, None)
    return out, layer.backward(g, cache)


@pytest.mark.parametrize("D, H, bx, bh, bc", GRID)
def test_rnn_step_matches_rnncell(D, H, bx, bh, bc):
    rng = np.random.default_rng(D * 10 + H)
    t = {"x": rng.standard_normal((*bx, D)), "prev_h": rng.standard_normal((*bh, H)),
         "Wx": rng.standard_normal((D, H)), "Wh": rng.standard_normal((H, H)),
         "b": rng.standard_normal(H)}  # fmt: skip
    layer = REGISTRY["rnn_step"]
    out, _ = layer.forward(t, None)
    g = rng.standard_normal(out.shape)
    out, grads = _grads(layer, t, g)

    cell = torch.nn.RNNCell(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(t["Wx"].T))
        cell.weight_hh.copy_(torch.tensor(t["Wh"].T))
        cell.bias_ih.copy_(torch.tensor(t["b"]))
        cell.bias_hh.zero_()
    x = torch.tensor(t["x"], requires_grad=True)
    h = torch.tensor(t["prev_h"], requires_grad=True)
    y = _torch_call(cell, x, h)
    (y * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-13, atol=1e-14)
    expected = {"x": x.grad, "prev_h": h.grad, "Wx": cell.weight_ih.grad.T,
                "Wh": cell.weight_hh.grad.T, "b": cell.bias_ih.grad}  # fmt: skip
    for k, v in expected.items():
        np.testing.assert_allclose(grads[k], v.numpy(), rtol=1e-12, atol=1e-13, err_msg=k)


def _to_torch_gates(W):
    """CS231n's column blocks (i, f, o, g) as torch's rows (i, f, g, o)."""
    i, f, o, g = np.split(W, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1).T


def _from_torch_gates(W):
    i, f, g, o = np.split(W.T, 4, axis=-1)
    return np.concatenate([i, f, o, g], axis=-1)


@pytest.mark.parametrize("D, H, bx, bh, bc", GRID)
def test_lstm_step_matches_lstmcell(D, H, bx, bh, bc):
    rng = np.random.default_rng(D * 10 + H + 1)
    t = {"x": rng.standard_normal((*bx, D)), "prev_h": rng.standard_normal((*bh, H)),
         "prev_c": rng.standard_normal((*bc, H)), "Wx": rng.standard_normal((D, 4 * H)),
         "Wh": rng.standard_normal((H, 4 * H)), "b": rng.standard_normal(4 * H)}  # fmt: skip
    layer = REGISTRY["lstm_step"]
    out, _ = layer.forward(t, None)
    g = rng.standard_normal(out.shape)
    out, grads = _grads(layer, t, g)

    cell = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(_to_torch_gates(t["Wx"])))
        cell.weight_hh.copy_(torch.tensor(_to_torch_gates(t["Wh"])))
        cell.bias_ih.copy_(torch.tensor(_to_torch_gates(t["b"][None]).ravel()))
        cell.bias_hh.zero_()
    x = torch.tensor(t["x"], requires_grad=True)
    h = torch.tensor(t["prev_h"], requires_grad=True)
    c = torch.tensor(t["prev_c"], requires_grad=True)
    next_h, next_c = _torch_call(cell, x, h, c)
    gt = torch.tensor(g)
    (next_h * gt[..., 0, :] + next_c * gt[..., 1, :]).sum().backward()
    np.testing.assert_allclose(out[..., 0, :], next_h.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out[..., 1, :], next_c.detach().numpy(), rtol=1e-13, atol=1e-14)
    expected = {"x": x.grad.numpy(), "prev_h": h.grad.numpy(), "prev_c": c.grad.numpy(),
                "Wx": _from_torch_gates(cell.weight_ih.grad.numpy()),
                "Wh": _from_torch_gates(cell.weight_hh.grad.numpy()),
                "b": _from_torch_gates(cell.bias_ih.grad.numpy()[:, None]).ravel()}  # fmt: skip
    for k, v in expected.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-12, atol=1e-13, err_msg=k)
