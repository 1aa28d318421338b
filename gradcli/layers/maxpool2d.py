"""2-D max pooling (torch.nn.MaxPool2d), channel-last.

Shapes: X (..., H, W, C), Z (..., Ho, Wo, C), Ho = floor((H + 2p - k) / s) + 1; ``...`` are batch
axes. The padding is -inf, as in torch: it never wins a window. A tie goes to the first
maximal element of the window in row-major order (torch's choice too), and a NaN wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.layers import _conv, _pool
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo
from gradcli.layers.cs231n import NCHW, Form, out

Options = _pool.Options


# Z[i, j, c] = max_{m, n} Xp[i*s_h + m, j*s_w + n, c]      (Xp: X padded with -inf)
def forward(
    t: Arrays, options: Any = None, fill: float = -np.inf
) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., H, W, C) -> Z (..., Ho, Wo, C); ``fill``: the padding's value (-inf: never a
    window's maximum; 0 only for the diagnosis of a padding of zeros)."""
    X = t["X"]
    geo = _pool.geometry(X.shape, options or Options())
    Xp = _conv.pad(X, geo, fill)
    Z = arg = None
    for tap, window in _pool.taps(geo):
        v = Xp[window]
        if Z is None:
            Z, arg = v.copy(), np.zeros(v.shape, np.intp)
            continue
        # on the real part: a complex-step perturbation rides along without moving the argmax
        wins = (v.real > Z.real) | np.isnan(v.real)
        np.copyto(Z, v, where=wins)
        np.copyto(arg, tap, where=wins)
    return Z, {"arg": arg, "geo": geo, "X_shape": X.shape}


# dX[i*s_h + m, j*s_w + n, c] += dZ[i, j, c]   for the (m, n) that won window (i, j)
def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., Ho, Wo, C) -> {"X": (..., H, W, C)}."""
    arg, geo = cache["arg"], cache["geo"]
    shape = cache["X_shape"][:-3] + tuple(g.n + g.lo + g.hi for g in geo) + dZ.shape[-1:]
    dXp = np.zeros(shape, dZ.dtype)
    for tap, window in _pool.taps(geo):
        dXp[window] += np.where(arg == tap, dZ, 0)
    return {"X": np.ascontiguousarray(_pool.unpad(dXp, geo))}


def variants(t: Arrays, options: Any, dZ: np.ndarray) -> dict[str, tuple[str, dict]]:
    """The argmax's mask left out, for the diagnosis: every element of a window given the
    window's gradient, or an equal share of it (an average pool's backward); or the argmin
    taken for the argmax."""
    X = np.asarray(t["X"])
    geo = _pool.geometry(X.shape, options or Options())
    shape = X.shape[:-3] + tuple(g.n + g.lo + g.hi for g in geo) + dZ.shape[-1:]
    dXp = np.zeros(shape)
    for _, window in _pool.taps(geo):
        dXp[window] += dZ
    spread, k = _pool.unpad(dXp, geo), geo[0].k * geo[1].k
    # the argmax's code with argmin in its place: the argmax of -X (its padding, -inf, never
    # the smallest), the first smallest element of each window
    routed = backward(np.asarray(dZ), forward({"X": -np.real(X)}, options)[1])["X"]
    Z, cache = forward({"X": np.real(X)}, options)  # the right routing's, read by the slips
    # padded with zeros, which win the border windows of negative values: their gradient
    # goes to the padding and is lost (outside test t34a F5 was sent to 'a statement that
    # writes those elements alone')
    zeros = {}
    gh, gw = geo
    if (gh.s, gw.s) != (gh.k, gw.k):
        # the reshape trick of non-overlapping pools (CS231n's fast max pool): Z and dZ
        # repeated by the window, each input routed to window p // size and kept where it
        # equals that window's maximum; right only when the windows step by their size
        # (outside test t54a F6: size 3, stride 2, a failure with no hint)
        r, c = (np.arange(gh.n) + gh.lo) // gh.k, (np.arange(gw.n) + gw.lo) // gw.k
        inside = ((r < gh.out)[:, None] & (c < gw.out)[None, :])[..., None]
        r, c = np.minimum(r, gh.out - 1)[:, None], np.minimum(c, gw.out - 1)[None, :]
        hit = np.real(X) == Z[..., r, c, :]
        text = (f"with Z and dZ repeated by the window (np.repeat, the reshape trick): each "
                f"input routed to window p // {gh.k if gh.k == gw.k else (gh.k, gw.k)}, which "
                f"holds only where the windows step by their size; at stride "
                f"{gh.s if gh.s == gw.s else (gh.s, gw.s)} an input belongs to the windows "
                f"that read it, and each window's gradient goes to its own argmax")
        repeated = np.where(hit, np.asarray(dZ)[..., r, c, :], 0.0)
        zeros["maxpool:repeat"] = (text, {"X": np.where(inside, repeated, 0.0)})
        # ... the rows past the last window cut, or clamped to it (np.minimum of the index:
        # a stride past the window, outside test t57a F9)
        if not inside.all():
            zeros["maxpool:repeat:clamped"] = (text, {"X": repeated})
    if any(g.lo or g.hi for g in geo):
        zeros["maxpool:zero-padding"] = (
            "with X padded with 0, not -inf: a border window whose elements are all negative "
            "gives its gradient to the padding, and it is lost",
            {"X": backward(np.asarray(dZ), forward({"X": np.real(X)}, options, 0.0)[1])["X"]})
    if _pool_overlaps(geo):
        # `=` where `+=` belongs, windows in row-major order: an element two windows picked
        # keeps the later one's gradient (outside test t60a F1: no hint, where an unverified
        # 'where windows overlap' went to a misrouting that adds right)
        zeros["maxpool:overwrite"] = (
            "with = where += belongs: an element that several windows pick as their maximum "
            "keeps only the last window's gradient (row-major order), not their sum",
            {"X": _overwritten(np.asarray(dZ), cache)})
    if gh.k == gw.k:
        # the winner's row and column within its window swapped (unravel_index's results, or
        # a mask's axes, mixed up): right on the diagonal alone (outside test t60a F1)
        zeros["maxpool:transposed"] = (
            "with each window's gradient routed to the element at its maximum's column and "
            "row swapped (m and n mixed up, as in an unravel_index's pair or a mask's axes)",
            {"X": backward(np.asarray(dZ), {**cache, "arg": (cache["arg"] % gw.k) * gw.k
                                                  + cache["arg"] // gw.k})["X"]})  # fmt: skip
    return {**zeros,
        "maxpool:argmin": ("with each window's gradient routed to its smallest element, not "
                           "its largest (argmin where argmax belongs)",
                           {"X": routed}),
        "maxpool:no-argmax": ("with every element of a window given the window's gradient, "
                              "not its maximum alone (the argmax's mask left out)",
                              {"X": spread}),
        "maxpool:no-argmax-averaged": (f"with every element of a window given dZ / {k}, an "
                                       "average pool's backward, not the maximum dZ alone "
                                       "(the argmax's mask left out)", {"X": spread / k}),
    }  # fmt: skip


def _pool_overlaps(geo: list[_conv.Axis]) -> bool:
    return any(g.s < g.k and g.out > 1 for g in geo)


def _overwritten(dZ: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """The backward with `=` in place of `+=`, windows in row-major order (a loop over i, j):
    an element picked by several windows holds the last one's gradient."""
    arg, geo = cache["arg"], cache["geo"]
    gh, gw = geo
    lead = cache["X_shape"][:-3]
    C = dZ.shape[-1]
    flat_arg = arg.reshape(-1, gh.out, gw.out, C)
    flat_dZ = dZ.reshape(-1, gh.out, gw.out, C)
    B = flat_arg.shape[0]
    dXp = np.zeros((B, gh.n + gh.lo + gh.hi, gw.n + gw.lo + gw.hi, C), dZ.dtype)
    b, c = np.arange(B)[:, None], np.arange(C)[None, :]
    for i in range(gh.out):
        for j in range(gw.out):
            a = flat_arg[:, i, j, :]
            dXp[b, i * gh.s + a // gw.k, j * gw.s + a % gw.k, c] = flat_dZ[:, i, j, :]
    return np.ascontiguousarray(_pool.unpad(dXp.reshape(lead + dXp.shape[1:]), geo))


def kinks(name: str, t: Arrays, options: Any, step: np.ndarray,
          start: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
    """True where moving X's coordinate through (x, x + step] (or (x + start, x + step], or
    sitting at x, step 0) switches a window's argmax: it meets the largest other element of a
    window holding it (an exact tie is a kink)."""
    X = np.asarray(t["X"], np.float64)
    geo = _pool.geometry(X.shape, options or Options())
    Xp, S = _conv.pad(X, geo, -np.inf), _conv.pad(np.asarray(step, np.float64), geo)
    A = _conv.pad(np.zeros(X.shape) if start is None else np.asarray(start, np.float64), geo)
    top = second = arg = None
    for tap, window in _pool.taps(geo):
        v = Xp[window]
        if top is None:
            top, second, arg = v.copy(), np.full(v.shape, -np.inf), np.zeros(v.shape, np.intp)
            continue
        wins = v > top
        second = np.where(wins, top, np.maximum(second, v))
        np.copyto(arg, tap, where=wins)
        top = np.where(wins, v, top)
    hit = np.zeros(Xp.shape, bool)
    for tap, window in _pool.taps(geo):
        other = np.where(arg == tap, second, top)  # the window's largest element but this one
        x, h, x0 = Xp[window], S[window], Xp[window] + A[window]
        up = (h > 0) & (x0 < other) & (other <= x + h)
        down = (h < 0) & (x + h <= other) & (other < x0)
        hit[window] |= up | down | ((h == 0) & (other == x))
    return np.ascontiguousarray(_pool.unpad(hit, geo))


def maxima(name: str, s: Shapes, options: Any = None) -> np.ndarray:
    """Z's flat element o is the maximum of X's flat elements in row o (-1: padding)."""
    return _pool.members(s["X"], options or Options())


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    return _pool.output_shape("maxpool2d", s, options or Options())


def working_elements(s: Shapes, options: Any = None) -> int:
    return _pool.working(s, options or Options())


# per tap and output: the comparison, the NaN test, their union and two masked copies on
# strided grids: measured 11-25 ns per tap and output (load 5), relu 4 ns per element
PER_TAP = 12


def forward_elements(s: Shapes, options: Any = None) -> int:
    return _pool.touched(s, options or Options(), PER_TAP)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    return _pool.footprint(name, s, options or Options())


def explain(v: Any) -> Any:
    return _pool.words(
        v, "max",
        ["∂L/∂X[i*s+m*, j*s+n*, c] += ∂L/∂Z[i,j,c] for the window's winner (m*, n*)",
         "every other element of the window gets nothing from it; a tie goes to the first "
         "maximum in row-major order"],
        "the maximum is a switch: the winner passes the gradient through, the rest are cut off "
        "(a finite difference whose step makes another element win crosses a kink)",
    )  # fmt: skip


SKELETON = """
def forward(X, size=2, stride=None, padding=0):
    # Z[i, j, c] = max over the window (m, n) of X[i*stride + m, j*stride + n, c]
    # stride None means stride = size; padding adds -inf around X (it never wins)
    # X ([N,] H, W, C) -> Z ([N,] Ho, Wo, C),  Ho = (H + 2*padding - size) // stride + 1
    # (the leading batch axes optional: the default spec has none)
    raise NotImplementedError


def backward(grad_output, X, size=2, stride=None, padding=0):
    # each window sends dZ[i, j, c] to its maximum only (the first one when several tie);
    # an element that wins several windows collects all of their gradients
    dZ = grad_output
    raise NotImplementedError
    return {"X": ...}
"""


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """The window's size (Layer.factors): a maximum's gradient shared out over its window as an
    average pool's is 1/(k_h k_w) of the right one, which at a batch of k_h k_w was read as a
    mean over the batch, which a max-pool has none of (outside test t44a F1)."""
    size = (options or Options()).size
    kh, kw = (size, size) if isinstance(size, int) else size
    if kh * kw < 2:
        return []
    found = [(1.0 / (kh * kw), "scale:1/window", f"divided by {kh * kw}, the window's size "
              f"{kh}x{kw}, as an average pool's gradient is")]  # fmt: skip
    # and by one side of it (`/ size`): at a batch of 2 a 2x2 pool's was read as a mean over
    # the batch, and at a batch of 3 a 3x3 one's too (outside test t59b F2)
    for side in sorted({kh, kw} - {1, kh * kw}):
        found.append((1.0 / side, f"scale:1/{side}", f"divided by {side}, one side of the "
                      f"window {kh}x{kw} (the size option), which a max's gradient has none "
                      "of"))  # fmt: skip
    return found


LAYER = Layer(
    name="maxpool2d",
    summary="Z[i,j,c] = max_{m,n} X[i*s+m, j*s+n, c]",
    tensors=_pool.TENSORS,
    output=TensorInfo("Z", ("Ho", "Wo", "C"), ("i", "j", "c"), "output", "window maxima"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (4, 8, 3)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    forward_elements=forward_elements,
    kinks=kinks,
    maxima=maxima,
    variants=variants,
    factors=factors,
    explain=explain,
    skeleton=SKELETON,
    cs231n=(
        Form("max_pool_forward_naive", "max_pool_backward_naive", {"X": NCHW}, out(NCHW),
             _pool.pool_param("max_pool_forward_naive"),
             layout="X as (N, C, H, W), pool_param {pool_height, pool_width, stride}"),
    ),  # fmt: skip
)
