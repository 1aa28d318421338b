"""The init template's shape comments name as many axes as the shapes it writes: a batched
x of shape [3, 4] beside '(D,)', and grad_output's '(2, H)' where the output is (N, 2, H),
read as a contradiction, and a grad_output shaped as the comment said was refused (outside
test t68c F2). Oracle: the default spec's own shapes and output shape, per layer."""

import re

import pytest

from gradcli.layers import REGISTRY
from gradcli.render.jsondoc import init_template


def _axes(comment):
    inner = re.match(r"\(([^)]*)\)", comment).group(1)
    return [a for a in (p.strip() for p in inner.split(",")) if a]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_comment_has_the_axes_of_the_shape_beside_it(name):
    layer = REGISTRY[name]
    text = init_template(layer)
    lines = text.splitlines()
    for t in layer.tensors:
        if not t.axes or t.name not in layer.default_shapes:
            continue
        (k,) = [i for i, line in enumerate(lines) if line.startswith(f"  {t.name}: {{shape:")]
        line = lines[k]
        comment = line.split("#", 1)[1].strip() if "#" in line else lines[k - 1].strip("# ")
        assert len(_axes(comment)) == len(layer.default_shapes[t.name]), (t.name, line, comment)
    out = layer.output_shape(layer.default_shapes, layer.make_options({}))
    said = re.search(r"upstream gradient dL/d\w+, shape (\([^)]*\))", text)
    if out == ():
        assert said is None
    else:
        assert said is not None and len(_axes(said.group(1))) == len(out), (said, out)
