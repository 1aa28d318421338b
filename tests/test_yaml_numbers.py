"""Outside test t15 (YAML1): YAML 1.2's numbers. `-.5` was refused as "a string" while `010`
silently read 8 and `1:30` read 90 (YAML 1.1's octal and base 60)."""

from __future__ import annotations

import math

import pytest

from gradcli.files.yamlparse import parse_yaml


@pytest.mark.parametrize(("text", "value"), [
    ("-.5", -0.5), ("+.5", 0.5), (".25", 0.25), ("1e-3", 0.001), ("1.5e+3", 1500.0),
    ("1.", 1.0), ("010", 10), ("0o17", 15), ("0x1f", 31), ("-3", -3), (".inf", math.inf),
    ("-.inf", -math.inf), ("1:30", "1:30"), ("0b11", "0b11"), ("1_000", "1_000"),
    ("yes", True), ("~", None),
])  # fmt: skip
def test_numbers_read_as_yaml_1_2(text, value):
    got = parse_yaml(f"v: {text}", source="t")["v"]
    assert got == value and type(got) is type(value)


def test_a_spec_with_negative_fractions_computes(cli, tmp_path):
    spec = tmp_path / "neg.yaml"
    spec.write_text("tensors:\n  x: [-.5, .25, +1.5]\n")
    result = cli("compute", "relu", spec, "--format", "json")
    assert result.exit_code == 0, result.stderr
