"""Every example spec in specs/ passes `gradcli check`, in a table and in JSON."""

import json
from pathlib import Path

import pytest
import yaml

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_spec_passes(cli, path):
    layer = yaml.safe_load(path.read_text())["layer"]  # a name may hold "_" (rnn_step)
    result = cli("check", layer, path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["layer"] == layer
    assert doc["notes"] == []  # every declared footprint held under the spec's options


def test_every_feature_has_an_example():
    names = {p.stem for p in SPECS}
    assert {"linear", "conv1d", "conv2d", "attention"} <= names
    assert {
        "linear_batched",
        "conv1d_channels_strided",
        "conv2d_padded_dilated",
        "attention_causal_multihead",
    } <= names


def test_options_show_in_json_only_when_set(cli):
    seed = json.loads(cli("compute", "conv2d", "--format", "json").stdout)
    assert seed["options"] == {}
    path = [p for p in SPECS if p.stem == "conv1d_channels_strided"][0]
    doc = json.loads(cli("compute", "conv1d", path, "--format", "json").stdout)
    assert doc["options"] == {"stride": 2, "padding": 1, "channels": True}
