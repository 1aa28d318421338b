"""Whole networks: gradcli's full check of every parameter coordinate against
torch.autograd.gradcheck on the same loss, side by side in one run (issue 15).

    python benchmarks/network.py            # both models; torch's time estimated from a subset
    python benchmarks/network.py --quick    # smaller models, for a smoke run

gradcli: ``check net`` with a budget large enough that every layer's local check is full (every
coordinate of every parameter and of every layer's input), plus its end-to-end check, run in a
child process so its peak memory (ru_maxrss) is its own. torch: gradcheck of the same loss in
float64 with respect to every parameter; it perturbs one coordinate at a time and runs the whole
network twice per coordinate, so where it would run for hours it is timed on one parameter
tensor and scaled by the coordinate count (the per-coordinate cost is the same for every
tensor: two full forward passes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

CONV = {  # CS231n's ThreeLayerConvNet, channel-last
    "seed": 0,
    "inputs": {"X": {"shape": [8, 32, 32, 3]}, "y": {"shape": [8], "init": "labels",
                                                    "classes": 10}},
    "network": [
        {"layer": "conv2d", "name": "conv1", "tensors": {"W": {"shape": [7, 7, 3, 32]}},
         "options": {"padding": 3}},
        {"layer": "relu"},
        {"layer": "maxpool2d", "name": "pool1", "options": {"size": 2}},
        {"layer": "flatten"},
        {"layer": "linear", "name": "fc1", "tensors": {"W": {"shape": [100, 8192]}}},
        {"layer": "relu"},
        {"layer": "linear", "name": "fc2", "tensors": {"W": {"shape": [10, 100]}}},
    ],
    "loss": {"layer": "softmax_cross_entropy", "target": "y"},
}  # fmt: skip

FC = {  # CS231n's FullyConnectedNet with batchnorm and dropout: 3072 -> 100 -> 100 -> 10
    "seed": 0,
    "inputs": {"X": {"shape": [16, 3072]}, "y": {"shape": [16], "init": "labels",
                                                 "classes": 10}},
    "network": [
        {"layer": "linear", "name": "fc1", "tensors": {"W": {"shape": [100, 3072]}}},
        {"layer": "batchnorm", "name": "bn1"},
        {"layer": "relu"},
        {"layer": "dropout", "name": "drop1", "options": {"p": 0.5, "seed": 1}},
        {"layer": "linear", "name": "fc2", "tensors": {"W": {"shape": [100, 100]}}},
        {"layer": "batchnorm", "name": "bn2"},
        {"layer": "relu"},
        {"layer": "dropout", "name": "drop2", "options": {"p": 0.5, "seed": 2}},
        {"layer": "linear", "name": "fc3", "tensors": {"W": {"shape": [10, 100]}}},
    ],
    "loss": {"layer": "softmax_cross_entropy", "target": "y"},
}  # fmt: skip


def quick(model: dict[str, Any]) -> dict[str, Any]:
    """A smaller copy: the batch and the widest layers cut down."""
    text = json.dumps(model)
    for a, b in (("[8, 32, 32, 3]", "[2, 8, 8, 3]"), ("[100, 8192]", "[100, 512]"),
                 ("[16, 3072]", "[8, 64]"), ("[100, 3072]", "[100, 64]"), ('"shape": [8]',
                 '"shape": [2]'), ('"shape": [16]', '"shape": [8]')):  # fmt: skip
        text = text.replace(a, b)
    return json.loads(text)


GRADCLI_CHILD = """
import json, os, resource, sys, time
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # as the command line runs (gradcli/__main__.py)
sys.path.insert(0, {root!r})
from gradcli.checking.check import CheckOptions
from gradcli.checking.network import check_network
from gradcli.inputs.network import load_network
def peak_mb():
    # VmHWM starts afresh at exec; ru_maxrss does not on Linux: it kept the forked parent's
    # (torch's, after the first model: 3.8 GB reported for an 85 MB check)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
net = load_network({path!r})
# every local check full (a budget no layer exceeds); the end to end within the default's share
r = check_network(net, CheckOptions(budget=1e9), e2e_budget=60.0)
seconds = time.perf_counter() - t
coords = sum(int(res.checked) for lc in r.layers for res in lc.report.results.values())
params = sum(v.size for k, v in net.spec.tensors.items() if k != net.net.input)
full = all(res.mode == "full" for lc in r.layers for res in lc.report.results.values())
print(json.dumps({{"seconds": seconds, "passed": r.passed, "local_coords": coords,
                  "params": int(params), "full": full, "e2e_mode": r.end_to_end.mode,
                  "rss_mb": peak_mb()}}))
"""


def run_gradcli(model: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.yaml"
        path.write_text(yaml.safe_dump(model))
        code = GRADCLI_CHILD.format(root=str(ROOT), path=str(path))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])


def torch_loss(model: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    """The same loss in torch (float64) on the same arrays: (loss(*params), params, x)."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812 (torch's own spelling)

    from gradcli.inputs.network import build_network

    net = build_network(model, base=ROOT, source="<benchmark>")
    t = {n: torch.tensor(np.asarray(a)) for n, a in net.spec.tensors.items()}
    y = torch.tensor(np.asarray(next(iter(net.net.fixed.values()))).astype(np.int64))
    names = [n for n in t if n != net.net.input]
    nodes = net.nodes

    def loss(*params: Any) -> Any:
        p = dict(zip(names, params, strict=True))
        a = t[net.net.input]
        for node in nodes:
            kind, opts = node.layer.name, node.options
            if kind == "conv2d":
                w = p[f"{node.name}.W"].permute(3, 2, 0, 1)
                pad = model["network"][0]["options"]["padding"]
                a = F.conv2d(a.permute(0, 3, 1, 2), w, p[f"{node.name}.b"], padding=pad)
                a = a.permute(0, 2, 3, 1)
            elif kind == "relu":
                a = torch.relu(a)
            elif kind == "maxpool2d":
                a = F.max_pool2d(a.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
            elif kind == "flatten":
                a = a.reshape(a.shape[0], -1)
            elif kind == "linear":
                a = a @ p[f"{node.name}.W"].T + p[f"{node.name}.b"]
            elif kind == "batchnorm":
                a = F.batch_norm(a, None, None, p[f"{node.name}.gamma"], p[f"{node.name}.beta"],
                                 training=True, eps=opts.eps)  # fmt: skip
            elif kind == "dropout":
                from gradcli.layers.dropout import scaled_mask

                a = a * torch.tensor(scaled_mask(tuple(a.shape), opts))
            elif kind == "softmax_cross_entropy":
                a = F.cross_entropy(a, y)
            else:
                raise SystemExit(f"no torch twin for {kind}")
        return a

    params = [t[n].clone().requires_grad_(True) for n in names]
    return loss, params, names


def run_torch(model: dict[str, Any], max_seconds: float) -> dict[str, Any]:
    import torch

    # one thread: on this shared 2-core machine torch's gradcheck ran 65 ms per coordinate of
    # the ThreeLayerConvNet with one, 80 ms with two (its default); torch gets its faster one
    torch.set_num_threads(1)
    loss, params, names = torch_loss(model)
    total = sum(p.numel() for p in params)
    # a subset: the smallest parameter tensors first, until about max_seconds are spent
    order = sorted(range(len(params)), key=lambda i: params[i].numel())
    done, spent = 0, 0.0
    for i in order:
        fixed = [p.detach() for p in params]

        def f(q: Any, i: int = i, fixed: list = fixed) -> Any:
            return loss(*fixed[:i], q, *fixed[i + 1:])

        t = time.perf_counter()
        ok = torch.autograd.gradcheck(f, (params[i],), eps=1e-6, atol=1e-5, rtol=1e-3)
        spent += time.perf_counter() - t
        done += params[i].numel()
        if not ok or spent > max_seconds:
            break
    estimated = spent / done * total
    return {"coords": total, "timed_coords": done, "timed_seconds": spent,
            "seconds": estimated, "estimated": done < total}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--torch-seconds", type=float, default=60.0,
                    help="time spent on torch's timed subset per model")  # fmt: skip
    args = ap.parse_args()
    rows = []
    for label, model in (("ThreeLayerConvNet", CONV), ("FullyConnectedNet+bn+dropout", FC)):
        model = quick(model) if args.quick else model
        g = run_gradcli(model)
        tr = run_torch(model, args.torch_seconds)
        speedup = tr["seconds"] / g["seconds"]
        rows.append((label, g, tr, speedup))
        print(f"{label}: {g['params']:,} parameters; gradcli {g['seconds']:.1f} s "
              f"({'all local checks full' if g['full'] else 'NOT full'}, end to end "
              f"{g['e2e_mode']}, peak {g['rss_mb']:.0f} MB, {'PASS' if g['passed'] else 'FAIL'}); "
              f"torch gradcheck {'~' if tr['estimated'] else ''}{tr['seconds']:.0f} s "
              f"(timed {tr['timed_coords']:,} of {tr['coords']:,} coordinates in "
              f"{tr['timed_seconds']:.1f} s); {speedup:,.0f}x", flush=True)  # fmt: skip
    print()
    print("| model | parameters | gradcli full check | peak memory | torch gradcheck | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, g, tr, speedup in rows:
        est = "~" if tr["estimated"] else ""
        print(f"| {label} | {g['params']:,} | {g['seconds']:.1f} s | {g['rss_mb']:.0f} MB | "
              f"{est}{_human(tr['seconds'])} | {speedup:,.0f}x |")


def _human(s: float) -> str:
    return f"{s / 3600:.1f} h" if s > 3 * 3600 else f"{s / 60:.1f} min" if s > 120 else f"{s:.0f} s"


if __name__ == "__main__":
    main()
