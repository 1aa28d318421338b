"""Classic slips outside testers found with no hint (t23 F4, t24 F4), written as students write
them: the softmax loss without its one-hot or with dx[:, y] -= 1, the SVM without its
true-class term or counting it among the violated margins, rnn_step's
dprev_h = da @ Wh, lstm_step's dprev_c without the forget gate, gelu's cubic term, flatten in
Fortran order, a max pool routed to the argmin. One flag per mistake; "" is the correct twin."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bugcorpus.corpus import Bug, bug


@dataclasses.dataclass(frozen=True)
class Labelled(Bug):
    """A classifier loss's bug: x (N, C) scores and y (N,) integer labels."""

    def tensors(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        N, C = self.shapes["x"]
        return {"x": rng.standard_normal((N, C)), "y": rng.integers(0, C, N)}


def _labelled(b: Bug) -> Labelled:
    return Labelled(**{f.name: getattr(b, f.name) for f in dataclasses.fields(b)})


def make_softmax_loss(mistake: str = ""):
    def probs(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def forward(x, y):
        N = x.shape[0]
        return -np.log(probs(x)[np.arange(N), y]).mean()

    def backward(grad_output, x, y):
        N = x.shape[0]
        dx = probs(x)
        if mistake == "column_index":  # every row's every labelled column
            dx[:, y] -= 1
        elif mistake != "no_onehot":
            dx[np.arange(N), y] -= 1
        return {"x": grad_output * dx / N}

    return forward, backward


def make_svm(mistake: str = ""):
    def margins(x, y):
        N = x.shape[0]
        m = np.maximum(0, x - x[np.arange(N), y][:, None] + 1)
        m[np.arange(N), y] = 0
        return m

    def forward(x, y):
        return margins(x, y).sum() / x.shape[0]

    def backward(grad_output, x, y):
        N = x.shape[0]
        d = (margins(x, y) > 0).astype(float)
        if mistake == "counted":  # the correct class's own margin, 1, not zeroed: counted
            d[np.arange(N), y] = 1
        if mistake != "no_true_class":
            d[np.arange(N), y] = -d.sum(axis=1)
        return {"x": grad_output * d / N}

    return forward, backward


def make_rnn(mistake: str = ""):
    def forward(x, prev_h, Wx, Wh, b):
        return np.tanh(x @ Wx + prev_h @ Wh + b)

    def backward(grad_output, x, prev_h, Wx, Wh, b):
        h = forward(x, prev_h, Wx, Wh, b)
        da = grad_output * (1 - h**2)
        dprev_h = da @ Wh if mistake == "Wh_not_T" else da @ Wh.T
        return {"x": da @ Wx.T, "prev_h": dprev_h, "Wx": x.T @ da, "Wh": prev_h.T @ da,
                "b": da.sum(0)}  # fmt: skip

    return forward, backward


def make_lstm(mistake: str = ""):
    def sig(a):
        return 1 / (1 + np.exp(-a))

    def gates(x, prev_h, prev_c, Wx, Wh, b):
        a = x @ Wx + prev_h @ Wh + b
        H = prev_h.shape[1]
        i, f, o = sig(a[:, :H]), sig(a[:, H : 2 * H]), sig(a[:, 2 * H : 3 * H])
        g = np.tanh(a[:, 3 * H :])
        c = f * prev_c + i * g
        return i, f, o, g, c

    def forward(x, prev_h, prev_c, Wx, Wh, b):
        i, f, o, g, c = gates(x, prev_h, prev_c, Wx, Wh, b)
        return np.stack([o * np.tanh(c), c], axis=1)

    def backward(grad_output, x, prev_h, prev_c, Wx, Wh, b):
        i, f, o, g, c = gates(x, prev_h, prev_c, Wx, Wh, b)
        dh, dnc = grad_output[:, 0], grad_output[:, 1]
        tc = np.tanh(c)
        dc = dnc + dh * o * (1 - tc**2)
        da = np.concatenate([dc * g * i * (1 - i), dc * prev_c * f * (1 - f),
                             dh * tc * o * (1 - o), dc * i * (1 - g**2)], axis=1)  # fmt: skip
        dprev_c = dc if mistake == "no_forget" else dc * f
        return {"x": da @ Wx.T, "prev_h": da @ Wh.T, "prev_c": dprev_c, "Wx": x.T @ da,
                "Wh": prev_h.T @ da, "b": da.sum(0)}  # fmt: skip

    return forward, backward


def make_gelu(mistake: str = ""):
    c = math.sqrt(2 / math.pi)

    def forward(x):
        return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))

    def backward(grad_output, x):
        t = np.tanh(c * (x + 0.044715 * x**3))
        cubic = {"no_3": 0.044715 * x**2, "no_cubic": 0.0}.get(mistake, 3 * 0.044715 * x**2)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + cubic)
        if mistake == "erf":  # the exact GELU's derivative (torch's default) under the tanh form
            erf = np.vectorize(math.erf)(x / math.sqrt(2))
            d = 0.5 * (1 + erf) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
        return {"x": grad_output * d}

    return forward, backward


def make_flatten(mistake: str = ""):
    def forward(x, start=1):
        return x.reshape(x.shape[:start] + (-1,))

    def backward(grad_output, x, start=1):
        order = "F" if mistake == "order_F" else "C"
        return {"x": grad_output.reshape(x.shape, order=order)}

    return forward, backward


def make_maxpool(mistake: str = ""):
    """maxpool2d, X (B, H, W, C), 2x2 windows with stride 2, routed through argmax."""

    def forward(X, size=2, stride=None):
        B, H, W, C = X.shape
        return X.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))

    def backward(grad_output, X, size=2, stride=None):
        B, H, W, C = X.shape
        dX = np.zeros_like(X)
        pick = np.argmin if mistake == "argmin" else np.argmax
        for i in range(H // 2):
            for j in range(W // 2):
                win = X[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(B, 4, C)
                k = pick(win, axis=1)  # (B, C)
                for n in range(B):
                    for ch in range(C):
                        m, q = divmod(int(k[n, ch]), 2)
                        dX[n, 2 * i + m, 2 * j + q, ch] += grad_output[n, i, j, ch]
        return {"X": dX}

    return forward, backward


SCORES = {"x": (6, 4), "y": (6,)}
RNN = {"x": (4, 3), "prev_h": (4, 5), "Wx": (3, 5), "Wh": (5, 5), "b": (5,)}
LSTM = {"x": (3, 4), "prev_h": (3, 5), "prev_c": (3, 5), "Wx": (4, 20), "Wh": (5, 20),
        "b": (20,)}  # fmt: skip
ACT = {"x": (4, 6)}
FLAT = {"x": (2, 3, 4)}
POOL = {"X": (2, 4, 6, 3)}


def bugs():
    sce, svm = dict(make=make_softmax_loss), dict(make=make_svm)
    return [
        _labelled(bug("softmax_loss/correct", "softmax_cross_entropy", shapes=SCORES, wrong="",
                      cause=None, **sce)),
        _labelled(bug("softmax_loss/no_onehot", "softmax_cross_entropy", shapes=SCORES,
                      wrong="x", cause="softmax_cross_entropy:no-onehot", mistake="no_onehot",
                      doc="dx = p / N: the - onehot(y) left out", **sce)),
        _labelled(bug("softmax_loss/column_index", "softmax_cross_entropy", shapes=SCORES,
                      wrong="x", cause="softmax_cross_entropy:column-index",
                      mistake="column_index", doc="dx[:, y] -= 1", **sce)),
        _labelled(bug("svm/correct", "svm", shapes=SCORES, wrong="", cause=None, **svm)),
        _labelled(bug("svm/no_true_class", "svm", shapes=SCORES, wrong="x",
                      cause="svm:true-class-left-out", mistake="no_true_class",
                      doc="dx[n, y_n] left 0: the correct class's term left out", **svm)),
        _labelled(bug("svm/counted", "svm", shapes=SCORES, wrong="x",
                      cause="svm:true-class-counted", mistake="counted",
                      doc="the correct class counted among the violated margins", **svm)),
        bug("rnn_step/correct", "rnn_step", make_rnn, RNN, "", None),
        bug("rnn_step/Wh_not_T", "rnn_step", make_rnn, RNN, "prev_h", "tensor-transposed:Wh",
            mistake="Wh_not_T", doc="dprev_h = da @ Wh where da @ Wh.T belongs"),
        bug("lstm_step/correct", "lstm_step", make_lstm, LSTM, "", None),
        bug("lstm_step/no_forget", "lstm_step", make_lstm, LSTM, "prev_c",
            "lstm_step:dprev_c-without-f", mistake="no_forget",
            doc="dprev_c = dc where dc * f belongs"),
        bug("gelu/correct", "gelu", make_gelu, ACT, "", None),
        bug("gelu/no_3", "gelu", make_gelu, ACT, "x", "gelu:cubic-without-3", mistake="no_3",
            doc="(1 + 0.044715 x^2) where (1 + 3 * 0.044715 x^2) belongs"),
        bug("gelu/no_cubic", "gelu", make_gelu, ACT, "x", "gelu:cubic-derivative-missing",
            mistake="no_cubic", doc="du/dx = sqrt(2/pi): the cubic term not differentiated"),
        bug("gelu/erf", "gelu", make_gelu, ACT, "x", "gelu:erf-derivative", mistake="erf",
            doc="the exact GELU's derivative under the tanh form's forward"),
        bug("flatten/correct", "flatten", make_flatten, FLAT, "", None),
        bug("flatten/order_F", "flatten", make_flatten, FLAT, "x", "flatten:order-F",
            mistake="order_F", doc='dy.reshape(x.shape, order="F")'),
        bug("maxpool2d/correct_argmax", "maxpool2d", make_maxpool, POOL, "", None),
        bug("maxpool2d/argmin", "maxpool2d", make_maxpool, POOL, "X", "maxpool:argmin",
            mistake="argmin", doc="each window's gradient routed to its argmin"),
    ]  # fmt: skip
