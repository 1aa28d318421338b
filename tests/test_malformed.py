"""Issue 6: a systematic corpus of malformed inputs (tests/malformed/*.yaml, one file per category).

Every case must exit 2 with nothing on stdout and exactly one line on stderr, "gradcli: error:
SOURCE: KEY: ...", naming the source (the spec file, <stdin> or the --option) and the offending
key, with no traceback, without expanding the input into the message, in well under a second.

A corpus entry: ``id``, ``layer``, ``expect`` (substrings of the error line; the spec's name or
<stdin> is added), optional ``cmd`` (compute), ``args``, ``spec`` (the spec text, written to
bad.yaml; ``${NAME}`` is one of VARS), ``spec_from: stdin | default`` (the text on stdin, or no
SPEC argument: the embedded default), ``spec_arg`` (a path given as SPEC instead), ``encoding``
(of the spec bytes, default utf-8), ``skip_if_root`` and ``bug`` (a known gradcli bug: the case is
a strict xfail). The tensor files the specs name are made by ``_data_files``.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from string import Template

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "malformed"
SPEC = "bad.yaml"
SECONDS = 1.5  # "well under a second", plus slack for a shared machine


def bomb(levels: int, width: int = 10) -> str:
    """A nested alias list of width**levels floats in a few hundred bytes (billion laughs)."""
    s = "&a0 [" + ", ".join(["1.0"] * width) + "]"
    for k in range(1, levels):
        s = f"&a{k} [{s}" + f", *a{k - 1}" * (width - 1) + "]"
    return s


VARS = {
    "LIN": "  x: [1.0, 2.0]\n  W: [[1.0, 2.0]]\n",  # valid linear tensors: output (1,)
    "C1": "  x: [1.0, 2.0, 3.0, 4.0]\n  w: [1.0, 0.5]\n",  # valid conv1d (the seed's form)
    "C2": "  X: {shape: [4, 4, 2]}\n  W: {shape: [2, 2, 2, 3]}\n",  # valid conv2d
    "AT": "  X: {shape: [3, 4]}\n"
    + "".join(f"  {w}: {{shape: [4, 2]}}\n" for w in ("W_Q", "W_K", "W_V")),  # valid attention
    "BILLION": bomb(9),  # 10**9 floats in ~600 bytes
    "MILLION": bomb(6),  # 10**6: a ~5 MB line if a message expands it, yet quick to fail
    "BOMB3": bomb(3),
    "BOMB4": bomb(4),  # 11,111 values: under the limit once, not ten times
    "DIGITS400": "1" + "0" * 400,
    "DIGITS5000": "1" + "0" * 5000,  # beyond Python's int <-> str limit (4300 digits)
    "LONGNAME": "a" * 5000,
    "FLOATS2000": ", ".join(["1.5"] * 2000),
    "NEST33": "[" * 33 + "1.0" + "]" * 33,
    "NEST65": "[" * 65 + "1.0" + "]" * 65,  # deeper than numpy can make an array of
    "NEST300": "[" * 300 + "1.0" + "]" * 300,
    "MAPS300": "{a: " * 300 + "1" + "}" * 300,
    "ONES33": ", ".join(["1"] * 33),
}
ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")


def _sub(text: str) -> str:
    return Template(text).safe_substitute(VARS)  # ${marker} stays for the test to fill in


def _corpus() -> list:
    params = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()):
            marks = [ROOT] if case.get("skip_if_root") else []
            if "bug" in case:
                marks.append(pytest.mark.xfail(strict=True, reason="BUG: " + _sub(case["bug"])))
            spec = case.get("spec")
            spec = None if spec is None else _sub(spec).encode(case.get("encoding", "utf-8"))
            how = case.get("spec_arg", case.get("spec_from", "file"))
            args = [str(a) for a in case.get("args", [])]
            values = (case.get("cmd", "compute"), case["layer"], spec, case["expect"], args, how)
            params.append(pytest.param(*values, id=case["id"], marks=marks))
    return params


CASES = _corpus()


class _Touch:
    """Unpickling this runs ``touch MARKER``: a pickle that must never be loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _npy_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def _header_only(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    meta = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, meta)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _data_files(d: Path, marker: Path) -> None:
    rng = np.random.default_rng(6)
    evil = np.empty(1, dtype=object)
    evil[0] = _Touch(marker)
    valid = _npy_bytes(np.arange(100.0))
    files = {
        "x.npy": _npy_bytes(np.array([1.0, 2.0])),
        "bool.npy": _npy_bytes(np.array([True, False])),
        "str.npy": _npy_bytes(np.array(["1.0", "2.0"])),
        "obj.npy": _npy_bytes(np.array([1.0, {"a": 1}], dtype=object), allow_pickle=True),
        "evil.npy": _npy_bytes(evil, allow_pickle=True),
        "complex.npy": _npy_bytes(np.array([1 + 2j, 3 - 1j])),
        "int.npy": _npy_bytes(np.array([1, 2])),
        "struct.npy": _npy_bytes(np.zeros(2, dtype=[("a", "f8"), ("b", "f8")])),
        "pickled.npy": pickle.dumps(_Touch(marker)),
        "truncated.npy": valid[:200],
        "header-cut.npy": valid[:20],
        "garbage.npy": rng.bytes(300),
        "csv.npy": b"1.0,2.0\n3.0,4.0\n",
        "empty.npy": b"",
        "nan.npy": _npy_bytes(np.array([1.0, np.nan])),
        "zero.npy": _npy_bytes(np.zeros((0, 2))),
        "T0.npy": _npy_bytes(np.zeros((0, 4))),
        "ld.npy": _npy_bytes(np.array([np.longdouble("1e4000"), 1.0], dtype=np.longdouble)),
        "three.npy": _npy_bytes(np.zeros(3)),
        "huge.npy": _header_only((100_000, 100_000)),
        "unclosed.npy": b"\x93NUMPY\x01\x00\x01\x00{",  # a header of one "{"
        "plain.npz": _npy_bytes(np.array([1.0, 2.0])),
        "garbage.npz": b"PK\x03\x04" + rng.bytes(300),
        "unreadable.npy": _npy_bytes(np.array([1.0, 2.0])),
        # read for what the header declares (issue 12): checked before any data is read
        "trailing.npy": _npy_bytes(np.array([1.0, 2.0])) + b"\0" * 64,
        "void-gib.npy": _header_only((2,), "|V1073741824"),
        "unicode.npy": _npy_bytes(np.array(["1.0", "2.0"])),
        "datetime.npy": _npy_bytes(np.array(["2026-01-01"], dtype="datetime64[D]")),
        "header-4gb.npy": b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr': '<f8', ",
        "version9.npy": b"\x93NUMPY\x09\x00" + _npy_bytes(np.zeros(2))[8:],
        "declares-1e7.npy": _header_only((10_000_000,)) + b"\0" * 16,
        "axes33.npy": _header_only((1,) * 33) + b"\0" * 8,
        "negative.npy": _header_only((-1, 2)) + b"\0" * 16,
        "impl.py": b"def forward(x, **o):\n    return 2 * x\n\n\n"
        b"def backward(g, x, **o):\n    return {'x': 2 * g}\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "unreadable.npy").chmod(0)
    (d / "adir").mkdir()
    np.savez(d / "arrays.npz", x=np.array([1.0, 2.0]), inf=np.array([np.inf, 1.0]))
    np.savez(d / "objarc.npz", x=np.array([None, 1.0], dtype=object))
    np.savez(d / "big.npz", x=np.ones(1000))
    (d / "truncated.npz").write_bytes((d / "big.npz").read_bytes()[:400])
    _zip(d / "huge.npz", {"x.npy": _header_only((100_000, 100_000))})
    _zip(d / "junkmember.npz", {"x.npy": b"\x93NUMPY\x01\x00garbage"})
    _zip(d / "unclosed.npz", {"x.npy": (d / "unclosed.npy").read_bytes()})
    _zip(d / "void.npz", {"x.npy": files["void-gib.npy"]}, zipfile.ZIP_DEFLATED)
    _zip(d / "trailing.npz", {"x.npy": files["trailing.npy"]}, zipfile.ZIP_DEFLATED)
    _zip(d / "declares.npz", {"x.npy": files["declares-1e7.npy"]}, zipfile.ZIP_DEFLATED)
    _zip(d / "axes33.npz", {"x.npy": files["axes33.npy"]})
    _zip(d / "bzip2.npz", {"x.npy": files["x.npy"]}, zipfile.ZIP_BZIP2)
    _zip(d / "header-4gb.npz", {"x.npy": files["header-4gb.npy"]})
    _zip(d / "many.npz", {f"{'n' * 300}{i}.npy": files["x.npy"] for i in range(30)})


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [p.id for p in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(("cmd", "layer", "spec", "needles", "args", "how"), CASES)
def test_malformed_input_exits_2(cli, tmp_path, monkeypatch, cmd, layer, spec, needles, args, how):
    monkeypatch.chdir(tmp_path)  # relative tensor paths of a stdin spec start here
    marker = tmp_path / "MARKER"
    _data_files(tmp_path, marker)
    stdin, spec_args, needles = None, [], list(needles)
    if spec is not None:
        spec = spec.replace(b"${marker}", str(marker).encode())
    if how == "file":
        Path(SPEC).write_bytes(spec)
        spec_args, needles = [SPEC], [SPEC, *needles]
    elif how == "stdin":
        stdin, spec_args, needles = spec.decode(), ["-"], ["<stdin>", *needles]
    elif how != "default":
        spec_args = [how]  # a path that is not a spec file
    start = time.perf_counter()
    result = cli(cmd, layer, *spec_args, *args, input=stdin)
    elapsed = time.perf_counter() - start
    assert not marker.exists(), "something was constructed or unpickled"
    assert result.exit_code == 2, (result.exit_code, result.stderr[:500])
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:500]
    line = lines[0]
    assert line.startswith("gradcli: error:"), line[:300]
    # a message may quote the input, never expand it (alias bombs)
    assert len(line) <= 1000 + len(spec or b""), f"{len(line):,} characters: {line[:300]}"
    for needle in needles:
        assert needle in line, (needle, line[:500])
    assert elapsed < SECONDS, f"took {elapsed:.2f} s"


def _subprocess(args: list[str], cwd: Path, seconds: float) -> subprocess.CompletedProcess:
    import resource

    def limit() -> None:  # a runaway read fails fast instead of eating the machine
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradcli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=seconds,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("role", ["tensor", "spec"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_special_file_is_refused_quickly(tmp_path, role, special):
    """In a subprocess with a memory limit and a timeout: reading a FIFO blocks forever and
    /dev/zero never ends (both did at e99e04b, as a tensor)."""
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")
    (tmp_path / SPEC).write_text(f"tensors:\n  x: {special}\n  W: [[1.0, 2.0]]\n")
    spec, key = (SPEC, "tensors.x") if role == "tensor" else (special, special)
    try:
        proc = _subprocess(["compute", "linear", spec], tmp_path, seconds=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{special} as the {role}: no answer within 5 s")
    lines = proc.stderr.decode().splitlines()
    assert (proc.returncode, proc.stdout, len(lines)) == (2, b"", 1), proc.stderr[-300:]
    assert lines[0].startswith("gradcli: error:") and key in lines[0], lines[0]
