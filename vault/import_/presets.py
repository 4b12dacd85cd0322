"""Mappings shipped with dvault (``--preset kobo|kobo-labels|civicrm``) and recognising
an export from its header when the operator gave no mapping.

A preset is a mapping file in ``vault.import_.mappings/`` (package data). It names more
columns than one form has (``missing_columns = "ignore"``), and is fitted to the vault's
own schema when loaded: an entry for a field the schema lacks (a vault made before
``source_id`` existed, a custom schema) is dropped and reported, so an old vault imports
with what its schema can hold.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from ..schema import Schema
from .mapping import Mapping, MappingError, mapping_from_doc, parse_toml

__all__ = ["PRESETS", "FAMILIES", "load_preset", "detect", "preset_text"]

#: Shipped presets, and the families ``--preset`` accepts (a family picks its member by header).
PRESETS: tuple[str, ...] = ("kobo", "kobo-labels", "civicrm")
FAMILIES: dict[str, tuple[str, ...]] = {"kobo": ("kobo", "kobo-labels"), "kobo-labels": ("kobo-labels",),
                                        "civicrm": ("civicrm",)}
# Columns only these tools write: how an export is recognised without a mapping.
_KOBO_MARKS = ("_uuid", "_submission_time", "_validation_status", "_xform_id_string")
_CIVICRM_MARKS = ("Contact ID", "Contact Type")


def preset_text(name: str) -> str:
    if name not in PRESETS:
        raise MappingError(f"unknown preset {name!r} (known: {', '.join(FAMILIES)})")
    return resources.files("vault.import_.mappings").joinpath(f"{name}.toml").read_text("utf-8")


def load_preset(family: str, schema: Schema, header: list[str]) -> tuple[Mapping, list[str]]:
    """The preset of ``family`` that fits ``header`` best, fitted to ``schema``; and the
    fields it would have filled that the schema does not have."""
    members = FAMILIES.get(family)
    if members is None:
        raise MappingError(f"unknown preset {family!r} (known: {', '.join(FAMILIES)})")
    docs = {m: parse_toml(preset_text(m), f"preset {m}") for m in members}
    best = max(members, key=lambda m: _score(docs[m], header))
    doc, dropped = _fit(docs[best], schema)
    return mapping_from_doc(doc, schema, name=f"preset {best}"), dropped


def detect(header: list[str]) -> str | None:
    """The preset family an export's header suggests, or None."""
    names = set(header)
    if any(m in names for m in _KOBO_MARKS):
        return "kobo"
    if all(m in names for m in _CIVICRM_MARKS) or ("Contact ID" in names and "First Name" in names):
        return "civicrm"
    return None


def _score(doc: dict[str, Any], header: list[str]) -> int:
    keys = list(doc.get("columns", {})) + [p for ps in doc.get("join", {}).values() for p in ps]
    keys += [v for spec in doc.get("select_many", {}).values() for v in spec.values()]
    return sum(1 for k in keys if any(h == k or h.endswith("/" + k) or h.startswith(k) for h in header))


def _fit(doc: dict[str, Any], schema: Schema) -> tuple[dict[str, Any], list[str]]:
    """``doc`` without the entries for fields ``schema`` lacks (or cannot take: a choice
    list for a field that is neither a list nor text)."""
    fields = schema.fields

    def fits(name: str, select: bool = False) -> bool:
        f = fields.get(name)
        return f is not None and (not select or f.type in ("list", "text"))

    out = dict(doc)
    out["columns"] = {h: t for h, t in doc.get("columns", {}).items() if fits(t)}
    out["join"] = {t: ps for t, ps in doc.get("join", {}).items() if fits(t)}
    out["select_many"] = {t: s for t, s in doc.get("select_many", {}).items() if fits(t, True)}
    fed = set(out["columns"].values()) | set(out["join"]) | set(out["select_many"])
    out["values"] = {t: v for t, v in doc.get("values", {}).items() if t in fed}
    wanted = set(doc.get("columns", {}).values()) | set(doc.get("join", {})) | set(doc.get("select_many", {}))
    return out, sorted(wanted - fed)
