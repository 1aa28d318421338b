"""The numerics options on the command line: --method, --eps, --mode, --samples, --coloring,
--max-memory, --budget, --sweep."""

import pytest

from gradcli.layers import REGISTRY
from gradcli.numeric.methods import METHODS


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_passes_on_every_layer(cli_json, method):
    for layer in REGISTRY:
        doc = cli_json("check", layer, "--method", method)
        assert doc["passed"] and doc["method"] == method
        assert doc["eps"] == METHODS[method].auto_eps


def test_check_json_reports_mode_coverage_and_coloring(cli_json):
    doc = cli_json("check", "conv2d")
    assert doc["mode"] == "full" and doc["notes"] == []
    x = doc["results"]["X"]
    assert x["mode"] == "full" and x["checked"] == 60 and x["coloring"] is True
    assert x["colors"] == 18 and x["forward_passes"] < 2 * 60
    plain = cli_json("check", "conv2d", "--no-coloring")["results"]["X"]
    assert plain["coloring"] is False and plain["colors"] == 60


@pytest.mark.parametrize("mode", ["sample", "probe"])
def test_cheaper_modes(cli_json, mode):
    doc = cli_json("check", "attention", "--mode", mode, "--samples", "3")
    assert doc["passed"] and doc["mode"] == mode
    expected = 3 if mode == "sample" else 2
    assert all(r["checked"] == expected and r["mode"] == mode for r in doc["results"].values())


def test_budget_switches_to_sample_and_says_so_on_stderr(cli):
    result = cli("check", "conv2d", "--budget", "0", "--samples", "4", "--format", "json")
    assert result.exit_code == 0
    assert "budget" in result.stderr and result.stderr.count("\n") == 1
    assert '"mode": "sample"' in result.stdout


def test_explicit_eps_and_bad_eps(cli, cli_json):
    assert cli_json("check", "linear", "--eps", "1e-5")["eps"] == 1e-5
    for bad in ("tiny", "0", "-1", "nan"):
        result = cli("check", "linear", "--eps", bad)
        assert result.exit_code == 2 and result.stderr.startswith("gradcli: error: --eps")
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--method", "simpson"], "--method"),
        (["--mode", "half"], "--mode"),
        (["--samples", "0"], "--samples"),
        (["--max-memory", "0"], "--max-memory"),
    ],
)
def test_bad_numerics_options_exit_2(cli, args, where):
    result = cli("check", "conv2d", *args)
    assert result.exit_code == 2 and where in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_sweep_table_and_json(cli, cli_json):
    doc = cli_json("check", "attention", "--sweep")
    assert [r["eps"] for r in doc["sweep"]] == [10.0**-k for k in range(1, 13)]
    assert doc["best_eps"] in [r["eps"] for r in doc["sweep"]]
    assert {r["regime"] for r in doc["sweep"]} == {"truncation", "best", "round-off"}
    table = cli("check", "attention", "--sweep")
    assert table.exit_code == 0 and "best step" in table.stdout and "round-off" in table.stdout


def test_float32_table_shows_round_off(cli):
    result = cli("check", "conv2d", "--dtype", "float32")
    assert result.exit_code == 0 and "float32 round-off" in result.stdout


def test_max_memory_too_small_for_one_forward_is_refused(cli, write_spec):
    spec = write_spec("tensors:\n  X: {shape: [64, 64, 16]}\n  W: {shape: [3, 3, 16, 32]}\n")
    result = cli("check", "conv2d", spec, "--max-memory", "1")
    assert result.exit_code == 2 and "--max-memory" in result.stderr and "MB" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--budget", "-1"], "--budget"),
        (["--max-elements", "0"], "--max-elements"),
        (["--top", "0"], "--top"),
    ],  # fmt: skip
)
def test_bad_budget_and_limits_exit_2(cli, args, where):
    result = cli("check", "linear", *args)
    assert result.exit_code == 2 and result.stderr.startswith(f"gradcli: error: {where}")
