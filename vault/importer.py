"""The importer's public names (the code lives in :mod:`vault.import_`; the mapping
format is specified in docs/mapping.md)."""

from __future__ import annotations

from .import_ import (
                      DUPLICATE_RULES,
                      FAMILIES,
                      PRESETS,
                      ImportPlan,
                      Mapping,
                      MappingError,
                      RowError,
                      RowValues,
                      SelectMany,
                      SourceError,
                      Table,
                      Update,
                      check_against_vault,
                      detect,
                      load_mapping,
                      load_preset,
                      plan_import,
                      read_table,
)

__all__ = ["MappingError", "RowError", "Mapping", "SelectMany", "ImportPlan", "RowValues", "Update",
           "load_mapping", "plan_import", "check_against_vault", "load_preset", "detect", "PRESETS",
           "FAMILIES", "DUPLICATE_RULES", "read_table", "SourceError", "Table"]
