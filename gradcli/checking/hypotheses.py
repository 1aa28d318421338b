"""Why a gradient is wrong, verified: a hint names a cause only when a wrong backward built from
that cause reproduces the values under test to round-off.

The right gradient comes from the built-in layer's backward (for ``--grads`` answers, and for an
``--impl`` whose forward agrees with ours). The candidates are wrong backward passes, each a
mechanism rather than a case:

- the right backward fed a structured upstream gradient: one output index alone along an axis
  (``db = dz[0]``), or one left out (a loop one short);
- the right backward with an option at its default (stride, dilation, padding, causal, heads
  ignored by the backward), the upstream gradient fitted to that output's shape;
- the right backward with a tensor transposed or its kernel flipped (``W`` for ``W^T``, a
  convolution where the layer correlates), or a square tensor transposed in the backward alone
  (checking/mechanisms.py: rnn_step's ``dprev_h = da @ Wh``);
- the layer's own named variants (``Layer.variants``: attention's softmax Jacobian without its
  rowsum term, a path of dX left out; conv's ``=`` where ``+=`` belongs ...);
- the right gradient itself transposed, flipped, shifted by one, or times a constant the layer
  names (checking/factors.py: 1/batch, a mean over the output positions or over the axes a loss
  reduces, an option's value, a one-number grad_output left out, 2, -1), and any candidate
  times such a constant (a cheap pair).

A cause that explains more of the failing tensors wins over one that explains fewer (the same
bug shows in dX, dW_Q and dW_K); causes that reproduce the values equally are all named.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcli.checking import factors as _factors
from gradcli.checking import localize, mechanisms
from gradcli.checking.hint import Hint
from gradcli.layers import REGISTRY, Layer, cs231n
from gradcli.records import record

MAX_ELEMENTS = 2_000_000  # beyond this many elements in all, no hypotheses: the hints stay cheap
# beyond this many, not even the right backward once more (a few elements off): its gradients
# would sit beside the check's own arrays, outside the memory the check was sized for
MAX_ELEMENTS_ONCE = 16_000_000
EPS32 = float(np.finfo(np.float32).eps)
# a float32 run of the right backward further than this from its float64 one is no round-off
MAX_OWN = 1e-3


@record
class Candidate:
    cause: str
    text: str  # completes "dW is exactly what the backward gives ..."
    grads: Mapping[str, np.ndarray]
    said: str = ""  # else the whole sentence after "dW " when it reproduces the values exactly


@record
class Match:
    cause: str
    text: str  # the whole sentence after "dW "


class Session:
    """The hypotheses of one check, computed once for all its tensors (lazily: only when one
    fails). ``given``: the gradients under test, by tensor name."""

    def __init__(self, spec: Any, given: Mapping[str, np.ndarray], output: np.ndarray) -> None:
        self.spec = spec
        self.given = {
            n: np.asarray(a, dtype=np.float64) for n, a in given.items() if n in spec.tensors
        }
        self.output = output
        self._matches: dict[str, list[Match]] | None = None
        self._layer: list[Layer | None] = []  # [the right backward's layer], once computed
        self._right_grads: dict[str, Any] | None = None
        self._near: dict[str, tuple[float, float, float] | None] = {}  # _near32's, per tensor

    @property
    def builtin_ok(self) -> bool:
        """Whether the values under test were held against the right backward itself: then a
        cause that no recomputation reproduced is not named by a looser pattern either."""
        return self.right_layer() is not None

    def right_layer(self) -> Layer | None:
        if not self._layer:
            try:
                self._layer.append(self.builtin())
            except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
                self._layer.append(None)
        return self._layer[0]

    # ------------------------------------------------------------------ the right backward
    def builtin(self) -> Layer | None:
        """Our layer, when its backward is the right one for the values under test: the spec's
        own layer, or for --impl the built-in of that name when the user's forward agrees."""
        layer = self.spec.layer
        if layer.broadcasts:
            return layer if layer.name in REGISTRY else None
        ours = REGISTRY.get(layer.name)
        if ours is None:
            return None
        out, _ = ours.forward(self._t64(), self.spec.options)
        mine = np.asarray(self.output, dtype=np.float64)
        if out.shape != mine.shape:
            return None
        scale = float(np.max(np.abs(out), initial=0.0)) or 1.0
        tol = 1e-5 if self.spec.dtype == "float32" else 1e-10
        return ours if float(np.max(np.abs(out - mine), initial=0.0)) <= tol * scale else None

    def _precision(self, name: str) -> list[Hint]:
        """A float64 check's gradient right to float32's precision only, said only where
        rounding is shown: every element of it a float32 number, or the backward under test
        linear in its upstream gradient to that precision only (a float64 backward is linear
        to its own round-off, whatever its slip)."""
        try:
            level = self._near32(name)
            if level is None:
                return []
            off, largest, own = level
            a = self.given[name]
            cast = self._cast32(name)
            if cast:
                return [Hint(
                    f"d{name} is exactly what the right backward gives with {cast} rounded to "
                    f"float32 (a {cast}.astype(np.float32), or a float32 copy of it kept) in "
                    "this float64 check: keep it in float64",
                    f"precision:float32:{cast}", True,
                )]  # fmt: skip
            # (every element a float32 number says nothing where the right gradient's are too:
            # an svm's multiples of 1/8 (outside test t65b F5)
            right = np.asarray(self._right(self.right_layer())[name], dtype=np.float64)
            stored = bool(np.all(a == a.astype(np.float32))
                          and not np.all(right == right.astype(np.float32)))
            rounds = self._rounds(name, own * largest) and self._scales(name)
            if not (stored or rounds):
                return []
            why = ("your backward is linear in its upstream gradient to that precision only: "
                   "a step of it rounds to float32" if rounds else
                   f"every element of your d{name} is a float32 number: it was computed or "
                   "stored in float32")  # fmt: skip
            return [Hint(
                f"d{name} is right to float32's precision only (off by up to {off / largest:.2g} "
                f"of its largest value; the built-in backward run in float32 is off by "
                f"{own:.2g}) and {why} (an .astype(np.float32), a float32 array or constant) in "
                "this float64 check: compute it in float64, or check float32 code under dtype: "
                "float32",
                "precision:float32", True,
            )]  # fmt: skip
        except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
            return []

    def _near32(self, name: str) -> tuple[float, float, float] | None:
        """(largest |a - right|, largest |right|, the built-in's float32 round-off relative to
        it) when the gradient under test is within 16 times that round-off (at least float32's
        last bit) of the right one in a float64 check, else None."""
        if name not in self._near:
            self._near[name] = self._near32_of(name)
        return self._near[name]

    def _near32_of(self, name: str) -> tuple[float, float, float] | None:
        layer, a = self.right_layer(), self.given.get(name)
        if (self.spec.dtype != "float64" or layer is None or a is None
                or sum(np.size(v) for v in self.spec.tensors.values()) > MAX_ELEMENTS_ONCE):
            return None  # fmt: skip
        R = np.asarray(self._right(layer)[name], dtype=np.float64)
        largest = float(np.max(np.abs(R), initial=0.0))
        if R.shape != a.shape or not largest or not np.all(np.isfinite(a)):
            return None
        t32 = {n: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v
               for n, v in self.spec.tensors.items()}  # fmt: skip
        g32 = np.asarray(self.spec.grad_output, dtype=np.float32)
        r32 = np.asarray(layer.backward(g32, layer.forward(t32, self.spec.options)[1])[name],
                         dtype=np.float64)  # fmt: skip
        own = max(float(np.max(np.abs(r32 - R), initial=0.0)) / largest, EPS32)
        if own > MAX_OWN:  # no round-off: a kink's route moved in float32 (svm margins of
            return None  # 1e-17 rounded to 0 there), and 0.5 off was called float32 precision
        off = float(np.max(np.abs(a - R), initial=0.0))
        return (off, largest, own) if off <= 16 * own * largest else None

    def _cast32(self, name: str) -> str:
        """The tensor whose float32 rounding, and nothing else, makes the right backward give
        the user's d``name`` (dx = g @ W.astype(np.float32): linear, every element float64,
        and 'wrong only at i=14' where 2 elements of 512 crossed the tolerance), else ""."""
        layer, a = self.right_layer(), self.given.get(name)
        if layer is None or a is None:
            return ""
        a = np.asarray(a, dtype=np.float64)
        g = np.asarray(self.spec.grad_output, dtype=np.float64)
        t64 = self._t64()
        right = np.asarray(self._right(layer)[name], dtype=np.float64)

        def near(r: np.ndarray, b: np.ndarray) -> bool:
            scale = float(np.max(np.abs(r), initial=0.0)) or 1.0
            return r.shape == b.shape and float(np.max(np.abs(r - b), initial=0.0)) <= 1e-12 * scale

        # (an answer the right one already is has nothing to explain: layernorm's dx, which
        # beta never enters, was 'exactly the right backward with beta rounded to float32'
        # where the differences failed it: outside test t34a F2)
        if near(right, a):
            return ""
        for n, v in t64.items():
            if np.asarray(v).dtype.kind != "f" or np.array_equal(v, np.float32(v)):
                continue
            t = {**t64, n: np.asarray(v, dtype=np.float32).astype(np.float64)}
            r = np.asarray(layer.backward(g, layer.forward(t, self.spec.options)[1])[name],
                           dtype=np.float64)  # fmt: skip
            if near(r, a) and not near(r, right):  # (n's rounding moves d``name``)
                return n
        return ""

    def _scales(self, name: str) -> bool:
        """Whether the user's backward gives exactly twice its answer for twice the upstream
        gradient, as float32 rounding does (a power of 2 scales every float exactly); noise
        added to a gradient does not, and is no rounding (t22 N4)."""
        spec = self.spec
        cache = spec.layer.forward(spec.tensors, spec.options)[1]
        g = np.asarray(spec.grad_output, dtype=np.float64)
        a = np.asarray(spec.layer.backward(g, cache)[name], dtype=np.float64)
        b = np.asarray(spec.layer.backward(2 * g, cache)[name], dtype=np.float64)
        return a.shape == b.shape and bool(np.array_equal(b, 2 * a))

    def _rounds(self, name: str, level: float) -> bool:
        """Whether the user's backward (--impl) is linear in its upstream gradient to about
        ``level`` only: d(g + 2 h) - d(g) - 2 d(h) beyond float64's round-off and within 16
        times ``level`` (a nonlinear slip strays further)."""
        spec = self.spec
        if spec.layer.broadcasts or name not in self.given:
            return False
        cache = spec.layer.forward(spec.tensors, spec.options)[1]
        g = np.asarray(spec.grad_output, dtype=np.float64)
        rms = float(np.sqrt(np.mean(np.square(g)))) if g.size else 0.0
        h = np.random.default_rng(0x663332).standard_normal(g.shape) * (rms or 1.0)
        a, b, c = (np.asarray(spec.layer.backward(u, cache)[name], dtype=np.float64)
                   for u in (g, h, g + 2 * h))  # fmt: skip
        if not a.shape == b.shape == c.shape:
            return False
        dev = float(np.max(np.abs(c - a - 2 * b), initial=0.0))
        scale = max(float(np.max(np.abs(x), initial=0.0)) for x in (a, b, c))
        return localize.LINEAR64 * scale < dev <= 16 * 3 * level

    def _localize(self, name: str) -> list[Hint]:
        try:
            return _localized(self, name)
        except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
            return []

    def _elements(self, name: str) -> list[Hint]:
        """A slip in a few elements of the gradient itself, at any size: every other element
        is the right backward's to round-off (an answer file with one element off, or an
        --impl whose backward the calls could not localize)."""
        try:
            layer, a = self.right_layer(), self.given.get(name)
            if layer is None or a is None or sum(
                    np.size(v) for v in self.spec.tensors.values()) > MAX_ELEMENTS_ONCE:
                return []
            R = np.asarray(self._right(layer)[name], dtype=np.float64)
            scale = max(float(np.max(np.abs(R), initial=0)), float(np.max(np.abs(a), initial=0)))
            if R.shape != a.shape or not scale:
                return []
            if self.spec.dtype == "float32":
                # 64 float32 ulps of each element, or 1e-6 of the largest where terms cancel:
                # 1e-4 of the largest called an svm dx 1.0001 x right everywhere 'wrong at 2
                # elements only', its elements of a third being 'right to round-off' (outside
                # test t66b F1)
                limit = np.maximum(64 * EPS32 * np.abs(R), 1e-6 * scale)
            else:
                limit = np.full(R.shape, 1e-8 * scale)
            bad = np.flatnonzero(np.abs(a - R) > limit)
            if bad.size > localize.MAX_NAMED or (bad.size and self._near32(name) is not None):
                return []  # errors float32 round-off leaves are no slip in a few elements
            mine, right = a.ravel()[bad], R.ravel()[bad]
            # + 0.0: a negative zero reads 0, not '-0 x the right value' (t24 F9)
            notes = [f"{m / r + 0.0:.6g} x the right value" if r else
                     f"{m + 0.0:.6g} where the right value is 0" for m, r in zip(mine, right,
                                                                          strict=True)]  # fmt: skip
            info = layer.tensor(name, self.spec.shapes, self.spec.options)
            own = _factors.letters(info.index, a.ndim)
            return localize.at_elements(name, bad, notes, a.shape, own,
                                        "every other element is the right one to round-off",
                                        blocks=layer.blocks)  # fmt: skip
        except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
            return []

    def _right(self, layer: Layer) -> dict[str, Any]:
        """The right backward's gradients at the spec's point (once)."""
        if self._right_grads is None:
            t = self._t64()
            g = np.asarray(self.spec.grad_output, dtype=np.float64)
            self._right_grads = dict(layer.backward(g, layer.forward(t, self.spec.options)[1]))
        return self._right_grads

    def _t64(self) -> dict[str, np.ndarray]:
        return {n: np.asarray(a, dtype=np.float64) for n, a in self.spec.tensors.items()}

    def explain(self, name: str) -> list[Hint]:
        """The verified hints for tensor ``name`` (empty when nothing reproduces it)."""
        if self._matches is None:
            try:
                self._matches = self._match_all()
            except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
                self._matches = {}
        found = self._matches.get(name, [])
        if not found:
            return self._precision(name) or self._localize(name) or self._elements(name)
        if len(found) == 1:
            return [Hint(f"d{name} {found[0].text}", found[0].cause, True)]
        text = f"d{name} {found[0].text}; or equally {'; or '.join(m.text for m in found[1:])}"
        return [Hint(text, " or ".join(m.cause for m in found), True)]

    # ------------------------------------------------------------------ matching
    def _match_all(self) -> dict[str, list[Match]]:
        layer = self.right_layer()
        if layer is None or sum(a.size for a in self._t64().values()) > MAX_ELEMENTS:
            return {}
        t = self._t64()
        g = np.asarray(self.spec.grad_output, dtype=np.float64)
        right = self._right(layer)
        rt = 1e-4 if self.spec.dtype == "float32" else 1e-8
        # wrong beyond round-off: 1e-5 of the largest in float64; in float32 1e-3 (8000 of its
        # ulps), not 1e3 x rt: 10% let groupnorm's dX without its mean term go unexplained
        beyond = 1e-3 if self.spec.dtype == "float32" else 1e3 * rt
        wrong = {}
        for n, a in self.given.items():
            R = np.asarray(right[n], dtype=np.float64)
            scale = max(float(np.max(np.abs(R), initial=0)), float(np.max(np.abs(a), initial=0)))
            if a.shape == R.shape and scale > 0 and np.max(np.abs(a - R)) > beyond * scale:
                wrong[n] = (a, R, rt * scale)
        if not wrong:
            return {}
        cands = self._candidates(layer, t, g, list(wrong))
        cands += [
            Candidate(
                f"other-tensor:{u}",
                f"for {u}: it is the right gradient of {u} (the two swapped, or a "
                f"factor that makes them differ left out)",
                {n: np.asarray(right[u], dtype=np.float64)},
            )
            for n in wrong
            for u in right
            if u != n and u in t and np.shape(right[u]) == self.given[n].shape
        ]
        out_shape = tuple(np.shape(self.output))
        spec = self.spec
        matches = {
            n: self._match(
                n, a, R, tol, cands,
                _factors.named(layer, spec.shapes, spec.options, n, out_shape, g),
            )
            for n, (a, R, tol) in wrong.items()
        }
        # one cause that explains more of the failing tensors beats several that explain one
        count: dict[str, int] = {}
        for found in matches.values():
            for c in {m.cause for m in found}:
                count[c] = count.get(c, 0) + 1
        best = {}
        for n, found in matches.items():
            top = max((count[m.cause] for m in found), default=0)
            tied = [m for m in found if count[m.cause] == top]
            # among causes that explain as much, the layer's own classic slip says it in the
            # layer's words; a generic mechanism reproducing the same values adds nothing
            own = [m for m in tied if m.cause.startswith(f"{layer.name}:")]
            best[n] = list({m.cause: m for m in (own or tied)}.values())
        return best

    def _match(
        self,
        name: str,
        a: np.ndarray,
        R: np.ndarray,
        tol: float,
        cands: list[Candidate],
        factors: list[tuple],
    ) -> list[Match]:
        exact: list[Match] = []
        paired: list[Match] = []
        info = self.spec.layer.tensor(name, self.spec.shapes, self.spec.options)
        # a mean over an axis the gradient keeps (db[c] over c) explains nothing: db[c] is a
        # sum over the other axes only
        factors = [f for f in factors if not f[3] & set(info.index)]
        layouts = self._layouts(name, R)
        for c in [*cands, *layouts, *self._transforms(name, R, list(info.index), info.axes)]:
            v = c.grads.get(name)
            if v is None or v.shape != a.shape or not np.all(np.isfinite(v)):
                continue
            if (c.cause == "upstream-ones" and not np.any(np.abs(v) > tol)
                    and np.max(np.abs(a), initial=0.0) <= tol):
                # the sum of a softmax's (a normalization's) outputs is constant: answers for
                # it are 0, said as what they are, not as a missing term (t39a N1)
                exact.append(Match(c.cause, (
                    "is 0 to round-off, as the gradient of the output's sum is through a "
                    "softmax or a normalization (its outputs' sum is constant): worked out for "
                    "an upstream gradient of ones, not for the check's grad_output (drawn from "
                    "the spec's seed: gradcli compute shows it)? Else a term or a path is "
                    "missing")))
                continue
            if not np.any(np.abs(v) > tol) or np.max(np.abs(v - R)) <= 10 * tol:
                continue  # a zero or a right candidate explains no failure
            if np.max(np.abs(a - v)) <= tol:
                said = c.said or f"is exactly what the backward gives {c.text}"
                exact.append(Match(c.cause, said))
                continue
            if c.said:  # the right gradient in another layout, or not that at all
                continue
            k = float(np.vdot(v, a) / np.vdot(v, v))
            if not np.isfinite(k) or np.max(np.abs(a - k * v)) > tol:
                continue
            for value, cause, words, _ in factors:
                if abs(k / value - 1) < 1e-6:
                    paired.append(
                        Match(
                            f"{c.cause} + {cause}",
                            f"is what the backward gives {c.text}, {words} ({k:.6g} x it)",
                        )
                    )
        if exact:
            return exact
        k = float(np.vdot(R, a) / np.vdot(R, R))
        # elements right to their last bits are no factor's: one row of a layernorm 1.5x off,
        # its gradient 1e10 beside rows of 1, read "= 1.5 x the right gradient everywhere",
        # the right rows within a tolerance the large row set (outside test t57a F5)
        untouched = bool(np.any((np.abs(a - R) <= 1e-9 * np.abs(R)) & (R != 0)))
        if (
            np.isfinite(k)
            and abs(k - 1) > 1e-6
            and abs(k) > 1e-6
            and not untouched
            and np.max(np.abs(a - k * R)) <= tol
        ):
            named = [
                Match(cause, f"= {k:.6g} x the right gradient everywhere: {words}")
                for value, cause, words, _ in factors
                if abs(k / value - 1) < 1e-6
            ]
            if named or np.count_nonzero(np.abs(R) > 10 * tol) < 2:
                return named  # one number is a multiple of any other: no evidence of a factor
            return [
                Match(
                    f"scale:{k:.6g}",
                    f"= {k:.6g} x the right gradient "
                    "everywhere: a constant factor this layer does not name",
                )
            ]
        return paired

    def _out_letters(self, layer: Layer, out_shape: tuple[int, ...]) -> list[str]:
        """The report's letters (the layout's at these shapes and options, as the tables)."""
        info = layer.output_info(self.spec.shapes, self.spec.options)
        return _factors.letters(info.index, len(out_shape))

    # ------------------------------------------------------------------ candidates
    def _candidates(
        self, layer: Layer, t: dict[str, np.ndarray], g: np.ndarray, failing: list[str]
    ) -> list[Candidate]:
        options = self.spec.options
        cache = layer.forward(t, options)[1]
        out: list[Candidate] = []

        def add(cause: str, text: str, make: Callable[[], Mapping[str, np.ndarray]]) -> None:
            try:
                grads = make()
            except Exception:  # noqa: BLE001 - a variant that does not apply here is no hint
                return
            out.append(
                Candidate(cause, text, {n: np.asarray(v, np.float64) for n, v in grads.items()})
            )

        letters = self._out_letters(layer, g.shape)
        stack, results = layer.stacked or ("", ())
        for axis, size in enumerate(g.shape):
            if size < 2:
                continue
            ltr = letters[axis]
            if ltr == stack and size == len(results):  # results side by side, no loop over them
                for idx, result in enumerate(results):
                    others = ", ".join(f"d{r}" for r in results if r != result)
                    keep = _along(g.ndim, axis, idx, size)
                    add(
                        f"upstream-ignored:{result}",
                        f"with d{result}, the upstream gradient of {result} ({ltr}={idx}), "
                        f"ignored: only {others} taken in",
                        lambda k=keep: layer.backward(np.where(k, 0.0, g), cache),
                    )
                continue
            for where, idx, text in (
                (
                    "first",
                    0,
                    f"when only output {ltr}=0 contributes (a sum over {ltr} that keeps "
                    f"its first term, e.g. dz[0] where dz.sum(axis) belongs)",
                ),
                (
                    "last",
                    size - 1,
                    f"when only the last output {ltr}={size - 1} contributes (a "
                    f"sum over {ltr} that keeps its last term: = where += belongs)",
                ),
            ):
                keep = _along(g.ndim, axis, idx, size)
                add(
                    f"upstream-only:{where}:{ltr}",
                    text,
                    lambda k=keep: layer.backward(np.where(k, g, 0.0), cache),
                )
            for where, idx, text in (
                (
                    "first",
                    0,
                    f"without the contributions of output {ltr}=0 (a loop over {ltr} "
                    "that starts at 1)",
                ),
                (
                    "last",
                    size - 1,
                    f"without the contributions of the last output "
                    f"{ltr}={size - 1} (a loop over {ltr} one short)",
                ),
            ):
                keep = _along(g.ndim, axis, idx, size)
                add(
                    f"upstream-without:{where}:{ltr}",
                    text,
                    lambda k=keep: layer.backward(np.where(k, 0.0, g), cache),
                )
        if g.size > 1 and not np.all(g == 1):
            # answers computed for y.sum(), the usual hand derivation, read as 'wrong at a few
            # elements' (an index, a slice) where the drawn upstream gradient was not used
            # (outside test t38b N4)
            add(
                "upstream-ones",
                "for an upstream gradient of ones (the gradient of the output's sum; 0 "
                "through a softmax or a normalization, whose outputs' sum is constant), not for "
                "the check's grad_output (drawn from the spec's seed: gradcli compute shows "
                "it; compute your gradients for it, or give grad_output)",
                lambda: layer.backward(np.ones_like(g), cache),
            )
        if dataclasses.is_dataclass(options):
            for f in dataclasses.fields(options):
                value = getattr(options, f.name)
                if f.name == "channels":
                    continue
                if value != f.default:
                    plain = dataclasses.replace(options, **{f.name: f.default})
                    add(
                        f"option:{f.name}",
                        f"with {f.name} at its default, {_default(f, options)} (the forward "
                        f"uses {value!r}): the backward ignores {f.name}",
                        lambda p=plain: _with_options(layer, t, p, g, self.spec.shapes),
                    )
                if f.name in UNIT_OPTIONS and value not in (1, [1, 1], (1, 1)):
                    # a pool's stride defaults to its window, not 1: a backward walking the
                    # windows one step apart is the classic slip (outside test t52b F1)
                    ones = dataclasses.replace(options, **{f.name: 1})
                    add(
                        f"option-one:{f.name}",
                        f"with {f.name} 1 (the forward uses {_effective(value, options)}): "
                        "the backward steps its windows 1 apart",
                        lambda p=ones: _with_options(layer, t, p, g, self.spec.shapes),
                    )
        for name, a in t.items():
            info = layer.tensor(name, self.spec.shapes, options)
            axes = [f"b{k}" for k in range(a.ndim - len(info.axes))] + list(info.axes)
            for i, j in itertools.combinations(range(a.ndim), 2):
                if a.shape[i] == a.shape[j] and a.shape[i] > 1:
                    swapped = {**t, name: np.swapaxes(a, i, j)}
                    what = (
                        f"{name} transposed"
                        if a.ndim == 2
                        else (f"{name}'s axes {axes[i]} and {axes[j]} swapped")
                    )
                    add(
                        f"tensor-transposed:{name}",
                        f"with {what} in the backward ({name}^T where {name} belongs, or the "
                        "other way round)",
                        lambda s=swapped: layer.backward(g, layer.forward(s, options)[1]),
                    )
            kernel = tuple(k for k, ax in enumerate(axes) if ax.startswith("k"))
            if kernel and info.role == "weight":
                flipped = {**t, name: np.flip(a, kernel)}
                add(
                    f"tensor-flipped:{name}",
                    f"with {name} flipped along its kernel axes in the backward (a convolution "
                    "where the layer correlates: its dX needs the kernel as it is, unrotated, "
                    "or the other way round)",
                    lambda f=flipped: layer.backward(g, layer.forward(f, options)[1]),
                )
        try:  # a layer's variants that do not apply here leave the other candidates standing
            variants = layer.variants(t, options, g) if layer.variants is not None else {}
        except Exception:  # noqa: BLE001 - a hint is best effort; the verdict stands
            variants = {}
        for cause, (text, grads) in variants.items():
            add(cause, text, lambda v=grads: v)
        named = len(out)
        for cause, text, grads in self._mechanisms(layer, t, g, cache, letters, failing):
            if not any(_same(grads, c.grads) for c in out[:named]):  # a variant said it already
                add(cause, text, lambda v=grads: v)
        return out

    def _mechanisms(
        self, layer: Layer, t: dict[str, np.ndarray], g: np.ndarray, cache: Any,
        letters: list[str], failing: list[str],
    ) -> list[mechanisms.Found]:  # fmt: skip
        """The generic wrong backward passes (checking/mechanisms.py) of the failing tensors."""
        names = [n for n in failing if n in t]
        shapes = {n: tuple(self.given[n].shape) for n in names}
        own = {
            n: _factors.letters(layer.tensor(n, self.spec.shapes, self.spec.options).index,
                                len(shapes[n]))
            for n in names
        }  # fmt: skip
        out_name = layer.output_info(self.spec.shapes, self.spec.options).name

        def backward(u: np.ndarray) -> Mapping[str, Any]:
            return layer.backward(u, cache)

        found: list[mechanisms.Found] = []
        for make in (
            lambda: mechanisms.mask_left_out(backward, g, names, out_name),
            lambda: mechanisms.wrong_axis_sum(
                backward, g, shapes, own, letters, sum(a.size for a in t.values()) + g.size),
            lambda: mechanisms.read_for_another(lambda c: layer.backward(g, c), cache, list(t)),
            lambda: mechanisms.transposed_in_cache(
                lambda c: layer.backward(g, c), cache, list(t)),
        ):
            try:
                found += make()
            except Exception:  # noqa: BLE001 - a mechanism that does not apply is no hint
                continue
        return found

    def _layouts(self, name: str, R: np.ndarray) -> list[Candidate]:
        """The right gradient in CS231n's layout of it (the layer's forms, gradcli/layers/
        cs231n.py), where that has gradcli's shape (a square conv: C == H == W): an answer
        file saved as their backward returns it. Answers only: an --impl in their form is
        called through that layout already, so its gradients come back in gradcli's."""
        layer = self.spec.layer
        if self.right_layer() is not layer:
            return []
        out = []
        for form, arg in cs231n.transposed_forms(layer, self.spec.options, name):
            v = np.asarray(arg.to(R), dtype=np.float64)
            if v.shape == R.shape:
                said = "is the right gradient " + cs231n.in_their_layout(
                    layer, self.spec.options, name, R.shape, f"d{name}", form, arg,
                    shapes=self.spec.shapes, verb="give")  # fmt: skip
                out.append(Candidate("cs231n-layout", "", {name: v}, said))
        return out

    def _transforms(
        self, name: str, R: np.ndarray, index: list[str], axes: tuple[str, ...]
    ) -> list[Candidate]:
        """The right gradient transposed, flipped or shifted by one: index mix-ups."""
        letters = _factors.letters(tuple(index), R.ndim)
        out = []
        for i, j in itertools.combinations(range(R.ndim), 2):
            if R.shape[i] == R.shape[j] > 1:
                out.append(
                    Candidate(
                        "transposed",
                        f"if its axes {letters[i]} and {letters[j]} were swapped: it is the right "
                        "gradient transposed (an index order mixed up, e.g. x^T dz for dz^T x)",
                        {name: np.swapaxes(R, i, j)},
                    )
                )
        kernel = tuple(k + R.ndim - len(axes) for k, ax in enumerate(axes) if ax.startswith("k"))
        flips = {(k,) for k in range(R.ndim) if R.shape[k] > 1} | ({kernel} if kernel else set())
        for f in sorted(flips):
            where = ", ".join(letters[k] for k in f)
            # a convolution for a correlation only where the flip is along a kernel's axes
            why = ("a convolution where the layer correlates, or an index counted from the end"
                   if kernel and set(f) <= set(kernel) else "an index counted from the end")
            out.append(
                Candidate(
                    "flipped",
                    f"if it were flipped along {where}: it is the right gradient reversed there "
                    f"({why})",
                    {name: np.flip(R, f)},
                )
            )
        for k in range(R.ndim):
            for step in (1, -1):
                if R.shape[k] > 2:
                    out.append(
                        Candidate(
                            "shifted",
                            f"if it were shifted by {step:+d} along {letters[k]}: it is the right "
                            f"gradient one index off along {letters[k]} (an offset off by one)",
                            {name: _shift(R, k, step)},
                        )
                    )
        return out


def _same(grads: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]) -> bool:
    """Whether two candidates give the same values for every tensor the first one names."""
    return all(
        n in other and other[n].shape == v.shape
        and np.allclose(other[n], v, rtol=1e-12, atol=1e-300)
        for n, v in grads.items()
    )  # fmt: skip


def _along(ndim: int, axis: int, idx: int, size: int) -> np.ndarray:
    """A boolean mask, broadcastable to ndim axes, true at index idx along axis."""
    mask = np.zeros(size, dtype=bool)
    mask[idx] = True
    return mask.reshape([size if k == axis else 1 for k in range(ndim)])


def _shift(R: np.ndarray, axis: int, step: int) -> np.ndarray:
    """R moved by step along axis, zeros where nothing moves in."""
    out = np.zeros_like(R)
    n = R.shape[axis]
    src = [slice(None)] * R.ndim
    dst = [slice(None)] * R.ndim
    src[axis] = slice(0, n - step) if step > 0 else slice(-step, n)
    dst[axis] = slice(step, n) if step > 0 else slice(0, n + step)
    out[tuple(dst)] = R[tuple(src)]
    return out


UNIT_OPTIONS = ("stride",)  # options a backward may take as 1 where the forward does not
PADDED = 64  # rows and columns a short output's input is padded by, at most


def _default(f: Any, options: Any) -> str:
    """An option's default as the forward takes it: a pool's omitted stride is its window."""
    if f.default is None and f.name == "stride" and hasattr(options, "size"):
        return f"the window's size, {options.size!r}"
    return repr(f.default)


def _effective(value: Any, options: Any) -> Any:
    """An option's value as the forward takes it: a pool's omitted stride is its window."""
    return getattr(options, "size", value) if value is None else value


def _with_options(layer: Layer, t: dict, options: Any, g: np.ndarray, shapes: Any) -> dict:
    """The backward at other options, the upstream gradient fitted to that output's shape: cut
    at, or padded with zeros past, the high end of each axis (the first outputs keep their
    place, as a backward that ignores the option places them). Where that output is shorter
    than the upstream gradient (a pool's stride taken as its window, 3 where the forward steps
    2), the first input is padded past its high end, with values that never win a max (else
    zeros), until it covers every upstream element: a backward looping over the forward's
    outputs reads windows clipped at the input's end there (outside test t52b F1)."""
    options = layer.resolve_options(options, shapes)
    out, cache = layer.forward(t, options)
    first = next(iter(t))
    x = t[first]
    pad = [0] * x.ndim
    fill = -np.inf if layer.maxima is not None else 0.0
    for _ in range(PADDED):
        short = [k for k in range(min(out.ndim, x.ndim)) if out.shape[k] < g.shape[k]]
        if out.ndim != g.ndim or not short or x.ndim != out.ndim:
            break
        for k in short:
            pad[k] += 1
        padded = np.pad(x, [(0, p) for p in pad], constant_values=fill)
        out, cache = layer.forward({**t, first: padded}, options)
    fitted = np.zeros(out.shape)
    common = tuple(slice(0, min(a, b)) for a, b in zip(out.shape, g.shape, strict=True))
    fitted[common] = g[common]
    grads = layer.backward(fitted, cache)
    if any(pad) and first in grads:
        grads = {**grads, first: grads[first][tuple(slice(0, n) for n in x.shape)]}
    return grads


def _localized(session: Session, name: str) -> list[Hint]:
    """--impl of a built-in layer: the user's backward called on structured upstream
    gradients (checking/localize.py), against ours."""
    spec, ours = session.spec, session.right_layer()
    if ours is None or spec.layer.broadcasts or name not in session.given:
        return []
    t = session._t64()
    g = np.asarray(spec.grad_output, dtype=np.float64)
    user_cache = spec.layer.forward(spec.tensors, spec.options)[1]
    our_cache = ours.forward(t, spec.options)[1]
    letters = session._out_letters(ours, g.shape)
    info = ours.tensor(name, spec.shapes, spec.options)
    own = _factors.letters(info.index, session.given[name].ndim)
    return localize.localize(
        name, g, lambda u: spec.layer.backward(u, user_cache),
        lambda u: ours.backward(u, our_cache), session.given[name], letters, own, ours.stacked,
        1e-7 if spec.dtype == "float32" else localize.LINEAR64, ours.blocks,
    )  # fmt: skip
