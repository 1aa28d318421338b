"""Incremental evaluation: the loss at moved coordinates through a layer's own shortcut.

Where coloring cannot help (attention's dense tensors), a layer may evaluate the loss at a moved
coordinate recomputing only what that coordinate moves (``Layer.perturbed``). The engine trusts
that path only once it agrees with the plain forward on a few random coordinates, and drops it
(with a note) when it disagrees.
"""

from __future__ import annotations

import numpy as np

from gradcli.numeric.methods import steps
from gradcli.numeric.stacking import StackedForward

INCREMENTAL_CHUNK = 2048  # coordinates per call of Layer.perturbed (it chunks further itself)
VERIFY_PICKS = 3  # coordinates the path is verified on: as many copies through each way


def verify_incremental(engine: StackedForward, name: str, rng: np.random.Generator) -> str | None:
    """The verdict on ``name``'s incremental path: "" when the layer's ``perturbed`` agrees with
    ``forward`` on a few random coordinates, a note saying why it is not used when it
    disagrees, None when there is no such path."""
    layer = engine.layer
    if layer.perturbed is None:
        return None
    x = engine.t64[name].ravel()
    shape = engine.t64[name].shape
    picks = rng.choice(x.size, size=min(VERIFY_PICKS, x.size), replace=False)
    # in the arithmetic the path will serve: a complex step is verified with a complex move of
    # its own size, so a forward that drops the imaginary part is refused here as it would be
    # without the path, and a path whose formulas cancel terms beside the step's tiny
    # imaginary parts is told (attention's cached softmax sums, less the entry moved: dX of
    # 201.81 read 201.809999 at inputs of 100, outside test t36a F1)
    values = x[picks] + 1e-2 * np.maximum(1.0, np.abs(x[picks]))
    h = steps(x[picks], engine.eps)
    if engine.method.name == "complex":
        values = values + 1j * h
    fast = layer.perturbed(name, engine.cache, engine.g, picks, values)
    if fast is None:
        return None
    rows = np.repeat(x[None, :].astype(np.result_type(x, values)), len(picks), axis=0)
    rows[np.arange(len(picks)), picks] = values
    y = engine.forward_stack(name, rows.reshape((len(rows),) + shape))
    plain = y.reshape(len(picks), -1) @ engine.g.ravel()
    # both are sums over the outputs, rounded differently: a few eps of sum |g * y| apart
    # at most; a wrong path is off by ~1e-2 * |dL/dx|
    tol = 1e-10 * float(np.sum(np.abs(engine.g * y[0]))) + 1e-300
    bad = np.abs(np.asarray(fast).real - plain.real) > tol
    if engine.method.name == "complex":  # its reading, to 1e-9 of it
        read, want = np.asarray(fast).imag / h, plain.imag / h
        scale = float(np.max(np.abs(want), initial=0.0))
        with np.errstate(invalid="ignore"):
            bad |= ~(np.abs(read - want) <= 1e-9 * np.maximum(np.abs(want), 1e-3 * scale)
                     + 1e-300)  # fmt: skip
    if np.all(np.isfinite(fast)) and not bad.any():
        return ""
    j = int(picks[int(np.argmax(bad))]) if bad.any() else int(picks[0])
    t = list(map(int, np.unravel_index(j, shape)))
    return (
        f"the incremental evaluation of {name} disagrees with the forward at {name}{t}; "
        "used full forward passes"
    )


def loss_differences(
    engine: StackedForward, name: str, idx: np.ndarray, h: np.ndarray
) -> np.ndarray:
    """The stencil applied to the loss, one coordinate idx[i] per copy (C,), through the
    layer's incremental path."""
    x = engine.t64[name].ravel()
    m = engine.method
    step = (lambda s: s * 1j * h[idx]) if m.name == "complex" else (lambda s: s * h[idx])
    at = {
        s: engine.layer.perturbed(name, engine.cache, engine.g, idx, x[idx] + step(s))
        for s in m.offsets
    }
    return m.apply(at)
