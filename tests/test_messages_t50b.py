"""Answer files as an outside tester fed them (t50b F2-F4): each refusal names what to change,
and a `check -o` archive is an answer file as a `compute -o` one is."""

from __future__ import annotations

import numpy as np

SPEC = """layer: linear
tensors:
  x: {shape: [3, 4], init: normal}
  W: {shape: [2, 4], init: normal}
  b: {shape: [2], init: normal}
"""


def _spec(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return str(spec)


def test_an_archive_with_wrt_says_to_drop_it_not_a_syntax_that_fails(tmp_path, cli):
    """It said "name the array as 'g.npz:KEY'", and 'g.npz:dW' was then 'file not found'."""
    spec = _spec(tmp_path)
    np.savez(tmp_path / "g.npz", dW=np.zeros((2, 4)))
    r = cli("check", "linear", spec, "--grads", str(tmp_path / "g.npz"), "--wrt", "W")
    assert r.exit_code == 2 and "drop --wrt" in r.stderr and ":KEY" not in r.stderr, r.stderr
    r = cli("check", "linear", spec, "--grads", str(tmp_path / "g.npz"))  # the twin: dropped
    assert r.exit_code == 1, r.stderr  # zeros: read, compared, wrong


def test_a_boolean_answer_names_its_kind_not_its_finiteness(tmp_path, cli):
    spec = _spec(tmp_path)
    np.savez(tmp_path / "g.npz", dW=np.ones((2, 4), dtype=bool))
    r = cli("check", "linear", spec, "--grads", str(tmp_path / "g.npz"))
    assert r.exit_code == 2 and "got an array of bool" in r.stderr, r.stderr


def test_a_check_archive_is_an_answer_file(tmp_path, cli):
    spec = _spec(tmp_path)
    out = tmp_path / "run.npz"
    assert cli("check", "linear", spec, "-o", str(out), "-q").exit_code == 0
    assert any(k.startswith("numeric_d") for k in np.load(out).files)
    r = cli("check", "linear", spec, "--grads", str(out), "-q")
    assert r.exit_code == 0, r.stderr
    wrong = dict(np.load(out))
    wrong["dW"] = 2 * wrong["dW"]  # the twin: its d<NAME> arrays are what is judged
    np.savez(tmp_path / "bad.npz", **wrong)
    assert cli("check", "linear", spec, "--grads", str(tmp_path / "bad.npz"), "-q").exit_code == 1


def test_init_refuses_a_json_name_for_its_yaml_template(tmp_path, cli):
    r = cli("init", "conv2d", "-o", str(tmp_path / "new.json"))
    assert r.exit_code == 2 and "name it .yaml" in r.stderr, r.stderr
    assert not (tmp_path / "new.json").exists()
    assert cli("init", "conv2d", "-o", str(tmp_path / "new.yaml")).exit_code == 0  # the twin
