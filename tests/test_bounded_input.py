"""Issue 12: every file is read for what it declares, parsing is bounded, no open blocks.

Each run is a real process under a 1 GiB address-space limit and a time limit, on inputs that
cost gigabytes or hang when read naively: sparse files (``truncate`` costs no disk), zip bombs,
a spec of 3 million inline floats, /dev/zero on stdin, alias bombs, FIFOs, a path that turns into
a FIFO between checks. Each must end in one line on stderr and exit 2.
"""

from __future__ import annotations

import functools
import io
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradcli.errors import GradcliError, SpecError
from gradcli.files import reading as gio

REPO = Path(__file__).resolve().parent.parent
SECONDS = 10
LIN = "  x: [1.0, 2.0]\n  W: [[1.0, 2.0]]\n"


def run(args: list[str], cwd: Path, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    def limit() -> None:  # a runaway read fails (MemoryError: exit 3) instead of passing
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gradcli", *args],
            cwd=cwd, env=env, capture_output=True, stdin=stdin, timeout=SECONDS,
            preexec_fn=limit,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"gradcli {' '.join(args)}: no answer within {SECONDS} s")
    proc.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = proc.stderr.decode(errors="replace").splitlines()
    assert (proc.returncode, proc.stdout, len(lines)) == (2, b"", 1), proc.stderr[-500:]
    assert lines[0].startswith("gradcli: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def spec(tmp_path: Path, x: str, name: str = "s.yaml") -> str:
    (tmp_path / name).write_text(f"tensors:\n  x: {x}\n  W: [[1.0, 2.0]]\n")
    return name


def test_npy_followed_by_3_gb_is_refused_unread(tmp_path):
    with open(tmp_path / "x.npy", "wb") as f:
        np.save(f, np.array([1.0, 2.0]))
        f.truncate(3 * 2**30)  # sparse: no disk, but 3 GB for whoever reads it
    proc = run(["compute", "linear", spec(tmp_path, "x.npy")], tmp_path)
    refused(proc, "s.yaml: tensors.x: x.npy has data after its array", "3,221,225,472")


def test_the_twin_a_valid_npy_is_read(tmp_path):
    np.save(tmp_path / "x.npy", np.array([1.0, 2.0]))
    proc = run(["compute", "linear", spec(tmp_path, "x.npy"), "--format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_npy_header_declaring_more_than_the_file_is_refused_unread(tmp_path):
    (tmp_path / "x.npy").write_bytes(header((2**27,)) + b"\0" * 64)  # declares 1 GiB
    args = ["compute", "linear", spec(tmp_path, "x.npy"), "--max-elements", "200000000"]
    proc = run(args, tmp_path)
    refused(proc, "x.npy is truncated")


def test_npz_void_member_of_a_gib_per_item_is_refused_before_decompressing(tmp_path):
    with zipfile.ZipFile(tmp_path / "v.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", header((2,), "|V1073741824"))  # numpy would allocate 2 GiB
    proc = run(["compute", "linear", spec(tmp_path, "v.npz:x")], tmp_path)
    refused(proc, "v.npz holds a void array")


@functools.cache
def _bomb_bytes() -> bytes:
    """The archive _bomb writes, deflated once for the module (about a second)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x.npy", "w") as m:
            m.write(header((2,)) + bytes(16))
            zeros = bytes(2**25)
            for _ in range(16):
                m.write(zeros)
    return buf.getvalue()


def _bomb(path: Path, declared: int | None = None) -> None:
    """A member whose header declares 2 floats, followed by 512 MB of deflated zeros (~500 KB);
    with ``declared`` the central directory lies about the uncompressed size."""
    path.write_bytes(_bomb_bytes())
    if declared is not None:
        data = bytearray(path.read_bytes())
        central = data.rfind(b"PK\x01\x02")  # the central directory's one entry
        assert int.from_bytes(data[central + 24 : central + 28], "little") == 2**29 + 144
        data[central + 24 : central + 28] = declared.to_bytes(4, "little")
        path.write_bytes(bytes(data))


def test_npz_zip_bomb_member_is_refused_before_decompressing(tmp_path):
    _bomb(tmp_path / "b.npz")
    proc = run(["compute", "linear", spec(tmp_path, "b.npz:x")], tmp_path)
    refused(proc, "b.npz has data after its array")


def test_npz_member_lying_about_its_size_expands_no_further(tmp_path):
    _bomb(tmp_path / "b.npz", declared=len(header((2,))) + 16)
    proc = run(["compute", "linear", spec(tmp_path, "b.npz:x")], tmp_path)
    refused(proc, "b.npz")  # the CRC of what the header declares does not match


def test_spec_of_3_million_inline_floats_is_refused_from_the_first_thousand(tmp_path):
    text = "tensors:\n  x: [" + ", ".join(["1.5"] * 3_000_000) + "]\n"
    (tmp_path / "big.yaml").write_text(text)  # 15 MB
    proc = run(["compute", "linear", "big.yaml", "--max-elements", "10"], tmp_path)
    refused(proc, "big.yaml: tensors.x: line 2: more than 1,010 YAML values", "--max-elements 10")
    proc = run(["compute", "linear", "big.yaml"], tmp_path)
    refused(proc, "more than 101,000 YAML values", ".npy")


def test_stdin_of_zeros_is_read_to_16_mb_only(tmp_path):
    with open("/dev/zero", "rb") as zero:
        proc = run(["compute", "linear", "-"], tmp_path, stdin=zero)
    refused(proc, "<stdin>: stdin is larger than 16 MB")


def test_spec_file_over_16_mb_is_refused(tmp_path):
    with open(tmp_path / "s.yaml", "w") as f:
        f.write(f"tensors:\n{LIN}# ")
        f.truncate(17 * 2**20)  # a comment of NUL bytes
    refused(run(["compute", "linear", "s.yaml"], tmp_path), "s.yaml is larger than 16 MB")


def _impl(tmp_path: Path) -> str:
    (tmp_path / "mine.py").write_text(
        "def forward(x, **o):\n    return 2 * x\n\n\ndef backward(g, x, **o):\n"
        "    return {'x': 2 * g}\n"
    )
    return "mine.py"


def bomb(levels: int, width: int = 10) -> str:
    s = "&a0 [" + ", ".join(["1.0"] * width) + "]"
    for k in range(1, levels):
        s = f"&a{k} [{s}" + f", *a{k - 1}" * (width - 1) + "]"
    return s


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_alias_bomb_in_custom_options_is_refused_at_once(tmp_path, fmt):
    (tmp_path / "s.yaml").write_text(f"tensors:\n  x: [1.0]\noptions:\n  big: {bomb(9)}\n")
    proc = run(["check", "custom", "s.yaml", "--impl", _impl(tmp_path), "--format", fmt], tmp_path)
    refused(proc, "s.yaml: options.big: line 4: more than 101,000 YAML values")


def test_the_twin_small_aliases_in_custom_options_work(tmp_path):
    (tmp_path / "s.yaml").write_text(
        f"tensors:\n  x: [1.0]\noptions:\n  big: {bomb(3)}\n  again: *a2\n"
    )
    args = ["check", "custom", "s.yaml", "--impl", _impl(tmp_path), "--format", "json"]
    proc = run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_alias_bomb_in_a_grads_yaml_is_refused_at_once(tmp_path):
    (tmp_path / "g.yaml").write_text(f"W: {bomb(9)}\n")
    proc = run(["check", "linear", "--grads", "g.yaml"], tmp_path)
    refused(proc, "g.yaml: W: line 1: more than 101,000 YAML values")


def _fifo_cases(tmp_path: Path) -> dict[str, list[str]]:
    os.mkfifo(tmp_path / "f.npy")
    os.mkfifo(tmp_path / "f.yaml")
    os.mkfifo(tmp_path / "f.py")
    os.mkfifo(tmp_path / "f.npz")
    return {
        "--impl": ["check", "linear", "--impl", "f.py"],
        "--grads npy": ["check", "linear", "--grads", "f.npy", "--wrt", "W"],
        "--grads npz": ["check", "linear", "--grads", "f.npz"],
        "--grads yaml": ["check", "linear", "--grads", "f.yaml"],
        "npz tensor": ["compute", "linear", spec(tmp_path, "f.npz:x")],
        "spec": ["compute", "linear", "f.yaml"],
    }


@pytest.mark.parametrize(
    "role", ["--impl", "--grads npy", "--grads npz", "--grads yaml", "npz tensor", "spec"]
)
def test_a_fifo_is_refused_wherever_a_file_is_read(tmp_path, role):
    refused(run(_fifo_cases(tmp_path)[role], tmp_path), "not a regular file")


def test_stdin_may_be_a_pipe(tmp_path):
    proc = run(["compute", "linear", "-", "--format", "json"], tmp_path, stdin=subprocess.PIPE)
    assert proc.returncode == 2  # DEVNULL-like: an empty pipe is an empty spec, not a hang
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run(
        [sys.executable, "-m", "gradcli", "compute", "linear", "-", "--format", "json"],
        input=f"tensors:\n{LIN}".encode(), capture_output=True, cwd=tmp_path, env=env,
        timeout=SECONDS,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_a_path_turning_into_a_fifo_never_blocks(tmp_path):
    """The path flips between a .npy and a FIFO as fast as it can while specs are loaded, and
    any stat of it (a check before the open) turns it into a FIFO at once: with any
    check-then-open, the open would wait forever for a writer. In a child process, so a hang
    fails the test instead of stopping the suite."""
    script = f"""
import os, threading, numpy as np
from pathlib import Path
from gradcli.errors import GradcliError, SpecError
from gradcli.inputs.spec import load_spec
d = Path({str(tmp_path)!r})
np.save(d / "file.npy", np.array([1.0, 2.0]))
os.mkfifo(d / "fifo")
os.symlink("file.npy", d / "x.npy")  # links: rename() between hard links is a no-op
(d / "s.yaml").write_text("tensors:\\n  x: x.npy\\n  W: [[1.0, 2.0]]\\n")
stop = False
def flip():
    while not stop:
        for src in ("fifo", "file.npy"):
            os.symlink(src, d / "tmp")
            os.replace(d / "tmp", d / "x.npy")
threading.Thread(target=flip, daemon=True).start()
real_stat = os.stat
def stat(path, *args, **kwargs):  # whoever checks first loses the race
    result = real_stat(path, *args, **kwargs)
    if str(path).endswith("x.npy"):
        os.symlink("fifo", d / "swap")
        os.replace(d / "swap", d / "x.npy")
    return result
os.stat = stat
counts = {{"ok": 0, "refused": 0}}
for _ in range(300):
    try:
        load_spec("linear", str(d / "s.yaml"))
        counts["ok"] += 1
    except GradcliError as e:
        assert "not a regular file" in str(e), str(e)
        counts["refused"] += 1
stop = True
print(counts["ok"], counts["refused"])
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, env=env, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading a spec blocked on a path that turned into a FIFO")
    assert proc.returncode == 0, proc.stderr.decode()[-800:]
    ok, refused_ = map(int, proc.stdout.split())
    assert ok + refused_ == 300 and refused_ > 0, (ok, refused_)


def test_open_input_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, needle in [
        (tmp_path / "fifo", "not a regular file"),
        (Path("/dev/zero"), "not a regular file"),
        (tmp_path, "is a directory"),
        (tmp_path / "none", "file not found"),
    ]:
        with pytest.raises(GradcliError, match=needle):
            gio.open_input(path, source="s")
    (tmp_path / "f").write_bytes(b"ok")
    with gio.open_input(tmp_path / "f", source="s") as f:
        assert f.read() == b"ok"  # and reads block again: the whole file arrives


def test_npz_with_too_many_members_is_refused_from_its_end_record(tmp_path, monkeypatch):
    np.savez(tmp_path / "a.npz", **{f"k{i}": np.zeros(1) for i in range(5)})
    monkeypatch.setattr(gio, "MAX_MEMBERS", 4)
    with pytest.raises(GradcliError, match="5 members"):
        gio.load_array(tmp_path / "a.npz", "k0", source="s", key="x")
    with pytest.raises(GradcliError, match="5 members"):
        gio.npz_names(tmp_path / "a.npz", source="s")
    monkeypatch.setattr(gio, "MAX_MEMBERS", 5)
    assert gio.npz_names(tmp_path / "a.npz", source="s") == [f"k{i}" for i in range(5)]


def test_load_array_reads_exactly_the_declared_bytes(tmp_path):
    """The reader's own oracle: numpy's np.load of the same files (C and Fortran order, both
    byte orders, every float size, and an .npz member), and a spy on the bytes read."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 4, 2))
    arrays = {
        "c": base,
        "f": np.asfortranarray(base),
        "be": base.astype(">f8"),
        "f32": base.astype(np.float32),
        "f16": base.astype(np.float16),
        "i": np.arange(6).reshape(2, 3),
    }
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        got = gio.load_array(tmp_path / f"{name}.npy", None, source="s", key=name)
        want = np.load(tmp_path / f"{name}.npy")
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    for name in arrays:
        np.testing.assert_array_equal(
            gio.load_array(tmp_path / "a.npz", name, source="s", key=name), arrays[name]
        )
    seen: list[int] = []
    real = gio.open_input

    class Spy(io.BufferedReader):
        def read(self, n=-1):
            data = super().read(n)
            seen.append(-1 if n is None or n < 0 else len(data))
            return data

        def readinto(self, b):
            n = super().readinto(b)
            seen.append(n)
            return n

    def spy(path, **kw):
        return Spy(real(path, **kw).detach())

    with open(tmp_path / "c.npy", "ab") as f:
        f.truncate(2**30)  # were the data after the header read, this would be 1 GB
    gio.open_input = spy
    try:
        with pytest.raises(GradcliError, match="data after its array"):
            gio.load_array(tmp_path / "c.npy", None, source="s", key="c")
        assert -1 not in seen and sum(seen) <= 2 + 128  # the sniff for "PK" and the header
        seen.clear()
        gio.load_array(tmp_path / "f.npy", None, source="s", key="f")
        assert sum(seen) == 2 + (tmp_path / "f.npy").stat().st_size  # all of it, once
    finally:
        gio.open_input = real


def test_reserve_is_told_before_the_data_is_read(tmp_path):
    """With 1 GB of data behind a header of 100 elements, a refusal by ``reserve`` (the element
    budget) comes before any of it is read: the error passes through unchanged."""
    (tmp_path / "x.npy").write_bytes(header((10, 10)))
    with open(tmp_path / "x.npy", "ab") as f:
        f.truncate(2**30)
    told = []

    def reserve(n):
        told.append(n)
        raise SpecError("over budget", key="x")

    with pytest.raises(SpecError, match="over budget"):
        gio.load_array(tmp_path / "x.npy", None, source="s", key="x", reserve=reserve)
    assert told == [100]


def _expanded(obj) -> int:
    """Values in a constructed document, every alias expanded: the composer's count, from the
    result instead of the events (an independent oracle)."""
    if isinstance(obj, dict):
        return 1 + sum(_expanded(k) + _expanded(v) for k, v in obj.items())
    if isinstance(obj, list):
        return 1 + sum(_expanded(v) for v in obj)
    return 1


def _random_doc(rng: np.random.Generator) -> str:
    """A YAML text of nested flow lists and mappings with anchors and aliases to them."""
    anchors: list[str] = []

    def value(depth: int) -> str:
        r = rng.random()
        if anchors and r < 0.2:
            return "*" + anchors[int(rng.integers(len(anchors)))]
        if depth > 3 or r < 0.5:
            return str(int(rng.integers(100))) if r < 0.35 else f"{rng.random():.3f}"
        items = [value(depth + 1) for _ in range(int(rng.integers(0, 5)))]
        if rng.random() < 0.5:
            text = "[" + ", ".join(items) + "]"
        else:
            text = "{" + ", ".join(f"k{i}: {v}" for i, v in enumerate(items)) + "}"
        if rng.random() < 0.4:
            anchors.append(f"a{len(anchors)}")
            return f"&{anchors[-1]} {text}"
        return text

    return "{" + ", ".join(f"t{i}: {value(0)}" for i in range(4)) + "}"


def test_the_yaml_limit_is_the_expanded_size_of_the_document():
    """On random documents with aliases: the bounded loader builds what PyYAML's safe loader
    builds, and refuses exactly those whose expanded size exceeds the limit."""
    import yaml

    from gradcli.files import yamlparse

    rng = np.random.default_rng(12)
    for _ in range(200):
        text = _random_doc(rng)
        want = yaml.safe_load(text)
        n = _expanded(want)
        got = yamlparse._Loader(text, n, n).get_single_data()
        assert got == want, text
        with pytest.raises(SpecError, match=f"more than {n - 1:,} YAML values"):
            yamlparse._Loader(text, n - 1, n - 1).get_single_data()
