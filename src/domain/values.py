"""``value_class``: the domain's frozen attrs classes, with one shared repr, eq and hash.

Why. Every hook is a fresh Python process that imports every domain class. For each class it
decorates, attrs writes the source of ``__init__``, ``__repr__``, ``__eq__``/``__ne__`` and
``__hash__`` and compiles it: the comparison and repr methods are about half of what
building a class costs, some 1.3 M instructions per class, and a deployed unit pays them on
every hook. ``value_class`` keeps what attrs does best (the ``__init__`` with its converters and
validators, slots, frozenness, ``attrs.fields``) and gives the class three methods written
once here instead, with attrs' meaning:

- equal: the same class, and every field compared (``eq=True``, the default) equal;
- hash: of the class and the fields hashed (``hash=``, else those compared);
- repr: ``Name(field=value, ...)`` over the fields shown (``repr=True``, or the field's own
  repr callable); a class that defines ``__repr__`` keeps its own.

Use ``@value_class`` where ``@attrs.frozen`` would go; arguments go to ``attrs.frozen``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

import attrs

_T = TypeVar("_T", bound=type)

# Per class: (names compared, names hashed, (name, repr callable) shown). Filled on first use.
_LAYOUT: dict[type, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, Any], ...]]] = {}


def _layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, Any], ...]]:
    layout = _LAYOUT.get(cls)
    if layout is None:
        fields = attrs.fields(cls)
        layout = (
            tuple(f.name for f in fields if f.eq),
            tuple(f.name for f in fields if (f.eq if f.hash is None else f.hash)),
            tuple((f.name, repr if f.repr is True else f.repr) for f in fields if f.repr),
        )
        _LAYOUT[cls] = layout
    return layout


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(getattr(self, name) == getattr(other, name) for name in _layout(self.__class__)[0])


def _hash(self: Any) -> int:
    return hash((self.__class__, *(getattr(self, name) for name in _layout(self.__class__)[1])))


def _repr(self: Any) -> str:
    shown = ", ".join(
        f"{name}={show(getattr(self, name))}" for name, show in _layout(self.__class__)[2]
    )
    return f"{self.__class__.__qualname__}({shown})"


@overload
def value_class(cls: _T) -> _T: ...
@overload
def value_class(cls: None = None, **kwargs: Any) -> Callable[[_T], _T]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def value_class(cls: _T | None = None, **kwargs: Any) -> _T | Callable[[_T], _T]:
    """``attrs.frozen`` without its generated ``__eq__``, ``__hash__`` and ``__repr__``."""

    def wrap(cls: _T) -> _T:
        cls.__eq__ = _eq  # type: ignore[assignment]
        cls.__hash__ = _hash  # type: ignore[assignment]
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = _repr  # type: ignore[assignment]
        return attrs.frozen(cls, repr=False, eq=False, **kwargs)

    return wrap if cls is None else wrap(cls)
