"""The catalog of third-party weights: official URLs, sources, licences, published hashes.

The data lives in ``catalog.toml`` beside this module (``$VSR_CATALOG`` names another file,
e.g. a mirror or a test catalog). Loading validates every field and fails loudly; whether
an entry's ``model`` is registered is not checked here (the registry grows independently),
``vsr models info`` says when an entry cannot run yet.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from vsr.errors import UnknownModelError, UsageError

CATALOG_PATH = Path(__file__).resolve().parent / "catalog.toml"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: torch.hub / BasicSR convention: ``<name>-<first 8+ hex digits of the sha256>.<ext>``.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_REQUIRED = ("id", "model", "scale", "url", "source", "licence")
_OPTIONAL = ("sha256", "notes")


class CatalogError(UsageError):
    """A catalog file that cannot be read or has an invalid entry."""


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable weights file."""

    id: str
    model: str
    scale: int
    url: str
    source: str
    licence: str
    sha256: str | None = None
    notes: str = ""

    @property
    def filename(self) -> str:
        """The upstream file name (the last URL path segment), kept in the cache."""
        return PurePosixPath(unquote(urlsplit(self.url).path)).name

    @property
    def sha256_prefix(self) -> str | None:
        """The sha256 prefix in a torch.hub-style name (``name-1bc95232.pt``), if any."""
        m = _HASH_IN_NAME.search(self.filename)
        return m.group(1) if m else None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "model": self.model,
            "scale": self.scale,
            "url": self.url,
            "file": self.filename,
            "source": self.source,
            "licence": self.licence,
            "sha256": self.sha256,
            "sha256_prefix": self.sha256_prefix,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    future_models: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def get(self, entry_id: str) -> CatalogEntry:
        """The entry ``entry_id``; raises UnknownModelError listing the known ids."""
        for e in self.entries:
            if e.id == entry_id.lower():
                return e
        raise UnknownModelError(
            f"unknown catalog entry {entry_id!r}", hint=f"known entries: {', '.join(self.ids())}"
        )

    def for_model(self, model: str) -> list[CatalogEntry]:
        return [e for e in self.entries if e.model == model]

    def by_url(self, url: str) -> CatalogEntry | None:
        return next((e for e in self.entries if e.url == url), None)


def parse_catalog(text: str, *, origin: str = "catalog") -> Catalog:
    """Parse and validate catalog TOML; raises CatalogError naming the bad entry and field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{origin} is not valid TOML: {exc}") from None
    unknown = set(data) - {"weights", "future_models"}
    if unknown:
        raise CatalogError(f"{origin}: unknown top-level keys {sorted(unknown)}")
    future = data.get("future_models", {})
    if not isinstance(future, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in future.items()
    ):
        raise CatalogError(f"{origin}: [future_models] maps model names to descriptions")
    raw = data.get("weights", [])
    if not isinstance(raw, list):
        raise CatalogError(f"{origin}: 'weights' must be an array of tables ([[weights]])")
    entries = tuple(_entry(item, i, origin) for i, item in enumerate(raw))
    for key in ("id", "filename", "url"):
        seen: set[str] = set()
        for e in entries:
            value = getattr(e, key)
            if value in seen:
                raise CatalogError(f"{origin}: two entries have the same {key} {value!r}")
            seen.add(value)
    return Catalog(entries, dict(future))


def _entry(item: object, index: int, origin: str) -> CatalogEntry:
    where = f"{origin}: weights entry {index + 1}"
    if not isinstance(item, dict):
        raise CatalogError(f"{where} is not a table")
    if isinstance(item.get("id"), str):
        where = f"{origin}: entry {item['id']!r}"
    missing = [k for k in _REQUIRED if k not in item]
    if missing:
        raise CatalogError(f"{where} lacks {', '.join(missing)}")
    extra = set(item) - set(_REQUIRED) - set(_OPTIONAL)
    if extra:
        raise CatalogError(f"{where} has unknown keys {sorted(extra)}")
    for k in ("id", "model", "url", "source", "licence", "notes", "sha256"):
        if k in item and (not isinstance(item[k], str) or (k != "notes" and not item[k].strip())):
            raise CatalogError(f"{where}: {k} must be a non-empty string")
    if not _ID.match(item["id"]):
        raise CatalogError(f"{where}: id must be lower case letters, digits, '.', '_' or '-'")
    scale = item["scale"]
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
        raise CatalogError(f"{where}: scale must be an integer from 1 to 16")
    parts = urlsplit(item["url"])
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise CatalogError(f"{where}: url must be an http(s) URL")
    sha = item.get("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise CatalogError(f"{where}: sha256 must be 64 lower-case hex digits (or absent)")
    entry = CatalogEntry(
        id=item["id"],
        model=item["model"],
        scale=scale,
        url=item["url"],
        source=item["source"],
        licence=item["licence"],
        sha256=sha,
        notes=item.get("notes", ""),
    )
    if not _FILE_NAME.match(entry.filename):
        raise CatalogError(f"{where}: the URL must end in a plain file name")
    prefix = entry.sha256_prefix
    if sha is not None and prefix is not None and not sha.startswith(prefix):
        raise CatalogError(f"{where}: sha256 contradicts the hash in the file name ({prefix})")
    return entry


def catalog_path() -> Path:
    """``$VSR_CATALOG`` when set, else the catalog shipped with vsr."""
    env = os.environ.get("VSR_CATALOG")
    return Path(env).expanduser() if env else CATALOG_PATH


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate the catalog (default: :func:`catalog_path`). Raises CatalogError."""
    path = Path(path) if path is not None else catalog_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(
            f"cannot read the weights catalog {path}: {exc.strerror or exc}",
            hint="check $VSR_CATALOG",
        ) from None
    cat = parse_catalog(text, origin=path.name)
    return Catalog(cat.entries, cat.future_models, path)


__all__ = [
    "CATALOG_PATH",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "catalog_path",
    "load_catalog",
    "parse_catalog",
]
