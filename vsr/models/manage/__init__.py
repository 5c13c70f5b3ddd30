"""The logic behind ``vsr models``: list, info, pull and import.

- :mod:`.queries`: what is present (registry, built-in weights, catalog, user cache) and
  the rows of ``list`` and the dict of ``info``, JSON-ready;
- :mod:`.formatting`: the text of ``list`` and ``info``;
- :mod:`.pull`: ``pull`` (a catalog download) and its summary;
- :mod:`.importer`: ``import`` (any readable weights file -> the user cache).

The names below are the API the CLI uses (``from vsr.models import manage``).
"""

from __future__ import annotations

from vsr.models.manage.formatting import format_catalog, format_info, format_list
from vsr.models.manage.importer import ImportResult, import_weights
from vsr.models.manage.pull import pull, pull_summary
from vsr.models.manage.queries import (
    GENERIC_NAME,
    cached_weights,
    list_catalog,
    list_models,
    model_info,
    runnable_with,
)

__all__ = [
    "GENERIC_NAME",
    "ImportResult",
    "cached_weights",
    "format_catalog",
    "format_info",
    "format_list",
    "import_weights",
    "list_catalog",
    "list_models",
    "model_info",
    "pull",
    "pull_summary",
    "runnable_with",
]
