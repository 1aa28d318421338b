"""float32 answers from another code: torch's float32 gradients of every built-in layer, as
--grads answers to a float32 check (they must PASS), and the same answers with 2% bugs on an
eighth of each tensor's elements (they should FAIL, unless torch's own float32 error there is
as large). At small, M and large sizes, plain, with the first input times 8 (saturation) and
at confident logits (+15). Needs torch.

    PYTHONPATH=. python benchmarks/float32_answers.py [--layers a,b] [--seeds 0,1] [--verbose]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import gradcli
from benchmarks.cases import SIZES, make_tensors, torch_forward
from gradcli.layers import REGISTRY

SMALL = {
    "linear": {"x": (4, 16), "W": (8, 16), "b": (8,)},
    "conv2d": {"X": (8, 8, 3), "W": (3, 3, 3, 4), "b": (4,)},
    "attention": {"X": (8, 16), "W_Q": (16, 8), "W_K": (16, 8), "W_V": (16, 8)},
    "rnn_step": {"x": (4, 8), "prev_h": (4, 6), "Wx": (8, 6), "Wh": (6, 6), "b": (6,)},
    "lstm_step": {"x": (4, 8), "prev_h": (4, 6), "prev_c": (4, 6), "Wx": (8, 24),
                  "Wh": (6, 24), "b": (24,)},
    "layernorm": {"x": (8, 32), "gamma": (32,), "beta": (32,)},
    "batchnorm": {"x": (16, 8), "gamma": (8,), "beta": (8,)},
    "groupnorm": {"X": (6, 6, 8), "gamma": (8,), "beta": (8,)},
    "maxpool2d": {"X": (8, 8, 4)},
    "avgpool2d": {"X": (8, 8, 4)},
    **{a: {"x": (4, 6, 6, 3)} for a in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu")},
    "softmax": {"x": (16, 10)},
    "embedding": {"idx": (4, 5), "W": (20, 8)},
    "mse": {"pred": (16, 8), "target": (16, 8)},
    "softmax_cross_entropy": {"x": (8, 4), "y": (8,)},
    "svm": {"x": (16, 10), "y": (16,)},
}
LARGE = {
    "layernorm": {"x": (4, 1000), "gamma": (1000,), "beta": (1000,)},
    "softmax": {"x": (4, 1000)},
    "batchnorm": {"x": (1000, 4), "gamma": (4,), "beta": (4,)},
    "softmax_cross_entropy": {"x": (500, 100), "y": (500,)},
    "linear": {"x": (2, 2000), "W": (4, 2000), "b": (4,)},
}
LOSSES = ("mse", "softmax_cross_entropy", "svm")
LOGITS = ("softmax_cross_entropy", "softmax", "svm")


def torch_answers(name, t32, loss):
    """(torch's float32 gradients, the upstream gradient used or None for a loss)."""
    import torch

    tt = {k: torch.from_numpy(v) if v.dtype.kind in "iu"
          else torch.from_numpy(v.copy()).requires_grad_(k != "target")
          for k, v in t32.items()}  # fmt: skip
    out = torch_forward(name)(**tt)
    go = None if loss else np.random.default_rng(7).standard_normal(tuple(out.shape))
    go = None if go is None else go.astype(np.float32)
    out.backward(torch.ones_like(out) if go is None else torch.from_numpy(go))
    return {k: v.grad.numpy() for k, v in tt.items() if v.requires_grad}, go


def cases(layers, seeds):
    for name in layers:
        for size, shapes in (("small", SMALL.get(name)), ("M", SIZES["M"].get(name)),
                             ("large", LARGE.get(name))):  # fmt: skip
            if shapes is None or (size == "M" and np.prod(next(iter(shapes.values()))) > 40000):
                continue
            for seed in seeds:
                for stress in ("", "scale8", "confident"):
                    if stress == "confident" and name not in LOGITS:
                        continue
                    t = make_tensors(shapes, seed)
                    first = next(k for k in t if t[k].dtype.kind == "f")
                    if stress == "scale8":
                        t[first] = t[first] * 8
                    elif stress == "confident" and "y" in t:
                        t["x"][np.arange(len(t["y"])), t["y"]] += 15
                    elif stress == "confident":
                        t["x"][..., 0] += 15
                    t32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
                           for k, v in t.items()}  # fmt: skip
                    yield f"{name} {size} seed={seed} {stress}", name, seed, t32


def main() -> int:
    ap = argparse.ArgumentParser()
    skip = ("conv1d", "flatten", "dropout")
    ap.add_argument("--layers", default=",".join(n for n in REGISTRY if n not in skip))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--verbose", action="store_true", help="a line per missed bug")
    args = ap.parse_args()
    ok = bad = caught = missed = 0
    seeds = [int(s) for s in args.seeds.split(",")]
    for tag, name, seed, t32 in cases(args.layers.split(","), seeds):
        loss = name in LOSSES
        g, go = torch_answers(name, t32, loss)
        kw = {} if loss else {"grad_output": go}
        r = gradcli.check(name, t32, dtype="float32", grads=g, seed=0, **kw)
        if r.passed:
            ok += 1
        else:
            bad += 1
            print("FALSE FAIL", tag, {n: x.reason or x.worst[:1] for n, x in r.results.items()
                                      if not x.passed}, flush=True)  # fmt: skip
        rng = np.random.default_rng(seed + 100)
        for n in g:
            arr = g[n].astype(np.float64)
            sel = rng.random(arr.shape) < 0.125
            if not sel.any():
                sel.flat[rng.integers(arr.size)] = True
            arr[sel] *= 1.02
            wrong = arr.astype(np.float32)
            if np.array_equal(wrong, g[n]):
                continue
            rb = gradcli.check(name, t32, dtype="float32", grads={**g, n: wrong}, seed=0, **kw)
            if rb.passed:
                missed += 1
                if args.verbose:
                    print("missed", tag, n, flush=True)
            else:
                caught += 1
    print(f"torch's float32 answers: {ok} PASS, {bad} FAIL; "
          f"2% bugs on an eighth: {caught} caught, {missed} missed")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
