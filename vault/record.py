"""The read-only :class:`Record` mapping handed to callers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Record(Mapping[str, Any]):
    """A decrypted record: field name -> value, plus its random ``id``.

    ``repr``/``str`` show the id and the field *names* only, so a record that ends
    up in a log line, traceback or debugger print reveals no one.
    """

    __slots__ = ("_id", "_values")

    def __init__(self, record_id: str, values: dict[str, Any]) -> None:
        self._id = record_id
        self._values = values

    @property
    def id(self) -> str:
        return self._id

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Record {self._id} fields=[{', '.join(sorted(self._values))}]>"

    __str__ = __repr__

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("Record objects hold plaintext and are not picklable")
