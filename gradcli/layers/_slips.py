"""The classic slips in a backward that multiplies by an activation's derivative, as the
factor put in its place: written once for every layer with a tanh or a sigmoid inside (rnn_step's
state, lstm_step's gates and cell), so each such site is tried with every slip.

A slip is (cause suffix, what was written, why it is wrong, factor): what was written is the
factor as the user's backward has it, in their notation (``name``: the activation's output as
the layer's formulas call it; "" for no factor at all), and the factor its values.
"""

from __future__ import annotations

import numpy as np

Slip = tuple[str, str, str, np.ndarray]


def tanh(y: np.ndarray, name: str, others: dict[str, np.ndarray] | None = None) -> list[Slip]:
    """tanh's derivative (1 - y^2) at output ``y``: left out, not squared, sigmoid's in its
    place, or taken at another array (``others``: {its name: its values})."""
    out = [
        ("derivative-missing", "", "tanh's derivative left out", np.ones_like(y)),
        ("not-squared", f"(1 - {name})", "tanh's derivative not squared", 1 - y),
        ("sigmoid-derivative", f"{name} (1 - {name})", "sigmoid's derivative, not tanh's",
         y * (1 - y)),
    ]  # fmt: skip
    for other, v in (others or {}).items():
        out.append((f"derivative-at:{other}", f"(1 - {other}^2)",
                    f"tanh's derivative taken at {other}, not at {name}", 1 - v**2))  # fmt: skip
    return out


def sigmoid(s: np.ndarray, name: str, others: dict[str, np.ndarray] | None = None) -> list[Slip]:
    """sigmoid's derivative s (1 - s) at output ``s``: left out, half of it, tanh's, or taken
    at another array (``others``: {its name: its values}, e.g. the pre-activation)."""
    out = [
        ("derivative-missing", "", "sigmoid's derivative left out", np.ones_like(s)),
        ("half-derivative", name, f"sigmoid's derivative without its (1 - {name})", s),
        ("other-half", f"(1 - {name})", f"sigmoid's derivative without its {name}", 1 - s),
        ("tanh-derivative", f"(1 - {name}^2)", "tanh's derivative, not sigmoid's", 1 - s**2),
    ]
    for other, v in (others or {}).items():
        out.append((f"derivative-at:{other}", f"{other} (1 - {other})",
                    f"sigmoid's derivative taken at {other}, not at {name}", v * (1 - v)))
        out.append((f"second-at:{other}", f"{name} (1 - {other})",
                    f"sigmoid's second factor taken at {other}, not at {name}", s * (1 - v)))
    return out


def wrapped(used: str) -> str:
    """``used`` as a factor before more of a product ("(1 - t) "; "" for no factor)."""
    if not used:
        return ""
    return f"{used} " if used.startswith("(") and used.endswith(")") else f"({used}) "


def times(upstream: str, used: str) -> str:
    """``upstream * used`` as the user writes it ("dnext_h" alone for no factor)."""
    return f"{upstream} * {used}" if used else upstream
