"""How a caller names where a vault is: a SQLAlchemy URL, or a bare file path."""

from __future__ import annotations

import os

from .args import check_location_text
from .errors import ValidationError


def normalise_url(url: str | os.PathLike[str]) -> str:
    """Accept a SQLAlchemy URL, or a bare file path meaning the embedded SQLite default."""
    try:
        text = os.fspath(url)
    except TypeError:
        raise ValidationError("a vault location is a URL or a file path") from None
    if isinstance(text, bytes) or not text:
        raise ValidationError("a vault location is a URL or a file path")
    check_location_text(text, "the vault location")
    if "://" in text:
        return text
    return "sqlite:///" + os.path.abspath(text)
