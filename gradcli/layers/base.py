"""The ``Layer`` record: a layer is data plus two pure functions.

``forward(tensors, options) -> (output, cache)`` and ``backward(grad_output, cache) -> grads``.
Neither keeps state nor mutates its inputs, so the numerical checker can call ``forward``
thousands of times on private copies.

Leading axes. Every tensor may carry extra leading axes in front of its core axes; they
broadcast together (right-aligned) and the output carries the broadcast result in front of
its own core axes. The input's leading axes are its batch; the numerical engine prepends a
"probe" axis to stack perturbed copies. ``backward`` only has to handle parameters without
leading axes (parameter gradients are summed over the batch).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcli.errors import OptionError, brief
from gradcli.layers.cs231n import Form
from gradcli.records import record

Arrays = Mapping[str, np.ndarray]
Shapes = Mapping[str, tuple[int, ...]]

# A footprint says which outputs a coordinate of a tensor can move; the numerical engine uses
# it to perturb many coordinates in one forward pass. One entry per tensor axis (the input's
# batch axes included): None (dense: every index along it may move the same outputs) or
# (out_axis, lo, hi): index t moves only outputs whose index along out_axis lies in
# [lo[t], hi[t]) (clipped to the output). A superset is safe; a subset is caught at run time.
AxisMap = tuple[int, np.ndarray, np.ndarray] | None
Footprint = tuple[AxisMap, ...]


def same(out_axis: int, n: int) -> AxisMap:
    """Index t along this axis moves only output index t along ``out_axis``."""
    t = np.arange(n)
    return (out_axis, t, t + 1)


def window(out_axis: int, n: int, lo: int, hi: int) -> AxisMap:
    """Index t moves output indices t + lo ... t + hi - 1 along ``out_axis``."""
    t = np.arange(n)
    return (out_axis, t + lo, t + hi)


def batch_maps(batch: tuple[int, ...]) -> tuple[AxisMap, ...]:
    """Batch axes map one-to-one onto the output's batch axes."""
    return tuple(same(k, n) for k, n in enumerate(batch))


def rows_matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (..., in) times W (..., out, in)^T with leading axes broadcast, as few GEMMs as
    possible: the trailing leading axes along which W does not vary become rows of one GEMM."""
    n = max(x.ndim - 1, W.ndim - 2)
    lead_x = (1,) * (n - x.ndim + 1) + x.shape[:-1]
    lead_w = (1,) * (n - W.ndim + 2) + W.shape[:-2]
    k = n
    while k > 0 and lead_w[k - 1] == 1:
        k -= 1
    rows = x.reshape(lead_x[:k] + (math.prod(lead_x[k:]), x.shape[-1]))
    z = rows @ W.reshape(lead_w[:k] + W.shape[-2:]).swapaxes(-1, -2)
    return z.reshape(np.broadcast_shapes(lead_x[:k], lead_w[:k]) + lead_x[k:] + z.shape[-1:])


CONSTANT_ROLES = frozenset({"target", "index", "data"})


@record
class TensorInfo:
    """One named tensor of a layer, in the seed's notation."""

    name: str
    axes: tuple[str, ...]  # dimension names, e.g. ("kh", "kw", "C_in", "C_out")
    index: tuple[str, ...]  # index letters of the seed formulas, e.g. ("m", "n", "d", "c")
    # "input" (may carry batch axes), "weight" or "bias"; never differentiated: "target" (a
    # float target, e.g. mse's), "index" (integers: labels, embedding indices) and "data" (a
    # custom layer's tensor under the spec's data:, its input X as often as a target)
    role: str
    doc: str
    optional: bool = False  # may be omitted from a spec: zeros
    absent_ok: bool = False  # may be omitted from a spec: the layer then does without it
    # role "index": the axis (of another tensor) whose size bounds the values, 0 <= v < size;
    # a spec draws them from its seed in that range (``init: labels``)
    classes: str | None = None
    # how a network draws it when only its shape is known: "ones" for a scale (a norm's
    # gamma); "" by role: a bias zeros, a weight with He's scale, an input standard normal
    init: str = ""

    @property
    def differentiable(self) -> bool:
        """Whether the layer has a gradient for it: never perturbed, never checked if not."""
        return self.role not in CONSTANT_ROLES

    @property
    def shape_str(self) -> str:
        return "(" + ", ".join(self.axes) + ("," if len(self.axes) == 1 else "") + ")"


@record
class NoOptions:
    """This layer takes no hyper-parameters."""


def option(default: Any, help: str) -> Any:
    """A field of a layer's frozen options dataclass, with the help `gradcli layers` shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def options_dict(options: Any) -> dict[str, Any]:
    """The options that differ from their defaults (the seed's case shows {})."""
    if isinstance(options, Mapping):  # a custom layer's keywords
        return dict(options)
    if not dataclasses.is_dataclass(options):
        return {}
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != f.default
        and not (f.default is None and getattr(options, f.name) is False)  # settled, not set
    }


def option_table(options: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for every option of a layer."""
    return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(options)]


@record
class Terms:
    """A layer's output as the sum of terms: ``forward(tensors, options) -> (T, cache)`` with T
    of the output's shape plus ``axes`` trailing axes, and the layer's output T summed over
    them (the layer's forward should be this one, summed: then the two cannot disagree; the
    engine checks the sums against the forward anyway before using the terms). ``footprint``
    maps each tensor onto T's axes, as ``Layer.footprint`` does onto the output's.

    ``moved(name, tensors, cache, idx, values) -> (where, T)`` or None: for a tensor of which
    each coordinate moves one term, the flat index into T of the term flat coordinate idx[p]
    moves and that term at the point with the coordinate set to values[p], from the terms'
    forward's cache, recomputing that term only (an svm score of another class than the
    label's moves one margin: O(1), not the O(N C) of a whole forward). The engine checks it
    against ``forward`` before trusting it."""

    forward: Callable[[Arrays, Any], tuple[np.ndarray, dict[str, Any]]]
    axes: int
    footprint: Callable[[str, Shapes, Any], Footprint]
    moved: Callable[..., tuple[np.ndarray, np.ndarray] | None] | None = None

    def total(self, T: np.ndarray) -> np.ndarray:
        return T.sum(axis=tuple(range(-self.axes, 0)))

    def summed(self, t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        """The layer's forward as the terms' total: ``Layer(forward=TERMS.summed, ...)``."""
        T, cache = self.forward(t, options)
        return self.total(T), cache


@record
class Layer:
    name: str
    summary: str  # the forward formula, one line
    tensors: tuple[TensorInfo, ...]
    output: TensorInfo
    forward: Callable[[Arrays, Any], tuple[np.ndarray, dict[str, Any]]]
    backward: Callable[[np.ndarray, dict[str, Any]], dict[str, np.ndarray]]
    output_shape: Callable[[Shapes, Any], tuple[int, ...]]  # validates; raises ShapeError
    default_shapes: Mapping[str, tuple[int, ...]]
    options: type = NoOptions
    intermediates: tuple[str, ...] = ()  # cache entries worth showing (e.g. Q, K, V, S, A)
    # shown(cache) -> {name: array}: more values compute shows beside them, what a student
    # compares their own forward with (lstm's gates, batchnorm's mean, var and xhat); read
    # from the built-in's cache, never checked
    shown: Callable[[dict[str, Any]], dict[str, np.ndarray]] | None = None
    footprint: Callable[[str, Shapes, Any], Footprint] | None = None  # None: all dense
    # sources(name, tensors, options) -> for a tensor of which each output element reads one
    # coordinate at most (a lookup, a reshape), an int array of the output's shape: the flat
    # index of that coordinate, -1 where none; None for a tensor without such a map. Every
    # coordinate is then moved in one pass and each output difference attributed to its source
    # (embedding's W, whose rows no axis map can separate: which outputs a row moves depends
    # on idx's values). Verified at run time like a footprint.
    sources: Callable[[str, Arrays, Any], np.ndarray | None] | None = None
    # a scalar output that is a sum of terms (a loss summing per-example terms): the engine
    # differences the terms, which a coordinate moves few of, instead of the one sum it
    # always moves (so coloring works across rows). See Terms.
    terms: Terms | None = None
    # working(shapes, options) -> elements the forward and backward allocate beyond the
    # tensors, the output and the gradients (im2col windows, padded inputs, T x T scores),
    # from the shapes alone: the element budget counts them before the first forward
    working: Callable[[Shapes, Any], int] | None = None
    # forward_working(shapes, options) -> elements one forward call allocates beyond its
    # tensors and output, its cache among them: --max-memory counts it for the engine's cache
    # and for each copy of a perturbed pass, which runs the forward alone; None (the field or
    # its value): ``working`` stands for both, counted once a pass
    forward_working: Callable[[Shapes, Any], int | None] | None = None
    # for a layer whose tensors' axes depend on the shapes given (conv1d with channels) or on
    # its options (groupnorm's spatial axes): (tensors, output) for those shapes and options
    layout: Callable[[Shapes, Any], tuple[tuple[TensorInfo, ...], TensorInfo]] | None = None
    # options settled from the shapes (conv1d's channels); the result is what runs
    resolve: Callable[[Any, Shapes], Any] | None = None
    # whether forward accepts leading axes on every tensor (a user's layer need not)
    broadcasts: bool = True
    # for a layer that does not broadcast: rows(t, stacks, options) -> (R, *out) its output
    # at each of R copies of ``t``, copy i with row i of each ``stacks[n]`` (R, *t[n].shape)
    # in place of t[n], one forward call per copy (a user's layer: its checks made once for
    # the copies, not once a call); None: ``forward`` called once per copy
    rows: Callable[[Arrays, Arrays, Any], np.ndarray] | None = None
    # differentiable everywhere, though not a built-in (a network of built-in layers none of
    # which has kinks): no kink is looked for. The detector for a user's layer reads a kink
    # where the two one-sided differences disagree beyond their round-off, and a confident
    # loss's, rounded at 1, is a staircase whose stairs it could take for kinks
    smooth: bool = False
    # made of built-in layers only, though not one (a network of them): its cache is theirs,
    # nested, and its backward their formulas (checking/lastbit.py reads it)
    builtins_only: bool = False
    # nudged(cache, fn) -> the cache with fn applied to the saved arrays its backward reads as
    # values, not as routes (a network's: those of its layers without kinks); None: all of
    # them for a layer without kinks, none for one with (checking/lastbit.py)
    nudged: Callable[[Any, Callable[[Any], Any]], Any] | None = None
    # perturbed(name, cache, g, idx, values) -> L (P,): the loss sum(g * out) at P copies of
    # the cached point, copy p with flat coordinate idx[p] of tensor ``name`` set to values[p],
    # evaluated incrementally (only what that coordinate moves is recomputed); None for a tensor
    # without such a path. The engine checks it against ``forward`` before trusting it.
    perturbed: Callable[..., np.ndarray | None] | None = None
    # perturbed_elements(name, shapes, options) -> the elements one such evaluation touches,
    # for the time estimate (numeric/cost.py); None: the largest array the forward keeps
    perturbed_elements: Callable[[str, Shapes, Any], int] | None = None
    # forward_elements(shapes, options) -> the elements one forward pass touches, its inputs
    # and output included, for the time estimate (numeric/cost.py) of a forward whose work is
    # not its arrays' size (a max-pool's passes per tap); None: its inputs, its output and the
    # arrays its forward keeps
    forward_elements: Callable[[Shapes, Any], int] | None = None
    # checking an intermediate's gradient (a hand-derived dS, say) needs the forward from that
    # intermediate on, everything upstream held fixed: tail(name, value, cache, options) ->
    # output, value may carry leading probe axes; tail_info(name, shapes, options) -> (its
    # TensorInfo, role "intermediate", and its Footprint in the output). None: not checkable.
    tail: Callable[[str, np.ndarray, Mapping[str, Any], Any], np.ndarray] | None = None
    tail_info: Callable[[str, Shapes, Any], tuple[TensorInfo, Footprint]] | None = None
    # check_values(tensors, options): the values' own preconditions (an index in range),
    # raising ShapeError naming the tensor's key; shapes are output_shape's business
    check_values: Callable[[Arrays, Any], None] | None = None
    # options not held in a dataclass (a custom layer's own keywords, any YAML value): the
    # spec's mapping -> the options forward receives
    parse_options: Callable[[Mapping[str, Any]], Any] | None = None
    # a layer whose tensors' roles are known only from the arrays given (a custom layer):
    # given(arrays) -> the layer for the spec's arrays, those given as integers of role
    # "index" (labels, indices: never perturbed, no gradient); a spec's tensors of this layer
    # keep an integer array's integers (inputs/sources.Loader ``given``)
    given: Callable[[Arrays], Layer] | None = None
    # kinks(name, tensors, options, step, start=None) -> bool array of tensor ``name``'s shape,
    # or None when that tensor has none: True where moving coordinate t of ``name`` alone
    # through the segment (x_t, x_t + step_t] (step_t > 0), [x_t + step_t, x_t) (step_t < 0),
    # or sitting at x_t (step_t == 0) meets a point where the forward is not differentiable
    # (``start``, an array of the same signs and smaller sizes than ``step``, or None: the
    # segment begins at x_t + start_t instead, its own end open; numeric/kinks.py asks whether
    # a near-tie's kinks all lie within a step, none beyond it up to twice it): relu's input
    # reaching 0 (its sign pattern changes), a max-pool window's argmax switching, the hinge's
    # active set changing. ``tensors`` are the float64 point checked, ``step`` a float64 array
    # of the tensor's shape. A superset is safe (those coordinates are checked one-sidedly,
    # numeric/kinks.py); a missed kink is a false failure there, never a false pass. None: the
    # layer has no kinks (a user's layer gets the generic detector instead). A layer that
    # declares kinks is piecewise linear along each coordinate (relu, leaky_relu, max-pool,
    # the hinge): a near-tie is read beyond its kinks, between two points past them.
    kinks: Callable[..., np.ndarray | None] | None = None
    # where those kinks are and the slopes a backward may take at one, in the user's notation,
    # for a hint on a gradient wrong only there ("x == 0, where relu's slope may be any value
    # in [0, 1]"); "": the hint speaks of kinks and one-sided slopes in general
    kink_words: str = ""
    # maxima(name, shapes, options) -> for a tensor of which each output element is the
    # largest of some of its coordinates (a max-pool's windows), an int array (output size, k):
    # row o the flat indices of the coordinates flat output o is the maximum of, -1 for none
    # (padding); None for a tensor without one. At ties of the forward's values the gradient
    # is then held to the routings of each output's upstream gradient to its own tied maxima,
    # exactly (numeric/routes.py), not to intervals; verified at the point (the forward must
    # equal each row's maximum), and the numbers fall back to the intervals where not.
    maxima: Callable[[str, Shapes, Any], np.ndarray | None] | None = None
    # words (layers/words.py): explain(Shown) -> Formulas for `gradcli explain`, and the body
    # of the `init --impl` module (forward and backward to fill in, formulas in comments);
    # None: a generic section per gradient, a skeleton from the tensor names
    explain: Callable[..., Any] | None = None
    skeleton: str | None = None
    # diagnosis: classic wrong backward passes of this layer, recomputed so that a gradient
    # under test can be recognized by its values: variants(tensors, options, grad_output) ->
    # {cause: (what the backward did, {tensor: wrong gradient})} (gradcli.hypotheses)
    variants: Callable[[Arrays, Any, np.ndarray], dict[str, tuple[str, dict]]] | None = None
    # (letter, names): the output's axis of that letter stacks several results, one per index
    # (lstm_step's s: next_h, next_c), so a backward that ignores one's upstream gradient is
    # named by it (dnext_c ignored), not as a loop or a sum over that axis, which no code has
    stacked: tuple[str, tuple[str, ...]] | None = None
    # (letter, names, words): the axis of that letter, in any tensor that has it, is split into
    # equal blocks, one per name (lstm_step's j: the gates i, f, o, g), so a gradient wrong at a
    # few elements all in one block is named by it: ``words`` formatted with block (its name),
    # lo, hi (its first and last index) and tensor completes "both lie in ..."
    blocks: tuple[str, tuple[str, ...], str] | None = None
    # the index letters of the axes this layer averages over (a loss's mean over its examples,
    # a normalization's statistics): a backward that leaves out the 1/size of any set of them
    # is named from the gradient's shape (checking/factors.py)
    means: tuple[str, ...] = ()
    # factors(shapes, options) -> [(value, cause, words)]: constants of this layer a slip
    # multiplies a gradient by that its means and options do not already name (checking/
    # factors.py derives those): attention's 1/sqrt(d_k) per head, a pooling window's size
    factors: Callable[[Shapes, Any], list[tuple[float, str, str]]] | None = None
    # CS231n's ways of writing this layer (gradcli/layers/cs231n.py): the function names a
    # student's file holds, their layout and param dicts; a user's file in one is called so
    cs231n: tuple[Form, ...] = ()
    # a user's implementation: the output its forward must give on the spec's tensors when
    # that is not the built-in forward's (CS231n's dropout draws its own mask): (tensors,
    # options, theirs) -> expected; None: the built-in forward's
    reference: Callable[[Arrays, Any, np.ndarray], tuple[np.ndarray, str]] | None = None
    # such a forward may draw its mask anew at each call: (tensors, options) -> the chance
    # that two calls drawing it anew return the same output (dropout keeping each of n
    # nonzero elements with probability q: (q^2 + (1 - q)^2)^n), so that enough calls at one
    # point tell a mask drawn per call from a fixed one; None: two calls are enough
    redraw_agrees: Callable[[Arrays, Any], float] | None = None
    # a user's implementation in CS231n's layout: yours(name, shapes, index) -> where element
    # ``index`` of gradient d``name`` (gradcli's layout; ``shapes``: the spec's) is in the array
    # the user's backward returned, under their own parameter's name: "dw[3,2]" for
    # dW[o=2, i=3] (w = W transposed); None: the report's indices are already theirs
    yours: Callable[[str, Shapes, tuple[int, ...]], str] | None = None
    # forms(tensors, options) -> {form: (what it is, its output)}: other formulas users write
    # for this forward (gelu's exact erf form), named where a user's forward is one of them
    forms: Callable[[Arrays, Any], dict[str, tuple[str, np.ndarray]]] | None = None
    # a user's implementation: own_defaults(options) -> its forward's signature defaults of
    # options gradcli did not pass it that are not this layer's ("eps=1e-06, not layernorm's
    # 1e-05"), "" for none, said where its forward disagrees with ours; None: nothing to read
    own_defaults: Callable[[Any], str] | None = None
    # a user's implementation called in CS231n's layout: how and why, in words ("your
    # conv_forward_naive in CS231n's layout (X as (N, C, H, W), ...) as your file defines
    # ..."), said where the spec's tensors do not fit the layer; "" in gradcli's own
    called_as: str = ""
    # a user's implementation: first_call() -> (the bytes its forward allocated in its first
    # call, measured at the spec's shapes; the bytes its output and cache held after it), or
    # None before that call or when it imported modules (user/allocated.py): --max-memory
    # refuses a forward that does not fit before calling it again, and the engine sizes its
    # copies by it; None: a built-in's working arrays are declared
    first_call: Callable[[], tuple[int, int] | None] | None = None

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """The tensors of the default spec (not those a spec may leave out entirely)."""
        return tuple(t.name for t in self.tensors if not t.absent_ok)

    @property
    def all_tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def grad_names(self) -> tuple[str, ...]:
        """The default spec's tensors that have a gradient (not labels, indices, targets)."""
        return tuple(t.name for t in self.tensors if not t.absent_ok and t.differentiable)

    def constants(self, shapes: Shapes | None = None, options: Any = None) -> tuple[str, ...]:
        """The tensors never differentiated (roles target and index)."""
        return tuple(t.name for t in self.infos(shapes, options) if not t.differentiable)

    def infos(self, shapes: Shapes | None = None, options: Any = None) -> tuple[TensorInfo, ...]:
        """The tensors' descriptions for these shapes and options (axes may depend on them)."""
        if self.layout and shapes is not None:
            return self.layout(shapes, options)[0]
        return self.tensors

    def output_info(self, shapes: Shapes | None = None, options: Any = None) -> TensorInfo:
        if self.layout and shapes is not None:
            return self.layout(shapes, options)[1]
        return self.output

    def tensor(self, name: str, shapes: Shapes | None = None, options: Any = None) -> TensorInfo:
        for t in self.infos(shapes, options):
            if t.name == name:
                return t
        raise KeyError(name)

    def resolve_options(self, options: Any, shapes: Shapes) -> Any:
        return self.resolve(options, shapes) if self.resolve else options

    def make_options(self, raw: Mapping[str, Any] | None) -> Any:
        """Build the frozen options dataclass; unknown keys are errors naming the known ones."""
        raw = dict(raw or {})
        if self.parse_options is not None:  # a custom layer: the user's own keywords
            return self.parse_options(raw)
        fields = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(str(k) for k in set(raw) - fields)
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            near = did_you_mean(unknown[0], sorted(fields), OPTION_ALIASES)
            raise OptionError(
                f"unknown option {brief(unknown[0])} for {self.name}{near} (known options: "
                f"{known})",
                key=f"options.{unknown[0][:40]}",
            )
        return self.options(**{k: _plain(v) for k, v in raw.items()})


# CS231n's and torch's names for gradcli's options (conv_param's pad, pool_param's
# pool_height), read as a "did you mean"
OPTION_ALIASES = {"pad": "padding", "pool_height": "size", "pool_width": "size",
                  "kernel_size": "size", "negative_slope": "alpha", "num_groups": "groups",
                  "G": "groups", "dim": "axis", "mode": "spatial"}  # fmt: skip


def did_you_mean(name: str, known: list[str], aliases: Mapping[str, str]) -> str:
    """' (did you mean X?)' for a name close to one of ``known`` (a spelling, or another
    library's name for it), else ""."""
    import difflib  # only on an error

    guess = aliases.get(name)
    if guess not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f" (did you mean {guess!r}?)" if guess else ""


def _plain(value: Any) -> Any:
    """A numpy number or array of options (``groups=C // 4`` from a shape, ``alpha`` from a
    float32 config, ``size=np.array([2, 2])``) as the Python number or list it stands for."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def masked_count(value: Any) -> int:
    """How many values of a numpy masked array are masked; 0 for anything else. numpy imports
    numpy.ma (10 ms) on first touch of ``np.ma``; a value can only be a masked array once
    something has imported it, so an unimported numpy.ma means 0 without importing it."""
    ma = sys.modules.get("numpy.ma")
    if ma is None or not isinstance(value, ma.MaskedArray):
        return 0
    return int(np.count_nonzero(ma.getmaskarray(value)))


def float64_copies(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float64 copies of the floating tensors; integer ones (labels, indices) kept as they are:
    they are never perturbed, and a float index cannot index. A read-only float64 array that
    owns its data (a spec's tensor) is kept too: nothing can write into it, and a copy of every
    tensor was a good part of a check's memory."""
    return {
        n: a if np.asarray(a).dtype.kind in "iub" or _frozen64(a) else np.array(a, np.float64)
        for n, a in tensors.items()
    }


def _frozen64(a: Any) -> bool:
    return (isinstance(a, np.ndarray) and a.dtype == np.float64 and not a.flags.writeable
            and a.flags.owndata)  # fmt: skip


def as_indices(a: Any) -> np.ndarray:
    """Labels or indices as integers; whole numbers in a float array (a network's target
    input, loaded in the network's dtype) are taken as the integers they are."""
    a = np.asarray(a)
    return a.astype(np.int64) if a.dtype.kind == "f" else a
