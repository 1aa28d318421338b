"""A two-layer net (linear, relu, linear, softmax cross-entropy) as one custom loss, for the
tests of ties at small integer nets: ``relu_mlp(at_zero, shift)`` takes relu'(0) = ``at_zero``
in every tensor (torch's 0; a dict: per tensor of x, W1, b1, 0 where not named), and adds
``amount * grad_output`` to one element of one gradient where ``shift`` = (name, index,
amount) is given."""

import types

import numpy as np


def relu_mlp(at_zero=0.0, shift=None):
    def parts(x, W1, b1, W2, b2, y):
        a = x @ W1 + b1
        h = np.maximum(a, 0)
        s = h @ W2 + b2
        s = s - s.max(1, keepdims=True)
        return a, h, np.exp(s) / np.exp(s).sum(1, keepdims=True)

    def forward(x, W1, b1, W2, b2, y):
        p = parts(x, W1, b1, W2, b2, y)[2]
        return -np.log(p[np.arange(x.shape[0]), y]).mean()

    def backward(grad_output, x, W1, b1, W2, b2, y):
        a, h, p = parts(x, W1, b1, W2, b2, y)
        ds = p.copy()
        ds[np.arange(x.shape[0]), y] -= 1
        ds *= grad_output / x.shape[0]
        rule = at_zero if isinstance(at_zero, dict) else dict.fromkeys(("x", "W1", "b1"), at_zero)
        da = {n: (ds @ W2.T) * np.where(a == 0, rule.get(n, 0.0), a > 0) for n in ("x", "W1", "b1")}
        out = {"x": da["x"] @ W1.T, "W1": x.T @ da["W1"], "b1": da["b1"].sum(0), "W2": h.T @ ds,
               "b2": ds.sum(0)}
        if shift is not None:
            name, at, amount = shift
            out[name] = out[name].copy()
            out[name][at] += amount * grad_output
        return out

    return types.SimpleNamespace(forward=forward, backward=backward)
