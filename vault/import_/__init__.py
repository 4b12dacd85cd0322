"""Import a registration export (KoboToolbox, CiviCRM, ODK, a spreadsheet) into a vault.

``plan_import`` turns an export (CSV in any text encoding, or XLSX) and a mapping into a
plan without touching a vault; ``check_against_vault`` splits it into rows to add,
updates of records matched by source id, and rows already in the vault. The CLI
(``dvault import``) shows the plan as a dry run and imports nothing until the file is
clean (or ``--skip-bad``). The mapping format is in docs/mapping.md.
"""

from __future__ import annotations

from .against import check_against_vault
from .mapping import Mapping, MappingError, SelectMany, load_mapping
from .plan import DUPLICATE_RULES, ImportPlan, RowError, RowValues, Update, plan_import
from .presets import FAMILIES, PRESETS, detect, load_preset
from .source import SourceError, Table, read_table

__all__ = ["MappingError", "RowError", "Mapping", "SelectMany", "ImportPlan", "RowValues", "Update",
           "load_mapping", "plan_import", "check_against_vault", "load_preset", "detect", "PRESETS",
           "FAMILIES", "DUPLICATE_RULES", "read_table", "SourceError", "Table"]
