"""``value_class``: the shared eq, hash and repr mean what attrs' generated ones mean."""

import attrs
import pytest

from domain.values import value_class


@value_class
class Pair:
    left: int
    right: str = attrs.field(default="", repr=lambda text: f"<{len(text)} chars>")
    cache: dict[str, int] = attrs.field(factory=dict, eq=False, repr=False)


@value_class
class OtherPair:
    left: int
    right: str = ""


@value_class
class Hidden:
    secret: str = attrs.field(repr=False)


@value_class
class Empty:
    pass


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (Pair(1, "x"), Pair(1, "x"), True),
        (Pair(1, "x"), Pair(2, "x"), False),
        (Pair(1, "x"), Pair(1, "y"), False),
        # A field with eq=False is not compared (nor hashed).
        (Pair(1, "x", {"a": 1}), Pair(1, "x", {"b": 2}), True),
        # Same fields, another class: never equal, as with attrs.
        (Pair(1, "x"), OtherPair(1, "x"), False),
        (Empty(), Empty(), True),
    ],
)
def test_equality_and_hash(a: object, b: object, equal: bool) -> None:
    assert (a == b) is equal
    assert (a != b) is not equal
    if equal:
        assert hash(a) == hash(b)
        assert len({a, b}) == 1
    else:
        assert len({a, b}) == 2


def test_comparing_with_another_type_is_not_an_error() -> None:
    assert Pair(1) != (1, "")
    assert Pair(1) != None  # noqa: E711 - the comparison itself is under test


@pytest.mark.parametrize(
    ("instance", "text"),
    [
        (Pair(1, "abc"), "Pair(left=1, right=<3 chars>)"),
        (OtherPair(2), "OtherPair(left=2, right='')"),
        (Hidden("s3cr3t"), "Hidden()"),
        (Empty(), "Empty()"),
    ],
)
def test_repr_shows_what_attrs_would(instance: object, text: str) -> None:
    assert repr(instance) == text


def test_still_frozen_slotted_and_validated_by_attrs() -> None:
    pair = Pair(1, "x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pair.left = 2  # type: ignore[misc]
    assert not hasattr(pair, "__dict__")
    assert [field.name for field in attrs.fields(Pair)] == ["left", "right", "cache"]
