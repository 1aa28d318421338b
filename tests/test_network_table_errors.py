"""A network's tables give each row's worst element with its own rel err, as a layer's table
does (outside test t51b F3: 'dfc.W ... 1 PASS' beside an element whose own rel err was 4.7e-10,
the 1 another element's, a bias of 1e-16 read as -4.7e-10)."""

from __future__ import annotations

import gradcli

MODEL = {
    "seed": 0,
    "inputs": {"x": {"shape": [4, 6], "init": "normal"}},
    "network": [
        {"layer": "linear", "name": "fc1", "tensors": {"W": {"shape": [5, 6]}}},
        {"layer": "batchnorm"},  # fc1's db is 0 in theory: its elements' rel err reads 1
        {"layer": "tanh"},
        {"layer": "linear", "name": "fc2", "tensors": {"W": {"shape": [3, 5]}}},
    ],
}


def test_each_row_shows_its_worst_elements_own_rel_err(tmp_path):
    import yaml

    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(MODEL))
    r = gradcli.check_network(str(path))
    local, e2e = r.table(width=200).split("end to end:", 1)
    for name, res in r.end_to_end.items():
        row = next(line for line in e2e.splitlines() if f" d{name} " in line)
        own = res.worst[0]["rel_error"]
        assert f"{own:.3g}" in row, (row, own, res.max_rel_error)
    for lc in r.layers:  # a layer's row: one of its tensors' worst element, with its own
        row = next(line for line in local.splitlines() if f" {lc.node.name} " in line)
        owns = {f"{t.worst[0]['rel_error']:.3g}" for t in lc.report.results.values()}
        assert any(o in row for o in owns), (row, owns)
