"""A hint: one sentence for people, and its evidence for programs (JSON's "hints")."""

from __future__ import annotations

from typing import Any


class Hint(str):
    """One sentence for people (it is the ``str``), and its evidence: the cause it names (None
    for an observation that names none) and whether a recomputation reproduced it."""

    cause: str | None
    verified: bool

    def __new__(cls, text: str, cause: str | None = None, verified: bool = False) -> Hint:
        hint = super().__new__(cls, text)
        hint.cause, hint.verified = cause, verified
        return hint


def hint_doc(hint: str) -> dict[str, Any]:
    """A hint as JSON: {"text", "cause", "verified"} (a plain string names no cause)."""
    return {
        "text": str(hint),
        "cause": getattr(hint, "cause", None),
        "verified": bool(getattr(hint, "verified", False)),
    }
