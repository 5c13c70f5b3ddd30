"""Download catalog weights into the user cache: resumable, atomic, verified by sha256.

Cache folder: ``$VSR_CACHE``, else ``$XDG_CACHE_HOME/vsr``, else ``~/.cache/vsr``; files go
to ``<cache>/weights/<upstream file name>``. A download is written to ``<file>.part`` (held
under an exclusive lock), resumed with an HTTP ``Range`` request when a ``.part`` is left
from an interrupted run (from zero when the server ignores ``Range``), hashed while it is
written, verified, then renamed into place atomically.

Verification, strongest first: the full sha256 the upstream publishes (catalog ``sha256``);
the sha256 prefix in a torch.hub-style file name (``edsr_x2-0edfb8a3.pt``); otherwise the
sha256 recorded at the first download in ``<cache>/registry.json``, so that a later download
of the same URL that differs is refused. A file that fails a check is removed.

Only the standard library talks to the network (urllib).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from vsr import __version__
from vsr.errors import VsrError
from vsr.files import FileLock, atomic_write
from vsr.models.catalog import CatalogEntry

log = logging.getLogger("vsr")

REGISTRY_NAME = "registry.json"
CHUNK = 1 << 16


class DownloadError(VsrError, OSError):
    """A download that failed (HTTP error, network failure, interrupted transfer): exit 1."""


class HashMismatchError(DownloadError):
    """Downloaded bytes whose sha256 differs from the published or recorded one."""


class _RangeRefused(Exception):
    """HTTP 416 to a resume request: the .part is longer than the file."""


def cache_dir() -> Path:
    """``$VSR_CACHE``, else ``$XDG_CACHE_HOME/vsr``, else ``~/.cache/vsr``."""
    if env := os.environ.get("VSR_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "vsr"
    return Path.home() / ".cache" / "vsr"


def weights_cache_dir(cache: Path | None = None) -> Path:
    return (cache if cache is not None else cache_dir()) / "weights"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class PullResult:
    entry: CatalogEntry
    path: Path
    sha256: str
    size: int
    verified: str  # which checks passed: "sha256", "sha256 prefix", "same as the first ..."
    resumed_from: int = 0  # bytes kept from a .part file
    already_present: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.entry.id,
            "model": self.entry.model,
            "scale": self.entry.scale,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "verified": self.verified,
            "resumed_from": self.resumed_from,
            "already_present": self.already_present,
        }


# ----------------------------------------------------------------------------------------
# The local registry of downloads: url -> {id, model, scale, file, sha256, size, date}
# ----------------------------------------------------------------------------------------


def registry_path(cache: Path | None = None) -> Path:
    return (cache if cache is not None else cache_dir()) / REGISTRY_NAME


def read_registry(cache: Path | None = None) -> dict[str, dict[str, Any]]:
    """Recorded downloads keyed by URL; ``{}`` when there is no registry yet."""
    path = registry_path(cache)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"cannot read the download registry {path}: {exc}",
            hint="fix or delete that file (it only records hashes of past downloads)",
        ) from None
    downloads = data.get("downloads", {}) if isinstance(data, dict) else None
    if not isinstance(downloads, dict):
        raise DownloadError(
            f"the download registry {path} is not what vsr writes",
            hint="fix or delete that file (it only records hashes of past downloads)",
        )
    return downloads


def _record(cache: Path, entry: CatalogEntry, sha: str, size: int, file: Path) -> None:
    path = registry_path(cache)
    with FileLock(path.with_name(path.name + ".lock")):
        downloads = read_registry(cache)
        old = downloads.get(entry.url, {})
        downloads[entry.url] = {
            "id": entry.id,
            "model": entry.model,
            "scale": entry.scale,
            "file": file.name,
            "sha256": sha,
            "size": size,
            "first_downloaded": old.get("first_downloaded", _now()),
            "last_downloaded": _now(),
        }
        atomic_write(path, json.dumps({"version": 1, "downloads": downloads}, indent=2) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _try_lock(f: IO[bytes]) -> bool:
    """Lock the partial download itself (its open file), without waiting."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------------------
# Pull
# ----------------------------------------------------------------------------------------


def pull(
    entry: CatalogEntry,
    *,
    cache: Path | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> PullResult:
    """Download ``entry`` into ``<cache>/weights`` (default cache: :func:`cache_dir`).

    An existing verified file is kept (``already_present``) unless ``force``. Raises
    DownloadError (HTTP error, network failure, interrupted transfer: the ``.part`` file
    is kept and the next call resumes) and HashMismatchError (the bad bytes are removed).
    """
    cache = cache if cache is not None else cache_dir()
    folder = weights_cache_dir(cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the cache folder {folder}: {exc.strerror or exc}",
            hint="set VSR_CACHE to a writable folder",
        ) from None
    target = folder / entry.filename
    recorded = read_registry(cache).get(entry.url)

    if target.exists() and not force:
        sha = sha256_file(target)
        try:
            verified = _verify(entry, sha, recorded, what=f"the cached {target.name}")
        except HashMismatchError:
            target.unlink(missing_ok=True)
            raise
        size = target.stat().st_size
        if recorded is None:
            _record(cache, entry, sha, size, target)
        return PullResult(entry, target, sha, size, verified, already_present=True)

    part = target.with_name(target.name + ".part")
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b") as f:
        if not _try_lock(f):
            raise DownloadError(
                f"another vsr process is downloading {target.name}",
                hint="wait for it to finish, then run again",
            )
        try:
            sha, size, resumed = _fetch(entry, f, part, progress=progress, timeout=timeout)
        except DownloadError:
            if f.seek(0, os.SEEK_END) == 0:  # nothing worth resuming
                part.unlink(missing_ok=True)
            raise
        try:
            verified = _verify(entry, sha, recorded, what=f"the download of {entry.id}")
        except HashMismatchError:
            part.unlink(missing_ok=True)
            raise
        f.flush()
        os.fsync(f.fileno())
        os.replace(part, target)
    _record(cache, entry, sha, size, target)
    return PullResult(entry, target, sha, size, verified, resumed_from=resumed)


def _verify(entry: CatalogEntry, sha: str, recorded: dict[str, Any] | None, *, what: str) -> str:
    """Check ``sha`` against every hash known for ``entry``; return the strongest check."""
    checks: list[str] = []
    if entry.sha256 is not None:
        if sha != entry.sha256:
            raise HashMismatchError(
                f"{what} has sha256 {sha[:16]}..., not the published {entry.sha256[:16]}...",
                hint="the file was removed; the server may be serving a different file",
            )
        checks.append("sha256")
    prefix = entry.sha256_prefix
    if prefix is not None:
        if not sha.startswith(prefix):
            raise HashMismatchError(
                f"{what} has sha256 {sha[:16]}..., which does not start with the "
                f"{prefix} in its file name",
                hint="the file was removed; the server may be serving a different file",
            )
        checks.append("sha256 prefix")
    if recorded is not None and recorded.get("sha256"):
        if sha != recorded["sha256"]:
            raise HashMismatchError(
                f"{what} differs from the first download of this URL "
                f"({recorded.get('first_downloaded', '?')}): sha256 {sha[:16]}..., "
                f"recorded {str(recorded['sha256'])[:16]}...",
                hint=f"the upstream file changed; if you trust it, remove {entry.url} from "
                f"{REGISTRY_NAME} in the cache folder and pull again",
            )
        checks.append("same as the first download")
    if not checks:
        return "no published hash; sha256 recorded for later downloads"
    return " and ".join(checks)


def _fetch(
    entry: CatalogEntry, f: IO[bytes], part: Path, *, progress: bool, timeout: float
) -> tuple[str, int, int]:
    """Fill ``f`` (the locked .part) with the whole file; return (sha256, size, resumed)."""
    f.seek(0, os.SEEK_END)
    have = f.tell()
    h = hashlib.sha256()
    if have:
        f.seek(0)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    host = urlsplit(entry.url).netloc
    try:
        resp = _open(entry, have, timeout=timeout)
    except _RangeRefused:  # the .part is not a prefix of the file any more: start over
        f.seek(0)
        f.truncate()
        h, have = hashlib.sha256(), 0
        resp = _open(entry, 0, timeout=timeout)
    with contextlib.closing(resp):
        status = resp.status
        if have and status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(
                    f"{host} answered the resume request with the wrong range",
                    hint=f"delete {part} and pull again",
                )
            log.info("resuming %s at %d bytes", entry.filename, have)
        elif have:  # 200: the server ignored Range, start over
            log.info("%s does not resume downloads; starting %s again", host, entry.filename)
            f.seek(0)
            f.truncate()
            h = hashlib.sha256()
            have = 0
        resumed = have
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else None
        f.seek(have)
        got = have
        from tqdm import tqdm

        with tqdm(
            total=expected,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=entry.filename,
            disable=not progress,
            dynamic_ncols=True,
            file=sys.stderr,
        ) as bar:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _interrupted(entry, got, expected, part, exc) from None
                if not block:
                    break
                f.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
    if expected is not None and got < expected:
        raise _interrupted(entry, got, expected, part, None)
    if expected is not None and got > expected:
        f.seek(0)
        f.truncate()
        raise DownloadError(f"{host} sent more bytes than it announced for {entry.filename}")
    return h.hexdigest(), got, resumed


def _open(entry: CatalogEntry, have: int, *, timeout: float) -> Any:
    headers = {"User-Agent": f"vsr/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    host = urlsplit(entry.url).netloc
    req = urllib.request.Request(entry.url, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) only (catalog)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            raise _RangeRefused from None
        raise DownloadError(
            f"HTTP {exc.code} {exc.reason} for {entry.url}",
            hint="the file may have moved; check the catalog entry's source page",
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
        raise DownloadError(
            f"cannot reach {host}: {reason or exc}",
            hint="check the network connection or proxy (HTTPS_PROXY)",
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets
        raise DownloadError(
            f"cannot reach {host}: {exc}", hint="check the network connection and run again"
        ) from None


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-299/300"
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _interrupted(
    entry: CatalogEntry, got: int, expected: int | None, part: Path, exc: BaseException | None
) -> DownloadError:
    of = f" of {expected}" if expected is not None else ""
    why = f": {exc}" if exc is not None and str(exc) else ""
    return DownloadError(
        f"the download of {entry.id} stopped after {got}{of} bytes{why}",
        hint=f"run the same pull again to resume from {part.name}",
    )


__all__ = [
    "DownloadError",
    "HashMismatchError",
    "PullResult",
    "cache_dir",
    "pull",
    "read_registry",
    "registry_path",
    "sha256_file",
    "weights_cache_dir",
]
