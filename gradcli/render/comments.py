"""Templates that fit an 80-column terminal: `gradcli init` prints them to the screen, where a
line of 136 columns wrapped mid-word (outside test t20 F16). A comment too long for its line
moves above the line it explains, wrapped at the same indentation; a comment line wraps
between words, never inside a formula (outside test t23 F8: `// stride` / `# + 1`)."""

from __future__ import annotations

import re
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
            code, sep, comment = body.partition("  # ")
            if sep and inline:
                # a commented-out line with its own comment ('# data: [target]  # ...'):
                # the comment above it, as for code ('# # float tensors ...' was its wrap)
                out += [f"{indent}# {part}" for part in wrap(comment, width - len(indent) - 2)]
                out.append(f"{indent}# {code.rstrip()}")
                continue
            # a comment's own indentation after '#' ('#   a sub-item') carries to its lines
            lead = stripped[1:][: len(stripped[1:]) - len(stripped[1:].lstrip())] or " "
            out += [f"{indent}#{lead}{part}"
                    for part in wrap(body, width - len(indent) - 1 - len(lead))]
            continue
        code, sep, comment = line.partition("  # ")
        if not sep or not inline:
            out.append(line)
            continue
        out += [f"{indent}# {part}" for part in wrap(comment.strip(), width - len(indent) - 2)]
        out.append(code.rstrip())
    return "\n".join(out)


# a word that joins its neighbours into one formula: no line breaks beside it
OPERATORS = frozenset("+ - * / // % ** @ = == != < > <= >= -> <- · × − ≤ ≥ ≠ ≈ ∈".split())
_OPEN, _CLOSE = "([{", ")]}"


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken between words only where no
    formula goes on: never inside brackets, never beside an operator (`(H + 2*padding - size)
    // stride + 1` stays one piece), and where runs of spaces set formulas apart (`dx = da
    Wx^T   dprev_h = da Wh^T`), never inside one of them. A formula longer than a line breaks
    before an operator outside brackets, its continuation indented two spaces."""
    units: list[tuple[str, str]] = []  # (the spaces before it, the unit)
    pieces = re.split(r"( {2,})", text.strip())
    for k in range(0, len(pieces), 2):
        sep = pieces[k - 1] if k else ""
        words = pieces[k].split()
        # what runs of spaces set apart (a formula, a remark beside it) stays whole
        if len(pieces) > 1 and len(pieces[k]) <= width:
            units.append((sep, " ".join(words)))
        else:
            units += [(sep if j == 0 else " ", u) for j, u in enumerate(_units(words))]
    lines: list[str] = []
    line = ""
    for sep, unit in units:
        if line and len(line) + len(sep) + len(unit) > width:
            lines.append(line)
            line = ""
        if len(unit) <= width:
            line = f"{line}{sep}{unit}" if line else unit
            continue
        parts = _formula_lines(unit, width)
        lines += parts[:-1]
        line = parts[-1]
    if line:
        lines.append(line)
    return lines


def _depths(words: list[str]) -> list[int]:
    """The bracket depth after each word."""
    depth, out = 0, []
    for w in words:
        depth += sum(w.count(c) for c in _OPEN) - sum(w.count(c) for c in _CLOSE)
        out.append(depth)
    return out


def _units(words: list[str]) -> list[str]:
    """Words joined where a break would cut a formula."""
    units: list[str] = []
    depths = _depths(words)
    for k, w in enumerate(words):
        joined = k > 0 and (depths[k - 1] > 0 or words[k - 1] in OPERATORS or w in OPERATORS
                            or w.startswith("(") and words[k - 1][-1] not in ",;:."
                            and _math(words, k))
        if joined:
            units[-1] += " " + w
        else:
            units.append(w)
    return units


def _math(words: list[str], k: int) -> bool:
    """Whether the bracket opening at word k holds a shape or an expression, as `gamma (x -
    mu)` and `b (C_out,)` do (a product, a tensor's shape), not words (`False (then ...)`)."""
    return words[k][-1] in ",)" or k + 1 < len(words) and words[k + 1] in OPERATORS


def _formula_lines(unit: str, width: int) -> list[str]:
    """One formula wider than a line: broken before its operators outside brackets, or after
    a comma of a list (`[dc g i(1-i), ..., dc i (1-g^2)]` wider than the line)."""
    words = unit.split(" ")
    depths = _depths(words)
    pieces = [words[0]]
    for k in range(1, len(words)):
        before = depths[k - 1] == 0 and words[k] in OPERATORS and words[k] != "="
        if before or words[k - 1].endswith(","):
            pieces.append(words[k])
        else:
            pieces[-1] += " " + words[k]
    lines = [""]
    for piece in pieces:
        room = width - (2 if len(lines) > 1 else 0)
        if lines[-1] and len(lines[-1]) + 1 + len(piece) > room:
            lines.append("")
            room = width - 2
        for part in textwrap.wrap(piece, room, break_long_words=False) or [piece]:
            if lines[-1] and len(lines[-1]) + 1 + len(part) > room:
                lines.append("")
            lines[-1] = f"{lines[-1]} {part}" if lines[-1] else part
    return [lines[0]] + ["  " + line for line in lines[1:]]
