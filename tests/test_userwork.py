"""Checking the user's own work: answer files (--grads), implementations (--impl), custom
layers, diagnosis hints, worst-k lists, and user code that raises or returns garbage."""

import json
import shlex
import textwrap

import numpy as np
import pytest

from gradcli.checking.check import check, compute
from gradcli.inputs.spec import load_spec


def _module(tmp_path, body, name="mine.py"):
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    return path


def _answers(tmp_path, layer, bad=None, drop=()):
    """The built-in gradients of the default spec saved as answers, one element off by 1e-3."""
    spec = load_spec(layer, None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items() if n not in drop}
    if bad:
        name, idx = bad
        grads[name][idx] += 1e-3 * (1 + abs(grads[name][idx]))
    path = tmp_path / "answers.npz"
    np.savez(path, **grads)
    return path, grads


@pytest.mark.parametrize(
    ("layer", "tensor", "idx"), [("conv2d", "W", (1, 2, 0, 2)), ("attention", "X", (2, 3))]
)
def test_answer_file_with_one_wrong_element(cli, tmp_path, layer, tensor, idx):
    path, _ = _answers(tmp_path, layer, bad=(tensor, idx))
    result = cli("check", layer, "--grads", path, "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    r = doc["results"][tensor]
    assert not r["passed"] and r["worst_index"] == list(idx) and r["worst"][0]["index"] == list(idx)
    assert all(v["passed"] for n, v in doc["results"].items() if n != tensor)
    assert all(b["passed"] for b in doc["builtin"].values())  # ours, beside the answers


def test_right_answers_pass_and_missing_ones_are_not_checked(cli, tmp_path):
    path, _ = _answers(tmp_path, "conv2d", drop=("b",))
    doc = json.loads(cli("check", "conv2d", "--grads", path, "--format", "json").stdout)
    assert doc["passed"] and doc["not_checked"] == ["b"] and set(doc["results"]) == {"X", "W"}


def test_npy_answer_with_wrt_and_yaml_answers(cli, tmp_path):
    _, grads = _answers(tmp_path, "linear")
    np.save(tmp_path / "dW.npy", grads["W"])
    result = cli("check", "linear", "--grads", tmp_path / "dW.npy", "--wrt", "W")
    assert result.exit_code == 0, result.stderr
    yaml_path = tmp_path / "answers.yaml"
    yaml_path.write_text(f"dW: {grads['W'].tolist()}\nx: dx.npy\n")
    np.save(tmp_path / "dx.npy", grads["x"] * 2)
    doc = json.loads(cli("check", "linear", "--grads", yaml_path, "--format", "json").stdout)
    assert doc["results"]["W"]["passed"] and not doc["results"]["x"]["passed"]
    hint = doc["results"]["x"]["hints"][0]
    assert "dx = 2 x the right gradient" in hint["text"] and hint["cause"] == "scale:2"
    assert hint["verified"] is True


def test_answer_errors(cli, tmp_path):
    _, grads = _answers(tmp_path, "linear")
    np.savez(tmp_path / "bad.npz", W=grads["W"].T)
    result = cli("check", "linear", "--grads", tmp_path / "bad.npz")
    assert result.exit_code == 2 and "[4, 3]" in result.stderr and "[3, 4]" in result.stderr
    np.save(tmp_path / "one.npy", grads["W"])
    assert "--wrt" in cli("check", "linear", "--grads", tmp_path / "one.npy").stderr
    np.savez(tmp_path / "odd.npz", Z=grads["W"])
    assert "'Z' is not a tensor" in cli("check", "linear", "--grads", tmp_path / "odd.npz").stderr


LINEAR_OK = """
def forward(x, W, b):
    return W @ x + b

def backward(grad_output, x, W, b):
    return {"x": W.T @ grad_output, "W": np.outer(grad_output, x), "b": grad_output}
"""


def test_correct_implementation_passes(cli, tmp_path):
    path = _module(tmp_path, LINEAR_OK)
    doc = json.loads(cli("check", "linear", "--impl", path, "--format", "json").stdout)
    assert doc["passed"] and doc["forward"]["passed"]


CLASSIC_BUGS = [
    (
        "linear",
        LINEAR_OK.replace("np.outer(grad_output, x)", "np.outer(x, grad_output)"),
        {"x": [3], "W": [3, 3], "b": [3]},
        "W",
        "transposed",
    ),
    (
        "attention",
        """
def forward(X, W_Q, W_K, W_V):
    S = (X @ W_Q) @ (X @ W_K).T / np.sqrt(W_Q.shape[1])
    A = np.exp(S - S.max(axis=1, keepdims=True)); A /= A.sum(axis=1, keepdims=True)
    return A @ (X @ W_V)

def backward(grad_output, X, W_Q, W_K, W_V):
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V
    S = Q @ K.T / np.sqrt(W_Q.shape[1])
    A = np.exp(S - S.max(axis=1, keepdims=True)); A /= A.sum(axis=1, keepdims=True)
    dV = A.T @ grad_output; dA = grad_output @ V.T
    dS = A * dA
    dQ = dS @ K / np.sqrt(W_Q.shape[1]); dK = dS.T @ Q / np.sqrt(W_Q.shape[1])
    return {"X": dQ @ W_Q.T + dK @ W_K.T + dV @ W_V.T, "W_Q": X.T @ dQ, "W_K": X.T @ dK,
            "W_V": X.T @ dV}
""",
        None,
        "W_Q",
        "rowsum term of the softmax Jacobian",
    ),
]


@pytest.mark.parametrize(("layer", "body", "shapes", "tensor", "hint"), CLASSIC_BUGS)
def test_classic_bugs_get_the_right_hint(cli, tmp_path, layer, body, shapes, tensor, hint):
    path = _module(tmp_path, body)
    args = ["check", layer, "--impl", path, "--format", "json"]
    if shapes:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            "tensors:\n" + "".join(f"  {n}: {{shape: {s}}}\n" for n, s in shapes.items())
        )
        args.insert(2, spec)
    result = cli(*args)
    assert result.exit_code == 1, result.stderr
    r = json.loads(result.stdout)["results"][tensor]
    assert not r["passed"] and any(hint in h["text"] for h in r["hints"]), r["hints"]
    assert all(h["verified"] and h["cause"] for h in r["hints"]), r["hints"]


def test_missing_scale_and_missing_path_hints():
    spec = load_spec("attention", None)
    from gradcli.layers.attention import LAYER

    wrong = LAYER.variants(dict(spec.tensors), spec.options, spec.grad_output)
    _, grads = wrong["scale:no-1/sqrt(d_k)"]
    report = check(spec, grads=grads)
    hint = report.results["W_Q"].hints[0]
    assert "1/sqrt(d_k)" in hint and hint.cause == "scale:no-1/sqrt(d_k)" and hint.verified
    zero = {n: np.zeros_like(g) if n == "X" else g for n, g in compute(spec).gradients.items()}
    report = check(spec, grads=zero)
    hint = report.results["X"].hints[0]
    assert "missing term or path" in hint and getattr(hint, "cause", None) is None


def test_custom_layer_right_and_wrong(cli, tmp_path):
    spec = tmp_path / "tanh.yaml"
    spec.write_text("options: {scale: 2.0}\ntensors:\n  x: {shape: [3, 4]}\n")
    ok = _module(
        tmp_path,
        """
def forward(x, scale=1.0):
    return np.tanh(scale * x)

def backward(grad_output, x, scale=1.0):
    return {"x": grad_output * scale * (1 - np.tanh(scale * x) ** 2)}
""",
        "ok.py",
    )
    assert cli("check", "custom", spec, "--impl", ok).exit_code == 0
    assert cli("check", "custom", spec, "--impl", ok, "--method", "complex").exit_code == 0
    bad = tmp_path / "bad.py"
    bad.write_text(ok.read_text().replace("grad_output * scale *", "grad_output *"))
    result = cli("check", "custom", spec, "--impl", bad, "--format", "json")
    assert result.exit_code == 1
    hint = json.loads(result.stdout)["results"]["x"]["hints"][0]  # no built-in: the numeric
    assert "0.5 x numeric" in hint["text"] and hint["cause"] == "scale:1/2"


FWD = "def forward(x, W, b):\n    return {}\n\n"
BWD = "def backward(grad_output, x, W, b):\n    return {}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def forward(x, W, b:\n    pass\n", "SyntaxError"),
        (FWD.format("1 / 0") + BWD.format("{}"), "ZeroDivisionError"),
        (FWD.format("W @ x + b") + BWD.format("[1, 2]"), "dict"),
        (FWD.format("W @ x + b") + BWD.format("{'x': x, 'W': x, 'b': b}"), "shape"),
        (FWD.format("'hello'") + BWD.format("{}"), "numbers"),
        ("def forward(x, W, b):\n    return W @ x + b\n", "backward"),
    ],
)
def test_user_code_that_raises_or_returns_garbage(cli, tmp_path, body, message):
    path = tmp_path / "broken.py"
    path.write_text(body)
    result = cli("check", "linear", "--impl", path)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "broken.py" in result.stderr


def test_complex_step_refuses_a_forward_using_abs(cli, tmp_path):
    spec = tmp_path / "abs.yaml"
    spec.write_text("tensors:\n  x: [1.5, -2.0, 0.5]\n")
    path = _module(
        tmp_path,
        """
def forward(x):
    return np.abs(x) ** 2

def backward(grad_output, x):
    return {"x": grad_output * 2 * x}
""",
    )
    result = cli("check", "custom", spec, "--impl", path, "--method", "complex")
    assert result.exit_code == 2 and "not complex-safe" in result.stderr


def test_init_impl_skeleton_is_a_module(cli, tmp_path):
    for layer in ("linear", "conv1d", "conv2d", "attention", "custom"):
        text = cli("init", layer, "--impl").stdout
        compile(text, f"{layer}.py", "exec")
        assert "def forward" in text and "def backward" in text


def test_init_names_the_file_it_writes(cli, tmp_path):
    """The run line of what init -o writes names that file (the skeleton said my_linear.py
    whatever -o was), quoted for the shell; no file name can break the module or the YAML."""
    import ast

    import yaml

    for name in ("mine.py", 'odd """name\\ it.py'):
        path = tmp_path / name
        assert cli("init", "linear", "--impl", "-o", path).exit_code == 0
        doc = ast.get_docstring(ast.parse(path.read_text()))
        run = f"gradcli check linear --impl {shlex.quote(str(path))}"
        assert doc.splitlines()[1].strip() == run
        assert "my_linear.py" not in doc
    for layer in ("linear", "custom", "net"):
        path = tmp_path / f"{layer} spec.yaml"
        assert cli("init", layer, "-o", path).exit_code == 0
        text = path.read_text()
        assert f"gradcli check {layer} {shlex.quote(str(path))}" in text
        assert "THIS_FILE" not in text and yaml.safe_load(text)
    assert "my_linear.py" in cli("init", "linear", "--impl").stdout  # stdout: a name to use


def test_table_shows_worst_k_heatmap_hints_and_band(cli, tmp_path):
    path, _ = _answers(tmp_path, "conv2d", bad=("X", (0, 0, 1)))
    out = cli("check", "conv2d", "--grads", path, "--top", "3").stdout
    assert "dX: the failing element" in out and "error / tolerance" in out and "#" in out
    assert "good" in out and "dX[i=0, j=0, d=1]" in out


def test_explain_command(cli):
    out = cli("explain", "conv2d")
    assert out.exit_code == 0 and "rotated" in out.stdout and "(6, 5, 2)" in out.stdout
    doc = json.loads(cli("explain", "attention", "--format", "json").stdout)
    assert doc["layer"] == "attention" and any(s["title"] == "dL/dX" for s in doc["sections"])
    assert cli("explain", "nosuch").exit_code == 2


def _conv2d_answers(padding):
    spec = load_spec("conv2d", None) if not padding else None
    if padding:
        from pathlib import Path

        from gradcli.inputs.spec import build_spec
        from gradcli.layers import REGISTRY

        doc = {"options": {"padding": padding},
               "tensors": {"X": {"shape": [6, 6, 2]}, "W": {"shape": [3, 3, 2, 3]}}}  # fmt: skip
        spec = build_spec(REGISTRY["conv2d"], doc, base=Path.cwd(), source="<test>")
    return spec, {n: np.array(g) for n, g in compute(spec).gradients.items()}


def test_padding_border_bug_gets_the_border_hint():
    spec, grads = _conv2d_answers(padding=1)
    grads["X"][0, :, :] *= 0.5  # the first row, which the padding touches, comes out wrong
    r = check(spec, grads=grads).results["X"]
    assert not r.passed and any("borders" in h and "padding" in h for h in r.hints), r.hints


def test_overwritten_instead_of_summed_gets_the_overlap_hint():
    spec, grads = _conv2d_answers(padding=0)
    W, dZ = spec.tensors["W"], spec.grad_output
    Ho, Wo = dZ.shape[:2]
    dX = np.zeros(spec.tensors["X"].shape)
    for m in range(3):
        for n in range(3):  # the classic slip: = where += belongs
            dX[m : m + Ho, n : n + Wo] = dZ @ W[m, n].T
    grads["X"] = dX
    r = check(spec, grads=grads).results["X"]
    assert not r.passed and any("overlap" in h for h in r.hints), r.hints


def test_impl_object_selected_by_name(cli, tmp_path):
    path = _module(tmp_path, "class Mine:\n" + textwrap.indent(
        LINEAR_OK.replace("def forward(", "@staticmethod\ndef forward(").replace(
            "def backward(", "@staticmethod\ndef backward("), "    "))  # fmt: skip
    assert cli("check", "linear", "--impl", f"{path}:Mine").exit_code == 0
    result = cli("check", "linear", "--impl", f"{path}:Nope")
    assert result.exit_code == 2 and "Nope" in result.stderr


def test_causal_mask_after_the_softmax_is_caught(cli, tmp_path):
    """The classic slip: masking A after the softmax (rows no longer sum to 1). The built-in
    backward (right for the masked softmax) then disagrees with the numerical gradient of this
    forward, and the forward disagrees with ours."""
    path = _module(
        tmp_path,
        """
from gradcli.layers import REGISTRY

LAYER = REGISTRY["attention"]
OPTS = LAYER.make_options({"causal": True})

def forward(X, W_Q, W_K, W_V, causal=False):
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V
    S = Q @ K.T / np.sqrt(Q.shape[1])
    A = np.exp(S - S.max(axis=1, keepdims=True))
    A /= A.sum(axis=1, keepdims=True)
    A = A * np.tri(len(A))          # masked after the softmax
    return A @ V

def backward(grad_output, X, W_Q, W_K, W_V, causal=False):
    _, cache = LAYER.forward({"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V}, OPTS)
    g = LAYER.backward(grad_output, cache)
    return {n: g[n] for n in ("X", "W_Q", "W_K", "W_V")}
""",
    )
    spec = tmp_path / "causal.yaml"
    spec.write_text(
        "options: {causal: true}\ntensors:\n  X: {shape: [4, 3]}\n  W_Q: {shape: [3, 2]}\n"
        "  W_K: {shape: [3, 2]}\n  W_V: {shape: [3, 2]}\n"
    )
    result = cli("check", "attention", spec, "--impl", path, "--format", "json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert not doc["forward"]["passed"] and not doc["passed"]
    assert not all(r["passed"] for r in doc["results"].values())


def test_answer_npz_member_with_a_garbage_header_exits_2(cli, tmp_path):
    import zipfile

    (tmp_path / "W.npy").write_bytes(b"\x93NUMPY\x01\x00\x01\x00{")
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.write(tmp_path / "W.npy", "W.npy")
    result = cli("check", "linear", "--grads", tmp_path / "bad.npz")
    assert result.exit_code == 2 and "bad.npz" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix", ["", ":Mine"])
def test_output_never_overwrites_the_impl_or_the_answers(cli, tmp_path, suffix):
    path = _module(
        tmp_path, LINEAR_OK + "\nclass Mine:\n    forward = forward\n    backward = backward\n"
    )
    before = path.read_text()
    result = cli("check", "linear", "--impl", f"{path}{suffix}", "-o", path)
    assert result.exit_code == 2 and "--output" in result.stderr and path.read_text() == before
    answers, _ = _answers(tmp_path, "linear")
    result = cli("check", "linear", "--grads", answers, "-o", answers)
    assert result.exit_code == 2 and "--output" in result.stderr


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_a_compute_archive_is_an_answer_file(cli, tmp_path, offset):
    """`compute -o mine.npz`, edit dS, `check --grads mine.npz`: the archive's values (X, Q,
    output ...) are not taken for answers, its d<NAME> arrays are."""
    path = tmp_path / "mine.npz"
    assert cli("compute", "attention", "-o", path).exit_code == 0
    arrays = dict(np.load(path))
    arrays["dS"][1, 0] += offset * np.abs(arrays["dS"]).max()
    np.savez(path, **arrays)
    result = cli("check", "attention", "--grads", path, "--format", "json")
    assert result.exit_code == (1 if offset else 0), result.stderr
    doc = json.loads(result.stdout)
    assert set(doc["results"]) == {"X", "W_Q", "W_K", "W_V", "Q", "K", "V", "S", "A"}
    failing = [n for n, r in doc["results"].items() if not r["passed"]]
    assert failing == (["S"] if offset else [])


def test_the_worst_table_lists_the_failing_ones_and_keeps_its_ranking_when_narrow(cli, tmp_path):
    """Rows of no error under a 'worst' title said nothing (outside test t41a N7), and at 50
    columns every error column went, err/tol (the ranking) too, while the values kept 8
    digits (N6). Twin: where more fail than --top shows, the top ones, titled worst."""
    path, _ = _answers(tmp_path, "conv2d", bad=("X", (0, 0, 1)))
    out = cli("check", "conv2d", "--grads", path, env={"COLUMNS": "50"}).stdout
    table = out.split("dX: the failing element (by error / tolerance)")[1].split("error / tol")[0]
    assert "err/tol" in table and table.count("dX[") == 1, out
    bad = tmp_path / "bad.npz"
    with np.load(path) as z:
        answers = {k: z[k] for k in z.files}
    answers["X"] = answers["X"] * 2 + 1
    np.savez(bad, **answers)
    out = cli("check", "conv2d", "--grads", bad, "--top", "3").stdout
    assert "dX: the 3 worst elements (by error / tolerance)" in out, out
