"""@record against the oracle it stands for, @dataclass(frozen=True): the same instances, the
same equality, hash, repr, errors and dataclasses functions."""

import copy
import dataclasses
from dataclasses import field

import pytest

from gradcli.records import record


def _pair(base=object):
    """The same class body as a record and as a frozen dataclass."""

    def body(cls):
        class C(cls):
            a: int
            b: str = "x"
            c: list = field(default_factory=list)
            d: float = field(default=1.5, repr=False)
            e: int = field(default=0, compare=False)

            def __post_init__(self):
                object.__setattr__(self, "e", self.e + 1)

        C.__qualname__ = "C"
        return C

    return record(body(base)), dataclasses.dataclass(frozen=True)(body(base))


R, D = _pair()


@pytest.mark.parametrize(("args", "kw"), [((1,), {}), ((1, "y"), {"d": 2.0}),
                                         ((), {"a": 3, "c": [1]})])  # fmt: skip
def test_instances_equal_hash_and_repr_as_a_frozen_dataclass(args, kw):
    r, d = R(*args, **kw), D(*args, **kw)
    assert dataclasses.asdict(r) == dataclasses.asdict(d)
    assert repr(r) == repr(d)
    assert r == R(*args, **kw) and (r != R(9)) and r != d  # another class is never equal
    r2 = dataclasses.replace(r, e=100)  # e is not compared
    assert r2 == r and r2.e == 101
    assert copy.copy(r) == r and copy.deepcopy(r) == r


def test_frozen_fields_and_dataclass_functions():
    r = R(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.a = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del r.a
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.new = 1
    assert dataclasses.is_dataclass(r) and [f.name for f in dataclasses.fields(R)] == list("abcde")
    assert R(1).c is not R(1).c  # a fresh default per instance
    assert hash(R(1, c=())) == hash(R(1, c=()))  # equal records, equal hashes
    with pytest.raises(TypeError):
        hash(R(1))  # a list field is unhashable, as in the dataclass
    with pytest.raises(TypeError):
        hash(D(1))


@pytest.mark.parametrize(("args", "kw"), [((), {}), ((1, "x", [], 1.0, 0, 9), {}),
                                         ((1,), {"z": 1}), ((1,), {"a": 2})])  # fmt: skip
def test_bad_arguments_are_type_errors_as_in_the_dataclass(args, kw):
    with pytest.raises(TypeError):
        D(*args, **kw)
    with pytest.raises(TypeError):
        R(*args, **kw)


def test_a_subclass_record_adds_fields_and_keeps_post_init():
    sub = record(type("S", (R,), {"__annotations__": {"f": int}, "f": 7}))
    s = sub(1)
    assert (s.a, s.f, s.e) == (1, 7, 1) and s == sub(1) and s != R(1)


def test_a_record_without_a_docstring_is_made_without_inspect(monkeypatch):
    # dataclasses writes a missing docstring from inspect.signature, which compiled tokenize's
    # regular expressions at start-up (15 million instructions)
    import inspect

    def refuse(*args, **kw):
        raise AssertionError("inspect.signature was called")

    monkeypatch.setattr(inspect, "signature", refuse)

    @record
    class Bare:
        a: int
        b: str = "x"

    assert Bare(1) == Bare(1, "x") and Bare.__doc__ == "Bare"
    assert [f.name for f in dataclasses.fields(Bare)] == ["a", "b"]


def test_a_mutable_record_is_a_dataclass_with_assignable_fields():
    from gradcli.records import mutable_record

    def body():
        class M:
            """m"""

            a: int
            b: list = field(default_factory=list)

            def __post_init__(self):
                self.b = [*self.b, self.a]

        return M

    m, d = mutable_record(body())(1), dataclasses.dataclass(body())(1)
    assert dataclasses.asdict(m) == dataclasses.asdict(d) == {"a": 1, "b": [1]}
    assert repr(m).split("(", 1)[1] == repr(d).split("(", 1)[1]
    m.a = 5  # assignable, as the dataclass's fields are
    del m.b
    assert m.a == 5 and not hasattr(m, "b")
    with pytest.raises(TypeError):
        hash(m)  # equality by value, so no hash, as for the dataclass
    with pytest.raises(TypeError):
        hash(d)
    assert type(m)(2) == type(m)(2) and type(m)(2) != type(m)(3)
