"""A string wrapper that never shows its value in repr, str, logs or tracebacks."""

from __future__ import annotations


class Secret:
    """Holds a secret; `reveal()` is the only way to read it, so leaks are greppable."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would copy the value into queues or caches
        raise TypeError("Secret values cannot be pickled")
