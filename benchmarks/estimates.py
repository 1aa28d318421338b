"""How far a check's printed estimate is from its run: the estimate decides full check against
sample under --budget, so a check that runs many times its estimate breaks the budget's promise.

    python benchmarks/estimates.py                       # sizes S and M, every layer
    python benchmarks/estimates.py --sizes M --layers maxpool2d,attention --repeat 5
    python benchmarks/estimates.py --impl                # also as the user's code (--impl)

For each case: gradcli.check's ``estimated_seconds`` and ``counted_seconds`` from the report,
and the call's wall and CPU time (median of --repeat, one BLAS thread as the CLI runs). The
ratio is wall / estimated: above 1 the estimate promised less than the run took. ``--impl``
passes the built-in layer's own forward and backward as the user's functions, so the check
takes the path of code it cannot look into (calls timed, no incremental evaluation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cases import cases, make_tensors  # noqa: E402

import gradcli  # noqa: E402
from gradcli.layers import REGISTRY  # noqa: E402


def user_functions(layer: str):
    """The built-in layer's forward and backward, written as a user's keyword functions (the
    layer's tensor names as parameters, the spec's options as keywords)."""
    lay = REGISTRY[layer]
    names = ", ".join(t.name + ("=None" if t.absent_ok else "") for t in lay.tensors)
    given = ", ".join(t.name for t in lay.tensors)
    source = (
        f"def forward({names}, **options):\n"
        f"    return lay.forward(dict(locals_of({given})), lay.options(**options))[0]\n"
        f"def backward(grad_output, {names}, **options):\n"
        f"    t = dict(locals_of({given}))\n"
        f"    return lay.backward(grad_output, lay.forward(t, lay.options(**options))[1])\n"
    )
    pairs = lambda *a: ((t.name, v) for t, v in zip(lay.tensors, a, strict=True) if v is not None)  # noqa: E731
    scope = {"lay": lay, "locals_of": pairs}
    exec(source, scope)
    return scope["forward"], scope["backward"]


def one(layer: str, shapes: dict, options: dict, impl: bool, repeat: int) -> dict:
    tensors = make_tensors(shapes)
    kw = {}
    if impl:
        kw["forward"], kw["backward"] = user_functions(layer)
    walls, cpus, report = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        report = gradcli.check(layer, tensors, options=options or None, **kw)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    core = report.check  # the checker's record: its estimate and what it counted
    wall = statistics.median(walls)
    return {
        "estimated": core.estimated_seconds, "counted": core.counted_seconds, "wall": wall,
        "cpu": statistics.median(cpus), "ratio": wall / max(core.estimated_seconds, 1e-9),
        "cpu_ratio": statistics.median(cpus) / max(core.estimated_seconds, 1e-9),
        "mode": ",".join(sorted({r.mode for r in core.results.values()})),
        "passed": report.passed,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="S,M")
    ap.add_argument("--layers", default="", help="comma-separated; default every layer")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--impl", action="store_true", help="also as the user's code")
    args = ap.parse_args()
    want = set(filter(None, args.layers.split(",")))
    print(f"{'case':32} {'estimated':>10} {'counted':>9} {'wall':>8} {'cpu':>8} {'wall/est':>9}"
          f" {'cpu/est':>8}  mode")  # fmt: skip
    ratios = []
    for size in args.sizes.split(","):
        for name, layer, shapes, options in cases(size):
            if want and layer not in want and name not in want:
                continue
            for impl in (False, True) if args.impl else (False,):
                try:
                    r = one(layer, shapes, options, impl, args.repeat)
                except Exception as exc:  # a case the user path cannot take: say so, go on
                    print(f"{size}:{name}{' impl' if impl else '':8} skipped: {exc}")
                    continue
                ratios.append(r["ratio"])
                label = f"{size}:{name}{' --impl' if impl else ''}"
                print(f"{label:32} {r['estimated']:10.3f} {r['counted']:9.3f} {r['wall']:8.3f} "
                      f"{r['cpu']:8.3f} {r['ratio']:9.2f} {r['cpu_ratio']:8.2f}  {r['mode']}"
                      f"{'' if r['passed'] else '  FAIL'}")  # fmt: skip
    if ratios:
        print(f"wall/estimated: median {statistics.median(ratios):.2f}, "
              f"min {min(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} cases")


if __name__ == "__main__":
    main()
