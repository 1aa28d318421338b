"""How far --max-memory's need is from a check's peak: the need decides refusal, so a need far
above the peak refuses checks that fit, and one below it breaks the bound's promise.

    python benchmarks/memory.py                          # conv1d and conv2d shapes, central
    python benchmarks/memory.py --methods central,forward,complex

For each case: the need (numeric/memory.py: the fixed arrays and one perturbed forward pass,
from the shapes), and tracemalloc's peak over the whole check run at that budget (1 MB at the
least, the smallest --max-memory), plus the spec's arrays, made before it. The ratio is need /
peak: below 1 the bound promised less than the check held.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gradcli.checking.check import CheckOptions, check  # noqa: E402
from gradcli.inputs.spec import build_spec  # noqa: E402
from gradcli.layers import get_layer  # noqa: E402
from gradcli.numeric import memory  # noqa: E402

CASES = [
    ("conv2d", {"X": (64, 64, 16), "W": (3, 3, 16, 32)}, {}),
    ("conv2d", {"X": (8, 32, 32, 8), "W": (3, 3, 8, 16)}, {"stride": 2, "padding": 1}),
    ("conv2d", {"X": (4, 32, 32, 8), "W": (3, 3, 8, 16)}, {"padding": 1}),
    ("conv2d", {"X": (4, 32, 32, 8), "W": (3, 3, 8, 16)}, {"dilation": 2}),
    ("conv2d", {"X": (4, 32, 32, 8), "W": (5, 5, 8, 8)}, {"stride": 3, "padding": 2}),
    ("conv2d", {"X": (2, 64, 64, 16), "W": (3, 3, 16, 16)}, {"padding": 1}),
    ("conv2d", {"X": (64, 64, 16), "W": (1, 1, 16, 64)}, {}),
    ("conv2d", {"X": (40, 40, 2), "W": (20, 20, 2, 2)}, {}),
    ("conv2d", {"X": (16, 16, 64), "W": (3, 3, 64, 64)}, {"padding": 1}),
    ("conv1d", {"x": (16, 2000, 8), "w": (5, 8, 8)}, {"stride": 2, "padding": 2}),
    ("conv1d", {"x": (8, 3000, 4), "w": (9, 4, 16)}, {"dilation": 3, "padding": "same"}),
    ("conv1d", {"x": (30, 4096), "w": (64,)}, {}),
    ("conv1d", {"x": (2, 5000), "w": (7,)}, {"stride": 2}),
]


def one(layer: str, shapes: dict, options: dict, method: str) -> tuple[float, float]:
    """(need, peak) in MB."""
    doc = {"tensors": {n: {"shape": list(s)} for n, s in shapes.items()}, "options": options}
    spec = build_spec(get_layer(layer), doc, base=Path("."), source="<bench>",
                      max_elements=10**12)  # fmt: skip
    need = memory.fixed_bytes(spec, method) + memory.copy_bytes(spec, method)
    held = sum(a.nbytes for a in spec.tensors.values()) + spec.grad_output.nbytes
    tracemalloc.start()
    try:
        check(spec, CheckOptions(max_memory=max(need, 2**20), method=method, budget=1e9))
        peak = tracemalloc.get_traced_memory()[1] + held
    finally:
        tracemalloc.stop()
    return need / 2**20, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="central")
    args = ap.parse_args()
    print(f"{'case':72} {'method':>8} {'need MB':>8} {'peak MB':>8} {'need/peak':>9}")
    for method in args.methods.split(","):
        for layer, shapes, options in CASES:
            need, peak = one(layer, shapes, options, method)
            label = f"{layer} {shapes} {options or ''}"
            print(f"{label:72} {method:>8} {need:8.1f} {peak:8.1f} {need / peak:9.2f}")


if __name__ == "__main__":
    main()
