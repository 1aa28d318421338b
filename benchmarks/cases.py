"""Benchmark sizes and the same layers in PyTorch (used only when torch is installed)."""

from __future__ import annotations

import numpy as np

SIZES: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {
    "S": {
        "linear": {"x": (4, 16), "W": (8, 16), "b": (8,)},
        "conv1d": {"x": (64,), "w": (5,), "b": ()},
        "conv2d": {"X": (8, 8, 3), "W": (3, 3, 3, 4), "b": (4,)},
        "attention": {"X": (8, 16), "W_Q": (16, 8), "W_K": (16, 8), "W_V": (16, 8)},
    },
    "M": {
        "linear": {"x": (32, 256), "W": (128, 256), "b": (128,)},
        "conv1d": {"x": (4096,), "w": (64,), "b": ()},
        "conv2d": {"X": (32, 32, 8), "W": (3, 3, 8, 16), "b": (16,)},
        "attention": {"X": (64, 64), "W_Q": (64, 32), "W_K": (64, 32), "W_V": (64, 32)},
        "rnn_step": {"x": (32, 64), "prev_h": (32, 64), "Wx": (64, 64), "Wh": (64, 64),
                     "b": (64,)},
        "lstm_step": {"x": (32, 64), "prev_h": (32, 32), "prev_c": (32, 32),
                      "Wx": (64, 128), "Wh": (32, 128), "b": (128,)},
        "layernorm": {"x": (64, 256), "gamma": (256,), "beta": (256,)},
        "batchnorm": {"x": (64, 128), "gamma": (128,), "beta": (128,)},
        "groupnorm": {"X": (16, 16, 32), "gamma": (32,), "beta": (32,)},
        "maxpool2d": {"X": (32, 32, 16)},
        "avgpool2d": {"X": (32, 32, 16)},
        # issue 14: a batch of 32 feature maps 16 x 16 x 8 (elementwise: one color)
        **{a: {"x": (32, 16, 16, 8)} for a in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu")},
        "softmax": {"x": (256, 128)},
        "flatten": {"x": (32, 16, 16, 8)},
        "dropout": {"x": (32, 16, 16, 8)},
        "embedding": {"idx": (32, 16), "W": (1000, 64)},
        "mse": {"pred": (64, 32), "target": (64, 32)},
        "softmax_cross_entropy": {"x": (64, 100), "y": (64,)},
        "svm": {"x": (64, 100), "y": (64,)},
    },
    "L": {
        "linear": {"x": (128, 1024), "W": (512, 1024), "b": (512,)},
        "conv2d": {"X": (64, 64, 16), "W": (3, 3, 16, 32), "b": (32,)},
        "attention": {"X": (256, 128), "W_Q": (128, 64), "W_K": (128, 64), "W_V": (128, 64)},
    },
}


# issue 4's options, at M-like sizes: (layer, shapes, options)
OPTION_CASES: dict[str, tuple[str, dict[str, tuple[int, ...]], dict]] = {
    "conv2d-batched-strided": (
        "conv2d",
        {"X": (8, 32, 32, 8), "W": (3, 3, 8, 16), "b": (16,)},
        {"stride": 2, "padding": 1},
    ),
    "attention-causal-mha": (
        "attention",
        {"X": (4, 64, 64), "W_Q": (64, 32), "W_K": (64, 32), "W_V": (64, 32), "W_O": (32, 64)},
        {"causal": True, "heads": 4},
    ),
}


def cases(size: str):
    """(case name, layer, shapes, options) for a size S, M, L, or O (the option cases)."""
    if size == "O":
        for name, (layer, shapes, options) in OPTION_CASES.items():
            yield name, layer, shapes, options
        return
    for layer, shapes in SIZES[size].items():
        yield layer, layer, shapes, {}


# labels and indices: integers below the size of this tensor's last axis (classes, rows)
INDEX_BOUNDS = {"y": ("x", -1), "idx": ("W", 0)}


def make_tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for n, s in shapes.items():
        if n in INDEX_BOUNDS:
            of, axis = INDEX_BOUNDS[n]
            out[n] = rng.integers(0, shapes[of][axis], s)
        else:
            out[n] = rng.standard_normal(s)
    return out


def torch_forward(layer: str, options: dict | None = None):
    """A function of torch tensors in gradcli's layouts (channel-last), same math."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    options = options or {}

    if layer == "linear":
        return lambda x, W, b: F.linear(x, W, b)
    if layer == "conv1d":
        return lambda x, w, b: F.conv1d(x[None, None], w[None, None])[0, 0] + b
    if layer == "conv2d":
        # NCHW inside, channel-last outside, like gradcli
        s, p = options.get("stride", 1), options.get("padding", 0)

        def conv2d(X, W, b):
            batched = X if X.ndim == 4 else X[None]
            Z = F.conv2d(batched.permute(0, 3, 1, 2), W.permute(3, 2, 0, 1), b, stride=s, padding=p)
            Z = Z.permute(0, 2, 3, 1)
            return Z if X.ndim == 4 else Z[0]

        return conv2d
    if layer == "attention":
        h, causal = options.get("heads", 1), options.get("causal", False)

        def split(M):
            return M.reshape(*M.shape[:-1], h, M.shape[-1] // h).transpose(-3, -2)

        def attention(X, W_Q, W_K, W_V, W_O=None):
            Q, K, V = split(X @ W_Q), split(X @ W_K), split(X @ W_V)
            S = Q @ K.transpose(-1, -2) / Q.shape[-1] ** 0.5
            if causal:
                T = S.shape[-1]
                S = S.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            H = (torch.softmax(S, dim=-1) @ V).transpose(-3, -2)
            H = H.reshape(*H.shape[:-2], -1)
            return H if W_O is None else H @ W_O

        return attention
    if layer == "rnn_step":
        return lambda x, prev_h, Wx, Wh, b: torch.tanh(x @ Wx + prev_h @ Wh + b)
    if layer == "lstm_step":

        def lstm_step(x, prev_h, prev_c, Wx, Wh, b):
            i, f, o, g = (x @ Wx + prev_h @ Wh + b).chunk(4, dim=-1)  # CS231n's gate order
            c = torch.sigmoid(f) * prev_c + torch.sigmoid(i) * torch.tanh(g)
            return torch.stack([torch.sigmoid(o) * torch.tanh(c), c], dim=-2)

        return lstm_step
    eps = options.get("eps", 1e-5)
    if layer == "layernorm":
        return lambda x, gamma, beta: F.layer_norm(x, x.shape[-1:], gamma, beta, eps)
    if layer == "batchnorm":  # training mode: the batch's own statistics
        return lambda x, gamma, beta: F.batch_norm(x, None, None, gamma, beta, True, 0.0, eps)
    if layer == "groupnorm":
        groups = options.get("groups", 2)
        return lambda X, gamma, beta: F.group_norm(
            X.permute(2, 0, 1)[None], groups, gamma, beta, eps
        )[0].permute(1, 2, 0)
    if layer in ("maxpool2d", "avgpool2d"):
        k, p = options.get("size", 2), options.get("padding", 0)
        s = options.get("stride") or k
        pool = F.max_pool2d if layer == "maxpool2d" else F.avg_pool2d
        return lambda X: pool(X.permute(2, 0, 1)[None], k, s, p)[0].permute(1, 2, 0)
    if layer == "relu":
        return lambda x: F.relu(x)
    if layer == "leaky_relu":
        return lambda x: F.leaky_relu(x, options.get("alpha", 0.01))
    if layer == "sigmoid":
        return lambda x: torch.sigmoid(x)
    if layer == "tanh":
        return lambda x: torch.tanh(x)
    if layer == "gelu":
        return lambda x: F.gelu(x, approximate="tanh")
    if layer == "softmax":
        return lambda x: torch.softmax(x, dim=-1)
    if layer == "flatten":
        return lambda x: torch.flatten(x, start_dim=options.get("start", 1))
    if layer == "dropout":  # gradcli's fixed mask (torch's own is random per call)
        p, seed = options.get("p", 0.5), options.get("seed", 0)

        def dropout(x):
            keep = np.random.default_rng(seed).random(tuple(x.shape)) >= p
            return x * torch.from_numpy(keep / (1 - p))

        return dropout
    if layer == "embedding":
        return lambda idx, W: F.embedding(idx, W)
    if layer == "mse":
        return lambda pred, target: F.mse_loss(pred, target)
    if layer == "softmax_cross_entropy":
        return lambda x, y: F.cross_entropy(x, y)
    if layer == "svm":  # torch also averages over the C classes
        return lambda x, y: x.shape[-1] * F.multi_margin_loss(x, y, p=1, margin=1.0)
    raise KeyError(layer)
