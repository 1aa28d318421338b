"""Issue 12 (and 11): the user's code (--impl modules, custom layers) never crashes gradcli,
never ends it, never writes into its result. Whatever a module raises (exits included) or
returns is one line on stderr naming the user's function, exit 2 (Ctrl-C: 130); what it prints
goes to stderr; a custom layer's options of any YAML type are usable and written to JSON safely
or refused with one line naming the key.

Each refusal has a twin: the same module without the fault passes, so a test here fails when
the guard refuses too much as well as when it lets something through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = "tensors:\n  x: [0.5, -1.5, 2.0]\n"
GOOD_FWD = "def forward(x):\n    return 2 * x\n"
GOOD_BWD = "def backward(grad_output, x):\n    return {'x': 2 * grad_output}\n"
GOOD = GOOD_FWD + GOOD_BWD


def _files(tmp_path: Path, body: str, spec: str = SPEC) -> tuple[Path, Path]:
    (tmp_path / "spec.yaml").write_text(spec)
    module = tmp_path / "mylayer.py"
    module.write_text("import sys, os\nimport numpy as np\n\n" + textwrap.dedent(body))
    return tmp_path / "spec.yaml", module


def _run(cli, tmp_path, body, *args, cmd="check", spec=SPEC):
    spec_path, module = _files(tmp_path, body, spec)
    return cli(cmd, "custom", spec_path, "--impl", module, "--format", "json", *args)


def _refused(result, *needles):
    """Exit 2, nothing on stdout, exactly one line on stderr naming mylayer.py and needles."""
    assert result.exit_code == 2, (result.exit_code, result.stdout[:300], result.stderr[:500])
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:1000]
    assert lines[0].startswith("gradcli: error: ") and "mylayer.py" in lines[0], lines[0]
    assert "Traceback" not in lines[0] and len(lines[0]) < 700, lines[0][:700]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_the_twin_passes(cli, tmp_path):
    result = _run(cli, tmp_path, GOOD)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True and result.stderr == ""


EXITS = {
    "sys.exit(0)": ("sys.exit(0)", "SystemExit(0)"),
    "sys.exit(None)": ("sys.exit()", "SystemExit(None)"),
    "SystemExit(3)": ("raise SystemExit(3)", "SystemExit(3)"),
    "sys.exit(text)": ("sys.exit('done\\nbye')", "SystemExit('done"),
    "GeneratorExit": ("raise GeneratorExit()", "GeneratorExit"),
    "BaseException": ("raise BaseException('odd')", "BaseException: odd"),
    "subclass": ("raise type('Stop', (BaseException,), {})('now')", "Stop: now"),
    "StopIteration": ("raise StopIteration", "StopIteration"),
}


@pytest.mark.parametrize("where", ["import", "forward", "backward"])
@pytest.mark.parametrize("case", list(EXITS))
def test_exits_and_base_exceptions_are_one_line(cli, tmp_path, where, case):
    statement, needle = EXITS[case]
    body = {
        "import": f"{statement}\n" + GOOD,
        "forward": f"def forward(x):\n    {statement}\n" + GOOD_BWD,
        "backward": GOOD_FWD + f"def backward(grad_output, x):\n    {statement}\n",
    }[where]
    line = _refused(_run(cli, tmp_path, body), needle, f"{where} ", "mylayer.py:")
    assert statement.split("(")[0] in line  # the user's own line is quoted


def test_keyboard_interrupt_in_user_code_is_ctrl_c(cli, tmp_path):
    body = "def forward(x):\n    raise KeyboardInterrupt\n" + GOOD_BWD
    result = _run(cli, tmp_path, body)
    assert result.exit_code == 130 and result.stdout == ""
    assert result.stderr.splitlines() == ["gradcli: interrupted"]


BAD_MESSAGES = {
    "str raises": (
        "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n",
        "E: <its message cannot be shown: RuntimeError>",
    ),
    "str and repr raise": (
        "class E(Exception):\n    def __str__(self):\n        raise ValueError\n"
        "    def __repr__(self):\n        raise ValueError\n",
        "cannot be shown: ValueError",
    ),
    "str exits": (
        "class E(Exception):\n    def __str__(self):\n        sys.exit(0)\n",
        "cannot be shown: SystemExit",
    ),
    "str not text": (
        "class E(Exception):\n    def __str__(self):\n        return 42\n",
        "cannot be shown: TypeError",
    ),
    "multi-line": ("E = lambda: ValueError('one\\ntwo\\r\\nthree')\n",
                   "ValueError: one\\ntwo\\r\\nthree"),  # escaped, as the README says
    "escape codes": ("E = lambda: ValueError('a\\x1b[2Jb\\x00c')\n", "\\x1b[2Jb\\x00c"),
    "huge": ("E = lambda: ValueError('y' * 10**6)\n", "(1,000,000 characters)"),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_any_exception_message_is_one_short_line(cli, tmp_path, case):
    prelude, needle = BAD_MESSAGES[case]
    body = prelude + "def forward(x):\n    raise E()\n" + GOOD_BWD
    _refused(_run(cli, tmp_path, body), "forward raised", needle, "mylayer.py:")


def test_an_exception_message_that_prints_keeps_stdout_clean(cli, tmp_path):
    body = (
        "class E(Exception):\n    def __str__(self):\n        print('{oops')\n        return 'x'\n"
    )
    result = _run(cli, tmp_path, body + "def forward(x):\n    raise E()\n" + GOOD_BWD)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == "{oops"  # the user's own output, then the error
    assert "forward raised E: x" in result.stderr.splitlines()[1]


def test_recursion_and_memory_errors_are_one_line(cli, tmp_path):
    body = "def forward(x):\n    return forward(x)\n" + GOOD_BWD
    _refused(_run(cli, tmp_path, body), "RecursionError", "frames of mylayer.py deep")
    body = "def forward(x):\n    return np.empty(2**47)\n" + GOOD_BWD
    _refused(_run(cli, tmp_path, body), "forward raised MemoryError")


FORWARD_RESULTS = {  # forward's return expression -> the refusal's words (None: accepted)
    "complex": ("x * (1 + 1j)", "complex (complex128) for real inputs"),
    "complex, zero imaginary": ("x.astype(complex)", "complex"),
    "nan": ("np.where(x > 0, x, np.nan)", "returned nan at index [1] (1 of 3"),
    "inf": ("x / 0.0 * np.sign(x)", "returned inf at index [0]"),
    "None": ("None", "must be numbers (an array), got NoneType"),
    "text": ("'hello'", "got str"),
    "generator": ("(v for v in x)", "got generator"),
    "object 0-d": ("np.array(None, dtype=object)", "got an array of object"),
    "ragged": ("[[1.0], [1.0, 2.0]]", "got list"),
    "dict": ("{'out': x}", "got dict"),
    "bool": ("x > 0", "bool"),
    "masked": ("np.ma.masked_array(2 * x, mask=[0, 1, 0])", "masked array with 1 masked value"),
    "empty": ("x[:0]", "returned an empty array (shape [0])"),
    "40 axes": ("np.zeros((1,) * 40) + x.sum()", "returned an array of 40 axes; at most 32"),
    "__array__ raises": ("Weird()", "forward raised ZeroDivisionError"),
    "list": ("list(2 * x)", None),
    "unmasked": ("np.ma.masked_array(2 * x)", None),
    "subclass": ("(2 * x).view(Sub)", None),
    "__array__": ("Fine(2 * x)", None),
}
CLASSES = """
class Sub(np.ndarray):
    pass

class Weird:
    def __array__(self, dtype=None, copy=None):
        return 1 / 0

class Fine:
    def __init__(self, a):
        self.a = a
    def __array__(self, dtype=None, copy=None):
        return self.a
"""


@pytest.mark.parametrize("case", list(FORWARD_RESULTS))
def test_forward_results(cli, tmp_path, case):
    expr, needle = FORWARD_RESULTS[case]
    result = _run(cli, tmp_path, CLASSES + f"def forward(x):\n    return {expr}\n" + GOOD_BWD)
    if needle is None:
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["passed"] is True
    else:
        _refused(result, "forward", needle)


def test_an_output_of_32_axes_is_the_twin_of_40(cli, tmp_path):
    body = "def forward(x):\n    return (2 * x).reshape((1,) * 31 + (3,))\n"
    body += "def backward(grad_output, x):\n    return {'x': 2 * grad_output.reshape(3)}\n"
    result = _run(cli, tmp_path, body)
    assert result.exit_code == 0, result.stderr


def test_coroutine_forward_is_refused_without_a_second_line(cli, tmp_path):
    body = "async def forward(x):\n    return 2 * x\n" + GOOD_BWD
    _refused(_run(cli, tmp_path, body), "got coroutine")  # no "never awaited" warning line


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ("n = [0]\ndef forward(x):\n    n[0] += 1\n    return np.ones(n[0]) * x.sum()\n", "shape"),
        ("n = [0]\ndef forward(x):\n    n[0] += 1\n    return (2 * x).astype(DTYPE[n[0] > 3])\n",
         "float32"),
        ("def forward(x):\n    return x[x > 0]\n", "shape"),  # value-dependent: the probe differs
    ],
)  # fmt: skip
def test_forward_output_that_changes_between_calls(cli, tmp_path, state, needle):
    state = "DTYPE = {False: 'f8', True: 'f4'}\n" + state
    line = _refused(_run(cli, tmp_path, state + GOOD_BWD), "forward returned", needle)
    # (a call that changes it, or values of gradcli's beside the spec's first call)
    assert "earlier call" in line or "at other values of the same shapes" in line


BACKWARD_RESULTS = {
    "list": ("[2 * grad_output]", "must return a dict of gradients", "got list"),
    "None": ("None", "must return a dict", "got NoneType"),
    "generator": ("(g for g in [grad_output])", "must return a dict", "generator"),
    "unknown key": ("{'x': 2 * grad_output, 'y': 1.0}", "for 'y', which is not a tensor", "x"),
    "typo": ("{'X': 2 * grad_output}", "for 'X', which is not a tensor", "tensors: x"),
    "int key": ("{'x': 2 * grad_output, 0: 1.0}", "for 0, which is not a tensor", "x"),
    "None value": ("{'x': None}", "backward's 'x' must be numbers", "NoneType"),
    "wrong shape": ("{'x': grad_output[:2]}", "shape [2]", "shape [3]"),
    "complex": ("{'x': 2j * grad_output}", "complex", "real inputs"),
    "items raise": ("Bad()", "backward raised KeyError", "mylayer.py"),
}
MAPPING = """
from collections.abc import Mapping

class Bad(Mapping):
    def __getitem__(self, k):
        raise KeyError(k)
    def __iter__(self):
        return iter(['x'])
    def __len__(self):
        return 1
"""


@pytest.mark.parametrize("case", list(BACKWARD_RESULTS))
def test_backward_results(cli, tmp_path, case):
    expr, *needles = BACKWARD_RESULTS[case]
    body = MAPPING + GOOD_FWD + f"def backward(grad_output, x):\n    return {expr}\n"
    _refused(_run(cli, tmp_path, body), "backward", *needles)


def test_backward_returning_integers_never_crashes(cli, tmp_path):
    right = GOOD_FWD + "def backward(grad_output, x):\n    return {'x': np.full(3, 2)}\n"
    spec = "tensors:\n  x: [0.5, -1.5, 2.0]\ngrad_output: [1.0, 1.0, 1.0]\n"
    assert _run(cli, tmp_path, right, spec=spec).exit_code in (0, 1)
    wrong = GOOD_FWD + "def backward(grad_output, x):\n    return {'x': np.arange(3)}\n"
    assert _run(cli, tmp_path, wrong, spec=spec).exit_code == 1


PRINTS = """
print('{"import": 1}')
def forward(x):
    print('{"forward": 1}')
    sys.stdout.write('partial ')
    return 2 * x

def backward(grad_output, x):
    print('backward says hi', file=sys.stdout)
    return {'x': 2 * grad_output}
"""


@pytest.mark.parametrize("cmd", ["check", "compute"])
def test_what_user_code_prints_goes_to_stderr(cli, tmp_path, cmd):
    result = _run(cli, tmp_path, PRINTS, cmd=cmd)
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # stdout is the result alone
    assert '{"import": 1}' in result.stderr and '{"forward": 1}' in result.stderr
    assert "backward says hi" in result.stderr


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradcli", *args],
        cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip


def test_c_level_writes_to_fd_1_go_to_stderr(tmp_path):
    """A C extension writes to file descriptor 1, not sys.stdout: redirected too, and C's
    buffer flushed to stderr before gradcli's stdout is put back."""
    body = """
import ctypes
libc = ctypes.CDLL(None)
os.write(1, b'fd1 at import\\n')
def forward(x):
    os.write(1, b'fd1 in forward\\n')
    libc.printf(b'printf without a newline ')
    return 2 * x
def backward(grad_output, x):
    libc.puts(b'puts in backward')
    return {'x': 2 * grad_output}
"""
    spec, module = _files(tmp_path, body)
    proc = _subprocess(
        ["check", "custom", str(spec), "--impl", str(module), "-f", "json"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["passed"] is True
    for text in (b"fd1 at import", b"fd1 in forward", b"printf without", b"puts in backward"):
        assert text in proc.stderr and text not in proc.stdout


def test_os_exit_is_refused_in_gradcli_but_not_in_a_forked_child(tmp_path):
    body = GOOD_BWD + "def forward(x):\n    os._exit(0)\n"
    spec, module = _files(tmp_path, body)
    proc = _subprocess(["check", "custom", str(spec), "--impl", str(module)], tmp_path)
    lines = proc.stderr.decode().splitlines()
    assert (proc.returncode, proc.stdout, len(lines)) == (2, b"", 1), proc.stderr[-500:]
    assert "forward called os._exit(0)" in lines[0]
    child = GOOD_BWD + textwrap.dedent("""
        def forward(x):
            pid = os.fork()
            if pid == 0:
                os._exit(7)  # the child really exits, and never runs gradcli's code
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 7
            return 2 * x
        """)
    spec, module = _files(tmp_path, child)
    proc = _subprocess(
        ["check", "custom", str(spec), "--impl", str(module), "-f", "json"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["passed"] is True


def test_numpy_warnings_are_shown_once_on_one_line(cli, tmp_path):
    body = "def forward(x):\n    return np.where(x > 0, np.log(np.abs(x) * (x > 0)), x)\n"
    body += "def backward(grad_output, x):\n"
    body += "    return {'x': grad_output * np.where(x > 0, 1 / x, 1.0)}\n"
    result = _run(cli, tmp_path, body, cmd="compute")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)
    checked = _run(cli, tmp_path, body)  # check silences numpy's warnings: no extra lines
    assert checked.exit_code == 0 and checked.stderr == "", checked.stderr
    warned = [line for line in result.stderr.splitlines() if "divide by zero" in line]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith("gradcli: warning: mylayer.py: forward warned: RuntimeWarning")
    assert "mylayer.py:5" in warned[0]


@pytest.mark.parametrize("cmd", ["check", "compute"])
def test_a_warning_that_explains_a_failure_joins_its_line(cli, tmp_path, cmd):
    body = "def forward(x):\n    return np.sqrt(x)\n" + GOOD_BWD
    result = _run(cli, tmp_path, body, cmd=cmd)
    _refused(result, "returned nan", "it warned: RuntimeWarning: invalid value")


STATE = {  # module-level code that changes the process for its own purposes
    "numpy raises": "np.seterr(all='raise')",
    "warnings are errors": "import warnings\nwarnings.simplefilter('error')",
    "recursion limit": "sys.setrecursionlimit(120)",
    "stdout replaced": "sys.stdout = None",
    "stderr replaced": "sys.stderr = open(os.devnull, 'w')",
    "working folder": "os.chdir('/')",
    "Ctrl-C ignored": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)",
}


@pytest.mark.parametrize("case", list(STATE))
def test_state_the_user_changes_is_put_back(cli, tmp_path, monkeypatch, case):
    """gradcli's own numerics (overflow in its round-off estimates, 0/0 in relative errors)
    and its output do not run under the user's settings."""
    import signal

    spec_path, module = _files(
        tmp_path, STATE[case] + "\n" + GOOD, "tensors:\n  x: [0.0, 1e-300, 2.0]\n"
    )
    monkeypatch.chdir(tmp_path)  # the spec and -o relative to the working folder
    handler = signal.getsignal(signal.SIGINT)
    result = cli("check", "custom", spec_path.name, "--impl", module, "-o", "out.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["passed"] is True
    assert np.geterr()["divide"] == "warn" and sys.getrecursionlimit() >= 1000
    assert Path.cwd() == tmp_path and signal.getsignal(signal.SIGINT) is handler


def test_a_module_imports_like_a_script(cli, tmp_path):
    """Its folder's helper modules import; a dataclass with postponed annotations works
    (the module is in sys.modules while it runs)."""
    (tmp_path / "mylayer_helpers.py").write_text("def twice(a):\n    return 2 * a\n")
    body = textwrap.dedent("""
        from __future__ import annotations
        import dataclasses
        from mylayer_helpers import twice

        @dataclasses.dataclass
        class Scale:
            k: float = 2.0

        def forward(x):
            return twice(x) * Scale().k / 2

        def backward(grad_output, x):
            return {'x': twice(grad_output)}
        """)
    spec, module = _files(tmp_path, GOOD)
    module.write_text(body)
    result = cli("check", "custom", spec, "--impl", module)
    assert result.exit_code == 0, result.stderr


def test_an_object_holder_is_named_and_its_lookups_guarded(cli, tmp_path):
    body = textwrap.dedent("""
        class Mine:
            @staticmethod
            def forward(x):
                sys.exit(0)
            @staticmethod
            def backward(grad_output, x):
                return {'x': 2 * grad_output}

        class Odd:
            def __getattr__(self, name):
                raise RuntimeError('no ' + name)
        odd = Odd()

        def __getattr__(name):
            raise RuntimeError('module has no ' + name)
        """)
    spec, module = _files(tmp_path, body)
    args = ["check", "custom", spec, "--impl"]
    _refused(cli(*args, f"{module}:Mine"), "Mine.forward raised SystemExit(0)")
    _refused(cli(*args, f"{module}:odd"), "import raised RuntimeError: no forward")
    _refused(cli(*args, f"{module}:nothing"), "import raised RuntimeError: module has no nothing")


OPTIONS = {  # YAML -> what JSON shows ("options"), and what the forward receives
    "date": ("{when: 2024-01-02}", {"when": "2024-01-02"}, "date"),
    "timestamp": ("{when: 2024-01-02T03:04:05Z}", {"when": "2024-01-02T03:04:05+00:00"},
                  "datetime"),
    "nan": ("{t: .nan}", {"t": None}, "float"),
    "inf": ("{t: -.inf}", {"t": None}, "float"),
    "set": ("{s: !!set {b, a, 3}}", {"s": ["a", "b", 3]}, "set"),
    "omap": ("{o: !!omap [{a: 1}, {b: 2}]}", {"o": [["a", 1], ["b", 2]]}, "list"),
    "nested": ("{m: {a: {b: [1, 2]}, 3: x}}", {"m": {"a": {"b": [1, 2]}, "3": "x"}}, "dict"),
    "date key": ("{m: {2024-01-01: a}}", {"m": {"2024-01-01": "a"}}, "dict"),
    "null": ("{n: null}", {"n": None}, "NoneType"),
    "big int": ("{k: 1000000000000000000000000000000}", {"k": 10**30}, "int"),
    "alias": ("{b: &b [1, 2], c: [*b, *b]}", {"b": [1, 2], "c": [[1, 2], [1, 2]]}, "list"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OPTIONS))
def test_custom_options_of_any_yaml_type_reach_the_user_and_json(cli, tmp_path, case):
    yaml_options, shown, kind = OPTIONS[case]
    name = next(iter(shown))
    body = textwrap.dedent(f"""
        import datetime
        def forward(x, **options):
            assert type(options[{name!r}]).__name__ == {kind!r}, type(options[{name!r}])
            return 2 * x
        def backward(grad_output, x, **options):
            return {{'x': 2 * grad_output}}
        """)
    for cmd in ("check", "compute"):
        spec = f"options: {yaml_options}\n" + SPEC
        result = _run(cli, tmp_path, body, cmd=cmd, spec=spec)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["options"] == shown


REFUSED_OPTIONS = {
    "binary": ("{blob: !!binary aGVsbG8=}", "options.blob", "binary data"),
    "recursive list": ("{r: &a [1, *a]}", "options.r[1]", "contains itself"),
    "recursive map": ("{r: &a {k: *a}}", "options.r.k", "contains itself"),
    "number as name": ("{1: 2}", "options.1", "must be text"),
    "tensor's name": ("{x: 3}", "options.x", "a tensor of this layer"),
    "grad_output": ("{grad_output: 3}", "options.grad_output", "upstream gradient"),
    "keys alike in JSON": ("{m: {1: a, '1': b}}", "options.m", "two keys read '1'"),
}


@pytest.mark.parametrize("case", list(REFUSED_OPTIONS))
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_custom_options_without_a_json_form_are_refused(cli, tmp_path, case, fmt):
    yaml_options, *needles = REFUSED_OPTIONS[case]
    spec_path, module = _files(tmp_path, GOOD, f"options: {yaml_options}\n" + SPEC)
    result = cli("check", "custom", spec_path, "--impl", module, "--format", fmt)
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "spec.yaml" in lines[0], result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_an_alias_bomb_in_custom_options_is_refused_quickly(cli, tmp_path):
    from test_malformed import bomb

    spec_path, module = _files(tmp_path, GOOD, f"options: {{b: {bomb(7)}}}\n" + SPEC)
    result = cli("check", "custom", spec_path, "--impl", module, "--format", "json")
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert "options.b" in line and "100,000" in line, line  # YAML's own bound, or the options'


def test_options_over_the_bound_are_refused_even_when_yaml_allows_them():
    from gradcli.errors import SpecError
    from gradcli.user.options import custom_options

    shared = [1.0] * 1000
    custom_options({"ok": [shared] * 99}, ("x",))
    with pytest.raises(SpecError, match="more than 100,000 values"):
        custom_options({"big": [shared] * 101}, ("x",))


def test_a_users_thread_or_atexit_hook_neither_hangs_nor_writes_after_the_result(tmp_path):
    """A module that leaves a non-daemon thread running would keep the interpreter waiting at
    exit; an atexit hook that prints would land after the JSON. gradcli leaves once its
    result is out."""
    body = GOOD_BWD + textwrap.dedent("""
        import atexit, threading, time
        threading.Thread(target=lambda: time.sleep(3600)).start()
        atexit.register(lambda: print('bye from atexit'))
        def forward(x):
            return 2 * x
        """)
    spec, module = _files(tmp_path, body)
    proc = _subprocess(
        ["check", "custom", str(spec), "--impl", str(module), "-f", "json"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["passed"] is True  # nothing after the document
    broken = body.replace("return 2 * x", "return 3 * x")  # twin: the exit code still holds
    spec, module = _files(tmp_path, broken)
    proc = _subprocess(["check", "custom", str(spec), "--impl", str(module)], tmp_path)
    assert proc.returncode == 1, proc.stderr[-500:]


def test_a_child_forked_by_user_code_never_runs_the_rest_of_gradcli(tmp_path):
    """The child of an os.fork() in the backward came back into gradcli and printed a second
    verdict on stdout; it now ends where the user's call returns."""
    body = textwrap.dedent("""
        def forward(x):
            return 2 * x
        def backward(grad_output, x):
            if os.fork() == 0:
                print('child')
            return {'x': 2 * grad_output}
        """)
    spec, module = _files(tmp_path, body)
    proc = _subprocess(["check", "custom", str(spec), "--impl", str(module), "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.decode().splitlines() == [
        "PASS  custom: the gradient matches the numerical one"
    ]
