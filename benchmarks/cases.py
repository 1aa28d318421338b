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
    },
    "L": {
        "linear": {"x": (128, 1024), "W": (512, 1024), "b": (512,)},
        "conv2d": {"X": (64, 64, 16), "W": (3, 3, 16, 32), "b": (32,)},
        "attention": {"X": (256, 128), "W_Q": (128, 64), "W_K": (128, 64), "W_V": (128, 64)},
    },
}


def make_tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s) for n, s in shapes.items()}


def torch_forward(layer: str):
    """A function of torch tensors in gradcli's layouts (channel-last), same math."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if layer == "linear":
        return lambda x, W, b: F.linear(x, W, b)
    if layer == "conv1d":
        return lambda x, w, b: F.conv1d(x[None, None], w[None, None])[0, 0] + b
    if layer == "conv2d":
        # NCHW inside, channel-last outside, like gradcli
        return lambda X, W, b: F.conv2d(X.permute(2, 0, 1)[None], W.permute(3, 2, 0, 1), b)[
            0
        ].permute(1, 2, 0)
    if layer == "attention":

        def attention(X, W_Q, W_K, W_V):
            Q, K, V = X @ W_Q, X @ W_K, X @ W_V
            A = torch.softmax(Q @ K.T / Q.shape[-1] ** 0.5, dim=-1)
            return A @ V

        return attention
    raise KeyError(layer)
