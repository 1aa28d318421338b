"""Templates that fit an 80-column terminal: `gradcli init` prints them to the screen, where a
line of 136 columns wrapped mid-word (outside test t20 F16). A comment too long for its line
moves above the line it explains, wrapped at the same indentation; a comment line wraps."""

from __future__ import annotations

import textwrap

WIDTH = 80


def fit_comments(text: str, width: int = WIDTH, inline: bool = True) -> str:
    """``text`` (YAML or Python with ``#`` comments) with every line over ``width`` that holds
    a comment rewrapped; code itself is never split. ``inline``: comments after code move too
    (YAML: no template holds '  # ' in a value; Python's strings may, so never there)."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width or "#" not in line:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        stripped = line.lstrip()
        if stripped.startswith("#"):  # a comment line: wrapped under its own '# '
            body = stripped[1:].strip()
            out += [f"{indent}# {part}" for part in textwrap.wrap(
                body, width - len(indent) - 2, break_long_words=False)]  # fmt: skip
            continue
        code, sep, comment = line.partition("  # ")
        if not sep or not inline:
            out.append(line)
            continue
        out += [f"{indent}# {part}" for part in textwrap.wrap(
            comment.strip(), width - len(indent) - 2, break_long_words=False)]  # fmt: skip
        out.append(code.rstrip())
    return "\n".join(out)
