"""Checks of the public API's arguments, shared by the facade (vault.vault, vault.lifecycle)
and the workflows it calls.

Why a module of its own: a wrong type caught deep inside a call surfaces as a TypeError or
an AttributeError naming our internals, or worse after part of the work has committed (a
rotation's first batch, a re-index's next generation). Each check here runs before
anything is written and raises a ValidationError that names the argument, never its value.
"""

from __future__ import annotations

from typing import Any

from .errors import ValidationError

def check_progress(progress: Any, name: str = "progress") -> None:
    """``progress`` is None or a callable: one that is not would fail at its first call, after
    the first batch committed, leaving a run half done."""
    if progress is not None and not callable(progress):
        raise ValidationError(f"{name} must be a function (or None)")


def check_batch(batch: Any) -> None:
    """A batch of 0 would switch in an empty index generation (reindex) or stop a rotation
    halfway; refuse it before anything is written."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValidationError("batch must be a positive integer")
