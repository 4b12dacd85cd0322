"""Checks of the public API's arguments, shared by the facade (vault.vault, vault.lifecycle)
and the workflows it calls.

Why a module of its own: a wrong type caught deep inside a call surfaces as a TypeError or
an AttributeError naming our internals, or worse after part of the work has committed (a
rotation's first batch, a re-index's next generation). Each check here runs before
anything is written and raises a ValidationError that names the argument, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError

#: The largest batch a rotation or re-index takes: one transaction holds a batch's rows in
#: memory, and a larger number only overflows a database integer once the run has started.
MAX_BATCH = 1_000_000

def check_progress(progress: Any, name: str = "progress") -> None:
    """``progress`` is None or a callable: one that is not would fail at its first call, after
    the first batch committed, leaving a run half done."""
    if progress is not None and not callable(progress):
        raise ValidationError(f"{name} must be a function (or None)")


def check_batch(batch: Any) -> None:
    """A batch of 0 would switch in an empty index generation (reindex) or stop a rotation
    halfway, and a huge one overflows a database integer after the run's state was written;
    refuse both before anything is written."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ValidationError(f"batch must be an integer from 1 to {MAX_BATCH:,}")


def check_path(path: Any, name: str = "path") -> str:
    """``path`` (a str or os.PathLike naming a file) as a str. Why here and not at the open():
    None, bytes or an int reach the file system as a TypeError, an embedded NUL as a
    ValueError and a lone surrogate (text that was never a file name) as a
    UnicodeEncodeError quoting the path; a surrogate escape of an undecodable byte, which
    the file system gave us, is a real name and passes."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise ValidationError(f"{name} must be a file path (a str or os.PathLike)")
    check_location_text(text, name)
    return text


def check_location_text(text: str, name: str) -> None:
    """A path's or a URL's text: no NUL (which no file name or URL holds, and which the OS
    refuses with a ValueError) and nothing the file system cannot encode."""
    if "\x00" in text:
        raise ValidationError(f"{name} contains a NUL character")
    try:
        os.fsencode(text)
        return
    except UnicodeEncodeError:
        pass  # raised below, outside the handler: inside it, __context__ would keep the text
    raise ValidationError(f"{name} is not valid text (a lone surrogate)")


def check_rows(rows: Any, call: str) -> list[Any]:
    """``rows`` (an iterable of records) as a list, read once: a single record, a string or
    None would otherwise fail as a TypeError, or be taken apart key by key."""
    if isinstance(rows, (str, bytes, Mapping)):
        raise ValidationError(f"{call}() takes a list of records (use add() for one)")
    try:
        return list(rows)
    except TypeError:
        pass  # raised below, outside the handler
    raise ValidationError(f"{call}() takes a list of records")


def check_names(names: Any, name: str) -> list[str]:
    """A list of names (classes, fields), as a list: a bare string would be read letter by
    letter, and a number or None fails as a TypeError."""
    if isinstance(names, (str, bytes)):
        raise ValidationError(f"{name} must be a list of names, not a string")
    if isinstance(names, Mapping):
        raise ValidationError(f"{name} must be a list of names, not a mapping")
    try:
        out = list(names)
    except TypeError:
        out = None
    if out is None or not all(isinstance(n, str) for n in out):
        raise ValidationError(f"{name} must be a list of names (str)")
    return out


def check_text(value: Any, name: str) -> str:
    """``value`` is a str: a list or a dict given as a name fails as "unhashable" deep inside."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text (str)")
    return value
