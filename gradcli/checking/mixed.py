"""The tensors of a forward computing in float32 somewhere whose differences carry none of its
round-off: AMP's `(x32 @ W32).astype(float64) + b` rounds x's and W's paths in float32, while
b reaches the output through float64 alone, its loss linear in b, exact at any step. Held to
the float32 allowance for the whole layer (atol 1e-4, rtol 1e-3, float32 steps), db
sign-flipped at an element of 4e-5 passed 'within noise' (outside test t26 F4). Such a tensor
is differenced at float64's steps and held to float64's tolerances; one that float32 rounds on
any of its paths keeps the allowance."""

from __future__ import annotations

import numpy as np

from gradcli.checking.prepared import CheckOptions
from gradcli.inputs.spec import Spec
from gradcli.numeric.engine import NOISE_OFFSETS, Engine
from gradcli.numeric.methods import EPS, offgrid_noise, steps
from gradcli.numeric.stacking import sees_below_float32

LINES = 16  # coordinates of each tensor whose lines are read at float64 steps, at most
# what a cubic leaves of the loss along a line read at float64 steps, against float64's own
# rounding of the outputs the line moves (eps * sum |g * y|): float64 work leaves a few of
# it, a path through float32 some 2^29 (float32's rounding, at float64 steps: x32 @ W32 moves
# in jumps of its last bit); 2^12 lies far from both
FLOAT64_LINES = 2.0**12


def float64_paths(
    spec: Spec, opts: CheckOptions, engine: Engine, max_memory: int
) -> tuple[Engine | None, tuple[str, ...], int, float]:
    """(an engine differencing at float64's steps, the tensors it differences, the lines read
    of each, the predicted seconds of reading them) for ``engine``'s layer, which computes in
    float32 (Engine.unit): a tensor qualifies where the output moves when it moves below
    float32's resolution (stacking.sees_below_float32: x's and W's paths in AMP do not) and
    the loss along up to LINES of its coordinates, read at 16 moves of 1/2 to 8.25 float64
    steps (NOISE_OFFSETS), is smooth to FLOAT64_LINES of float64's rounding (a residual x +
    f32(x) moves below float32's resolution, and its lines jump by float32's last bits). Not
    under the complex step (a cast to float32 drops the imaginary part), nor for a forward
    returning float32 (every path ends in float32's rounding)."""
    if opts.method == "complex" or engine.unit <= EPS:
        return None, (), 0, 0.0
    layer, t64 = spec.layer, engine.t64
    out = np.asarray(layer.forward(t64, spec.options)[0])
    candidates = sees_below_float32(layer, t64, spec.options, out)
    if not candidates:
        return None, (), 0, 0.0
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    e64 = Engine(layer, spec.tensors, spec.options, spec.grad_output, method=opts.method,
                 eps=opts.eps, max_memory=max_memory, unit=EPS)  # fmt: skip
    rng = np.random.default_rng(spec.seed)
    clean: list[str] = []
    seconds, read = 0.0, 0
    for name in [n for n in t64 if n in candidates]:
        x = t64[name].ravel()
        finite = np.flatnonzero(np.isfinite(x))
        if not finite.size:
            continue
        idx = np.sort(rng.choice(finite, size=min(LINES, finite.size), replace=False))
        # across 8 of the lower precision's cells at the least: float64's step lies within
        # one of float16's, whose path then reads flat and smooth (tanh(x16) + x: x was given
        # float64 steps, and a backward dropping the branch passed, outside test t29a F1)
        h = np.maximum(steps(x[idx], e64.eps), steps(x[idx], 8 * engine.unit))
        seconds += kinks.moves_seconds(e64, name, idx, opts.coloring, len(NOISE_OFFSETS))
        D, scale = kinks.moves(e64, name, idx, h, NOISE_OFFSETS, opts.coloring)
        # a line that never moves over 8 steps says nothing (a dead relu's input)
        moving = np.any(D != 0, axis=0) & (scale > 0) & np.all(np.isfinite(D), axis=0)
        if not moving.any():
            continue
        sigma = offgrid_noise(np.array(NOISE_OFFSETS), D[:, moving])
        if np.all(sigma <= FLOAT64_LINES * EPS * scale[moving]):
            clean.append(name)
            read = max(read, idx.size)
    return (e64 if clean else None), tuple(clean), read, seconds
