"""`gradcli init LAYER --impl`: a module to fill in, with the seed's formulas in comments."""

from __future__ import annotations

from gradcli.errors import GradcliError

_HEADER = '''"""My {layer} layer, checked by: gradcli check {layer} SPEC --impl {file}

gradcli calls forward(**tensors, **options) and backward(grad_output, **tensors, **options),
with the tensors by name (NumPy arrays) and only the options your spec sets. backward returns
a dict of gradients keyed by tensor name, each of that tensor's shape.
"""

import numpy as np


'''

_BODIES = {
    "linear": """
def forward(x, W, b):
    # z = W x + b                       x (in,), W (out, in), b (out,) -> z (out,)
    raise NotImplementedError


def backward(grad_output, x, W, b):
    # dL/dW = dL/dz . x^T    dL/db = dL/dz    dL/dx = W^T . dL/dz
    dz = grad_output
    raise NotImplementedError
    return {"x": ..., "W": ..., "b": ...}
""",
    "conv1d": """
def forward(x, w, b):
    # z_i = sum_{j=1..k} w_j x_{i+j-1} + b,  i = 1..m,  m = n - k + 1   (1-based, as the seed)
    # x (n,), w (k,), b scalar -> z (m,)
    raise NotImplementedError


def backward(grad_output, x, w, b):
    # dL/db = sum_i d_i
    # dL/dw_j = sum_i d_i x_{i+j-1}
    # dL/dx_p = sum_{i=max(1, p-k+1)..min(m, p)} d_i w_{p-i+1}
    d = grad_output
    raise NotImplementedError
    return {"x": ..., "w": ..., "b": ...}
""",
    "conv2d": """
def forward(X, W, b):
    # Z[i, j, c] = sum_{m, n, d} W[m, n, d, c] X[i+m, j+n, d] + b[c]      (channel-last)
    # X (H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,) -> Z (H-kh+1, W-kw+1, C_out)
    raise NotImplementedError


def backward(grad_output, X, W, b):
    # dL/dW[m, n, d, c] = sum_{i, j} dZ[i, j, c] X[i+m, j+n, d]   (correlate X with dZ)
    # dL/dX[i, j, d] = sum_{m, n, c} dZ[i-m, j-n, c] W[m, n, d, c]  (full conv, rotated kernel)
    # dL/db[c] = sum_{i, j} dZ[i, j, c]
    dZ = grad_output
    raise NotImplementedError
    return {"X": ..., "W": ..., "b": ...}
""",
    "attention": """
def forward(X, W_Q, W_K, W_V):
    # Q = X W_Q, K = X W_K, V = X W_V, S = Q K^T / sqrt(d_k), A = softmax(S) (rows), out = A V
    # X (T, d), W_Q (d, d_k), W_K (d, d_k), W_V (d, d_v) -> out (T, d_v)
    raise NotImplementedError


def backward(grad_output, X, W_Q, W_K, W_V):
    # dV = A^T dout          dA = dout V^T
    # dS = A * (dA - rowsum(dA * A))           (the softmax Jacobian)
    # dQ = dS K / sqrt(d_k)  dK = dS^T Q / sqrt(d_k)
    # dW_Q = X^T dQ   dW_K = X^T dK   dW_V = X^T dV
    # dX = dQ W_Q^T + dK W_K^T + dV W_V^T      (the seed leaves this one out)
    dout = grad_output
    raise NotImplementedError
    # optional: add "Q", "K", "V", "S", "A" (dQ ... dA) to have those checked too
    return {"X": ..., "W_Q": ..., "W_K": ..., "W_V": ...}
""",
    "custom": """
# Any layer: the tensors are the ones your spec names under `tensors:` (layer: custom), and
# options: {...} arrive as keywords. Example: y = tanh(scale * x).
def forward(x, scale=1.0):
    return np.tanh(scale * x)


def backward(grad_output, x, scale=1.0):
    return {"x": grad_output * scale * (1 - np.tanh(scale * x) ** 2)}
""",
}


def module(layer: str) -> str:
    if layer not in _BODIES:
        raise GradcliError(f"unknown layer {layer!r} (known layers: {', '.join(_BODIES)})")
    return _HEADER.format(layer=layer, file=f"my_{layer}.py") + _BODIES[layer].lstrip("\n")


# `gradcli init custom`: a spec for the custom skeleton above, so the two run as they are
CUSTOM_SPEC = """\
# gradcli spec for a custom layer: your own forward and backward, in a module
# run: gradcli init custom --impl -o my_custom.py
#      gradcli check custom THIS_FILE.yaml --impl my_custom.py
layer: custom
dtype: float64          # float64 or float32
seed: 0                 # seeds every generated tensor and the default grad_output
options:                # any keywords; your functions receive exactly these
  scale: 2.0
tensors:                # any names (Python identifiers, your functions' keywords), any shapes
  # each tensor: a .npy path (relative to this file), file.npz:key, an inline number
  # or nested list, or {shape: [...], init: normal|uniform|zeros|ones|arange, scale: 1}
  x: {shape: [3, 4], init: normal}
# grad_output (the upstream gradient dL/d(output)): omitted, drawn with your output's shape
"""
