"""`gradcli init LAYER --impl`: a module to fill in, with the seed's formulas in comments."""

from __future__ import annotations

import shlex
import textwrap

from gradcli.layers import get_layer
from gradcli.layers.words import skeleton_for

_HEADER = '''"""My {layer} layer. Check it with
    gradcli check {layer}{spec} --impl {file}
{on}
gradcli calls forward(**tensors, **options) and
backward(grad_output, **tensors, **options), with the tensors by name (NumPy
arrays) and only the options your spec sets. backward returns a dict of
gradients keyed by tensor name, each of that tensor's shape.
"""

import numpy as np


'''

CUSTOM = """
# Any layer: the tensors are the ones your spec names under `tensors:` (layer: custom), and
# options: {...} arrive as keywords. Example: y = tanh(scale * x).
def forward(x, scale=1.0):
    return np.tanh(scale * x)


def backward(grad_output, x, scale=1.0):
    return {"x": grad_output * scale * (1 - np.tanh(scale * x) ** 2)}
"""


def command_word(path: str) -> str:
    """``path`` as one word of a shell command in a comment: quoted when the shell needs it,
    and on one line (a newline or an ESC in a file name is shown escaped, as in messages)."""
    quoted = shlex.quote(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in quoted)


def module(layer: str, file: str | None = None) -> str:
    """The `init --impl` module of a registered layer (its own skeleton, else one from its
    tensor names), or of ``custom``; ``file``: where it is written (its docstring's command
    names it), by default the name it suggests, my_LAYER.py."""
    if layer == "custom":
        body = CUSTOM
    else:
        lay = get_layer(layer)
        body = lay.skeleton or skeleton_for(
            lay.tensor_names,
            lay.summary,
            ", ".join(f"{t.name} {t.shape_str}" for t in lay.tensors if not t.absent_ok),
            f"{lay.output.name} {lay.output.shape_str}",
        )
    # the docstring holds the command's text: its backslashes and quotes are escaped, so that
    # no file name can end the string early
    word = command_word(file or f"my_{layer}.py").replace("\\", "\\\\").replace('"', '\\"')
    if layer == "custom":
        spec, on = " SPEC", "(SPEC: a spec naming your tensors; gradcli init custom writes one)\n"
    else:
        spec, on = "", f"(on {layer}'s default tensors; add a SPEC file for your own)\n"
    head = _HEADER.format(layer=layer, file=word, spec=spec, on=on)
    if layer != "custom" and get_layer(layer).cs231n:
        head = head.replace('"""\n\nimport', _cs231n(layer) + '"""\n\nimport', 1)
    return head + body.lstrip("\n")


def _cs231n(layer: str) -> str:
    """The header's paragraph on CS231n's forms of this layer: a student's file as it is."""
    found = []
    for form in get_layer(layer).cs231n:
        if form.backward is None:
            text = f"{form.forward}(...) -> (loss, dx)"
        else:
            outs = "out, cache" if form.outputs == 1 else "next_h, next_c, cache"
            text = f"{form.forward}(...) -> ({outs}) with {form.backward}"
        found.append(text + (f" (CS231n's layout: {form.layout})" if form.layout else ""))
    text = (f"A CS231n file works as it is (gradcli check {layer} SPEC --impl layers.py): "
            f"gradcli finds {'; or '.join(found)}.")  # fmt: skip
    return "\n" + textwrap.fill(text, 79) + "\n"


# `gradcli init custom`: a spec for the custom skeleton above, so the two run as they are
CUSTOM_SPEC = """\
# gradcli spec for a custom layer: your own forward and backward, in a module
# run: gradcli init custom --impl -o my_custom.py
#      gradcli check custom THIS_FILE.yaml --impl my_custom.py
layer: custom
dtype: float64          # float64 or float32
seed: 0                 # seeds generated tensors and the default grad_output
options:                # any keywords; your functions receive exactly these
  scale: 2.0
# any names (Python identifiers, your functions' keywords), any shapes
tensors:
  # each tensor: a .npy path (relative to this file), file.npz:key, a number,
  # a nested list, or {shape: [...], init: normal|uniform|zeros|ones|arange,
  # scale: 1}
  x: {shape: [3, 4], init: normal}
  # an integer array (.npy, numpy) is labels or indices: passed, never
  # differentiated
# float tensors never differentiated either (a loss's target):
# data: [target]
# grad_output (the upstream gradient dL/d(output)): omitted, drawn with your
# output's shape
"""
