"""The float32 false-FAIL sweep: every built-in layer, in float32, at its example spec and the
benchmark's S and M sizes plus large reductions, over seeds, methods and user implementations
(the built-in's own math as a user's --impl: computing in the dtype it is given, and computing
in float32 whatever it is given). Every check must PASS: a FAIL here is a false one.

    PYTHONPATH=. python benchmarks/float32_sweep.py [--quick] [--layers a,b] [--impl]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import gradcli
from benchmarks.cases import SIZES, make_tensors
from gradcli.layers import REGISTRY

# reductions over many elements: their float32 round-off is the largest
LARGE = {
    "layernorm": {"x": (4, 1000), "gamma": (1000,), "beta": (1000,)},
    "softmax": {"x": (4, 1000)},
    "conv2d": {"X": (6, 6, 64), "W": (3, 3, 64, 8), "b": (8,)},
    "attention": {"X": (256, 8), "W_Q": (8, 4), "W_K": (8, 4), "W_V": (8, 4)},
    "batchnorm": {"x": (1000, 4), "gamma": (4,), "beta": (4,)},
    "softmax_cross_entropy": {"x": (500, 100), "y": (500,)},
    "linear": {"x": (2, 2000), "W": (4, 2000), "b": (4,)},
}
METHODS = ("central", "forward", "backward", "central4", "complex")


def as_user(name: str, float32_only: bool):
    """The built-in layer's math as a user's forward/backward (keywords: tensors, options)."""
    layer = REGISTRY[name]
    constants = {i.name for i in layer.tensors if i.role == "target"}

    def split(kw):
        t = {k: v for k, v in kw.items() if k in {i.name for i in layer.tensors}}
        raw = {k: v for k, v in kw.items() if k not in t}
        if float32_only:
            t = {k: v if k in constants or np.asarray(v).dtype.kind in "iub"
                 else np.asarray(v, dtype=np.float32) for k, v in t.items()}
        opts = layer.resolve_options(layer.make_options(raw),
                                     {k: np.shape(v) for k, v in t.items()})
        return t, opts

    def forward(**kw):
        t, opts = split(kw)
        return layer.forward(t, opts)[0]

    def backward(grad_output, **kw):
        t, opts = split(kw)
        g = np.asarray(grad_output, dtype=np.float32) if float32_only else grad_output
        return layer.backward(g, layer.forward(t, opts)[1])

    return forward, backward


def _why(report) -> str:
    bad = [f"d{n}: rel {x.max_rel_error:.2g} atol {x.atol:.2g} {x.reason} "
           f"{x.worst[0] if x.worst else ''}" for n, x in report.results.items() if not x.passed]
    return f"{report.check.failures} {'; '.join(bad)}"


def cases(layers, quick):
    for name in layers:
        yield name, "example", None
        if not quick:
            if name in SIZES["S"]:
                yield name, "S", SIZES["S"][name]
            if name in SIZES["M"]:
                yield name, "M", SIZES["M"][name]
        if name in LARGE:
            yield name, "large", LARGE[name]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="example and large sizes only")
    ap.add_argument("--layers", default=",".join(REGISTRY))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--impl", action="store_true", help="also as user code (both kinds)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--verbose", action="store_true", help="a line per check")
    ap.add_argument("--sizes", default="example,S,M,large")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    counts = {"PASS": 0, "FAIL": 0}
    for name, size, shapes in cases(args.layers.split(","), args.quick):
        if size not in args.sizes.split(","):
            continue
        for seed in seeds:
            tensors = None if shapes is None else make_tensors(shapes, seed)
            runs = [(m, None) for m in args.methods.split(",")]
            runs = runs if size != "M" else [("central", None)]
            if args.impl:
                runs += [("central", "impl"), ("central", "impl32")]
            for method, impl in runs:
                kw = {}
                if impl:
                    kw = dict(zip(("forward", "backward"), as_user(name, impl == "impl32"),
                                  strict=True))
                t0 = time.time()
                r = gradcli.check(name, tensors, dtype="float32", seed=seed, method=method,
                                  **kw)
                verdict = "PASS" if r.passed else "FAIL"
                counts[verdict] += 1
                if args.verbose or not r.passed or time.time() - t0 > 20:
                    print(f"{verdict} {name} {size} seed={seed} {method} {impl or ''} "
                          f"({time.time() - t0:.1f}s): {_why(r)}", flush=True)
    print(f"float32 sweep: {counts['PASS']} PASS, {counts['FAIL']} FAIL")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
