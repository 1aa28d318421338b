"""`gradcli init` prints templates to the terminal: every comment fits 80 columns (outside
test t20 F16: lines up to 136 columns, wrapped mid-word), and the templates still load and
compile as before."""

from __future__ import annotations

import ast

import pytest
import yaml

from gradcli.layers import REGISTRY

NAMES = [*REGISTRY, "custom", "net"]


@pytest.mark.parametrize("layer", NAMES)
def test_spec_template_comments_fit_80_columns(cli, layer):
    r = cli("init", layer)
    assert r.exit_code == 0
    wide = [line for line in r.stdout.splitlines() if len(line) > 80 and "#" in line]
    assert not wide, wide
    assert isinstance(yaml.safe_load(r.stdout), dict)


@pytest.mark.parametrize("layer", [n for n in NAMES if n != "net"])
def test_impl_skeleton_comments_fit_80_columns(cli, layer):
    r = cli("init", layer, "--impl")
    assert r.exit_code == 0
    wide = [line for line in r.stdout.splitlines()
            if len(line) > 80 and line.lstrip().startswith("#")]  # fmt: skip
    assert not wide, wide
    ast.parse(r.stdout)


def test_a_template_still_runs(cli, tmp_path):
    spec = tmp_path / "lstm.yaml"
    assert cli("init", "lstm_step", "-o", spec).exit_code == 0
    assert cli("check", "lstm_step", spec, "-q").exit_code == 0


@pytest.mark.parametrize("layer", NAMES)
def test_no_template_line_is_a_wrapped_comment_of_a_comment(cli, layer):
    """`# data: [target]  # float tensors ...` wrapped as a comment read `# # float tensors`
    (outside test t54a F6); its comment now goes above it, as a code line's does."""
    r = cli("init", layer)
    assert not [line for line in r.stdout.splitlines() if line.lstrip().startswith("# #")]


def test_a_comment_line_wraps_under_its_own_indentation():
    from gradcli.render.comments import fit_comments

    text = "  #   parameters are named <name>.<tensor> (conv1.W); default names <layer><k> (relu2)"
    lines = fit_comments(text + " and more").splitlines()
    assert len(lines) == 2 and all(line.startswith("  #   ") for line in lines), lines
    moved = fit_comments("# data: [target]" + " " * 8 + "# float tensors never differentiated "
                         "either (a loss's target), and more words").splitlines()  # fmt: skip
    assert moved[-1] == "# data: [target]" and moved[0].startswith("# float tensors"), moved
