"""Side-by-side timings of gradcli and PyTorch, in one run (the machines are shared and noisy:
compare numbers from the same run only).

    python benchmarks/run.py                 # sizes S and M, plus L
    python benchmarks/run.py --sizes S,M --repeat 3 --json /tmp/bench.json

For every size and layer: (a) gradcli's full check of every coordinate, central and complex
step, timed in-process through the public API (``gradcli.check``), with its accuracy
(max |analytic - numeric| / max |analytic|) and peak memory, and the whole ``gradcli check``
process on the same tensors (start-up, file reading and rendering included);
(b) gradcli's analytical forward+backward; (c) when torch is installed, torch.autograd.gradcheck
(slow mode, float64) on the same scalar loss sum(G * out) and torch's forward+backward on the same
tensors. A gradcheck that would take longer than --torch-limit seconds (or cover more than
50,000 coordinates) is estimated instead, and marked '~': gradcheck timed on 256 random
coordinates, the rest of the tensors held fixed, times N / 256 (the JSON keeps that timing and
the lower bound 2 N x one torch forward too). gradcheck runs on one torch thread (faster here
under load). Prints medians and ratios; writes a JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cases import cases, make_tensors, torch_forward  # noqa: E402

import gradcli  # noqa: E402
from gradcli.checking.check import CheckOptions, check  # noqa: E402
from gradcli.cli.exits import tune_allocator  # noqa: E402
from gradcli.inputs.spec import Spec  # noqa: E402
from gradcli.layers import REGISTRY  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional: gradcli's own numbers still print
    torch = None


# torch.autograd.gradcheck on a batched conv2d of ~67k coordinates was killed by the kernel's
# OOM killer here (24 GB): above this many coordinates its time is estimated, not measured
MAX_GRADCHECK_COORDS = 50_000


def median_time(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_spec(layer: str, tensors: dict, g: np.ndarray, options: Any) -> Spec:
    return Spec(REGISTRY[layer], "float64", 0, options, tensors, g, "<bench>")


def gradcli_check(layer: str, tensors: dict, g: np.ndarray, raw: dict, method: str,
                  repeat: int) -> dict:  # fmt: skip
    """``gradcli.check`` in-process, as an engineer's test calls it."""
    result = {}

    def run():
        result["out"] = gradcli.check(
            layer, tensors, options=raw, grad_output=g, method=method, mode="full"
        )

    seconds = median_time(run, repeat, warmup=1)  # the first call imports the checker
    report = result["out"]
    comp, numeric = report.computation, report.numeric
    err = max(
        float(np.max(np.abs(comp.gradients[n] - numeric[n])))
        / (float(np.max(np.abs(comp.gradients[n]))) or 1.0)
        for n in numeric
    )
    return {"seconds": seconds, "max_error": err, "passed": report.passed}


def peak_memory_mb(spec: Spec) -> float:
    tracemalloc.start()
    check(spec, CheckOptions(mode="full"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def paired(ours, theirs, repeat: int) -> tuple[float, float]:
    """Medians of two functions, each timed in its own block (interleaving single calls makes
    torch's and OpenBLAS's spinning worker threads fight for the 2 cores); ours is timed before
    and after theirs and the lower median kept, so drift does not favour either side."""
    before = median_time(ours, repeat, warmup=3)
    other = median_time(theirs, repeat, warmup=3)
    after = median_time(ours, repeat, warmup=3)
    return min(before, after), other


def torch_numbers(layer: str, options: dict, tensors, g, repeat: int, limit: float, ours) -> dict:
    f = torch_forward(layer, options)
    # labels and indices (integers: torch refuses them a gradient) and targets are not
    # differentiated, by gradcli or here
    fixed = REGISTRY[layer].constants()
    tt = {n: torch.tensor(a, requires_grad=n not in fixed) for n, a in tensors.items()}
    gt = torch.tensor(g)

    def fwd_bwd():
        for v in tt.values():
            v.grad = None
        f(**tt).backward(gt)

    mine, theirs = paired(ours, fwd_bwd, max(repeat, 30))
    out = {"fwd_bwd": theirs, "paired_analytic_fwd_bwd": mine}
    with torch.no_grad():
        one_forward = median_time(lambda: f(**tt), max(repeat, 20), warmup=3)
    n = sum(v.numel() for v in tt.values() if v.requires_grad)
    # two forwards per coordinate: what gradcheck cannot go below (its own work per
    # coordinate is far more: ~1 ms here, against a few microseconds of a cheap forward)
    out["gradcheck_lower_bound"] = 2 * n * one_forward
    names = list(tt)

    def loss(*args):
        return (gt * f(**dict(zip(names, args, strict=True)))).sum()

    inputs = tuple(tt[n] for n in names)

    def gradcheck():
        return torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)

    threads = torch.get_num_threads()
    # one thread: on this shared machine torch's worker threads slowed each small op ~10x
    # under load, which would flatter gradcli
    torch.set_num_threads(1)
    try:
        subset, k = subset_gradcheck(f, tt, gt, min(n, SUBSET))
        estimate = max(subset * n / k, out["gradcheck_lower_bound"])
        out["gradcheck_subset"] = {"coordinates": k, "seconds": subset}
        if k < n and (estimate > limit or n > MAX_GRADCHECK_COORDS):  # memory grows with N
            out.update(gradcheck=estimate, gradcheck_estimated=True)
            return out
        out["gradcheck"] = median_time(gradcheck, min(repeat, 3), warmup=0)
    finally:
        torch.set_num_threads(threads)
    out["gradcheck_estimated"] = False
    return out


# coordinates a long gradcheck is timed on, for its estimate
SUBSET = 256


def subset_gradcheck(f, tt: dict, gt, k: int) -> tuple[float, int]:
    """torch.autograd.gradcheck timed on k random coordinates of the float tensors (spread in
    proportion to their sizes), the others held at their values: each of its perturbations
    still runs the whole forward, so its time per coordinate is the full run's (less any
    bookkeeping of gradcheck's that grows with its inputs' size, which only flatters torch).
    Returns (seconds, k)."""
    rng = np.random.default_rng(0)
    grads = [n for n, v in tt.items() if v.requires_grad]
    sizes = np.array([tt[n].numel() for n in grads])
    picks = np.sort(rng.choice(int(sizes.sum()), size=k, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    where = {n: torch.from_numpy(picks[(picks >= a) & (picks < b)] - a)
             for n, a, b in zip(grads, starts[:-1], starts[1:], strict=True)}  # fmt: skip
    leaves = {n: tt[n].detach().reshape(-1)[i].clone().requires_grad_(True)
              for n, i in where.items() if len(i)}  # fmt: skip

    def tensors(vals):
        full = dict(tt)
        for n, v in zip(leaves, vals, strict=True):
            flat = tt[n].detach().reshape(-1).clone()
            full[n] = flat.index_put((where[n],), v).reshape(tt[n].shape)
        return full

    def loss(*vals):
        return (gt * f(**tensors(vals))).sum()

    vals = tuple(leaves.values())
    seconds = median_time(
        lambda: torch.autograd.gradcheck(loss, vals, eps=1e-6, atol=1e-5, rtol=1e-3),
        1,
        warmup=1,  # the first call of gradcheck sets torch up
    )
    # putting the k values into whole tensors is this estimate's own work, not gradcheck's:
    # taken out, at two calls per coordinate
    with torch.no_grad():
        build = median_time(lambda: tensors(vals), 20, warmup=3)
    return max(seconds - 2 * k * build, 0.0), k


def cli_seconds(layer: str, tensors: dict, g: np.ndarray, raw: dict, repeat: int) -> float:
    """The whole ``gradcli check LAYER spec.yaml --mode full`` process on the same tensors."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "t.npz", **tensors, G__=g)
        spec = {"layer": layer, "options": raw, "grad_output": "t.npz:G__",
                "tensors": {n: f"t.npz:{n}" for n in tensors}}  # fmt: skip
        (Path(tmp) / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
        cmd = [sys.executable, "-m", "gradcli", "check", layer, "spec.yaml", "--mode", "full",
               "--format", "json"]  # fmt: skip

        # this checkout's gradcli, whether or not it is installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
            str(HERE.parent), os.environ.get("PYTHONPATH"))))}  # fmt: skip

        def run():
            out = subprocess.run(cmd, capture_output=True, cwd=tmp, env=env, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"gradcli check failed: {out.stderr.decode()[-300:]}")

        return median_time(run, repeat, warmup=1)


def help_seconds() -> float:
    cmd = [sys.executable, "-m", "gradcli", "--help"]
    return median_time(
        lambda: subprocess.run(cmd, capture_output=True, check=True, cwd=HERE.parent), 5
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="S,M,L,O", help="O: issue 4's option cases")
    ap.add_argument("--layers", default=",".join(REGISTRY))
    ap.add_argument("--repeat", type=int, default=5, help="runs per median (L: at most 3)")
    ap.add_argument("--torch-limit", type=float, default=30.0, help="seconds; else estimate")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    tune_allocator()  # as the gradcli command does at start-up

    rows = []
    header = (
        f"{'size':4} {'layer':22} {'coords':>7} {'central s':>9} {'complex s':>9} "
        f"{'gradcheck s':>11} {'x faster':>8} {'cli s':>6} {'ana ms':>7} {'torch ms':>8} "
        f"{'ratio':>5} {'peak MB':>7} {'err central':>11} {'err complex':>11}"
    )
    print(header, flush=True)
    for size in args.sizes.split(","):
        repeat = min(args.repeat, 3) if size == "L" else args.repeat
        for case, layer, shapes, raw in cases(size):
            if layer not in args.layers.split(","):
                continue
            lay = REGISTRY[layer]
            tensors = make_tensors(shapes)
            options = lay.resolve_options(lay.make_options(raw), shapes)
            out, _ = lay.forward(tensors, options)
            g = np.random.default_rng(1).standard_normal(out.shape)
            spec = make_spec(layer, tensors, g, options)
            n = sum(a.size for k, a in tensors.items() if k not in lay.constants())
            row = {"size": size, "layer": case, "options": raw, "coordinates": n}
            row["central"] = gradcli_check(layer, tensors, g, raw, "central", repeat)
            row["complex"] = gradcli_check(layer, tensors, g, raw, "complex", repeat)
            row["cli_seconds"] = cli_seconds(layer, tensors, g, raw, min(repeat, 3))

            def ours(lay=lay, t=tensors, g=g, o=options):
                return lay.backward(g, lay.forward(t, o)[1])

            row["analytic_fwd_bwd"] = median_time(ours, max(repeat, 20), warmup=3)
            row["peak_mb"] = None if args.no_memory else peak_memory_mb(spec)
            if torch is not None:
                row["torch"] = torch_numbers(layer, raw, tensors, g, repeat, args.torch_limit, ours)
                row["analytic_fwd_bwd"] = row["torch"]["paired_analytic_fwd_bwd"]
            rows.append(row)
            print(format_row(row), flush=True)
    record = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "torch": getattr(torch, "__version__", None), "cpu": platform.processor()},
        "help_seconds": help_seconds(),
        "rows": rows,
    }  # fmt: skip
    print(f"gradcli --help: {record['help_seconds']:.3f} s")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def format_row(r: dict) -> str:
    t = r.get("torch") or {}
    gc = t.get("gradcheck")
    gc_s = "-" if gc is None else ("~" if t.get("gradcheck_estimated") else "") + f"{gc:.2f}"
    faster = "-" if gc is None else f"{gc / r['central']['seconds']:.1f}"
    tfb = t.get("fwd_bwd")
    ratio = "-" if tfb is None else f"{r['analytic_fwd_bwd'] / tfb:.2f}"
    peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
    return (
        f"{r['size']:4} {r['layer']:22} {r['coordinates']:>7} {r['central']['seconds']:>9.3f} "
        f"{r['complex']['seconds']:>9.3f} {gc_s:>11} {faster:>8} {r['cli_seconds']:>6.2f} "
        f"{r['analytic_fwd_bwd'] * 1e3:>7.2f} {'-' if tfb is None else f'{tfb * 1e3:.2f}':>8} "
        f"{ratio:>5} {peak:>7} {r['central']['max_error']:>11.1e} "
        f"{r['complex']['max_error']:>11.1e}"
    )


if __name__ == "__main__":
    main()
