"""File policy in one place: temporary names, durable atomic writes, and locks.

Every file vsr writes for a user (a video, an image, a report, a manifest, a download) is
written under a temporary sibling name and renamed into place only when it is complete, so
a failed or killed process never leaves a partial file at the output path. The temporary
names all carry :data:`TMP_MARK`, so a later run (``vsr batch``) can find and remove what a
killed process left behind.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "TMP_MARK",
    "FileLock",
    "LockBusyError",
    "atomic_write",
    "fsync_path",
    "is_temp_name",
    "remove_temp_files",
    "replace_durably",
    "temp_sibling",
]

#: The marker in every temporary name: ``.<stem>.vsr-tmp-<tag><suffix>``.
TMP_MARK = ".vsr-tmp-"
_TEMP_RE = re.compile(rf"^\..+{re.escape(TMP_MARK)}[0-9a-z]+(\.[^.]*)?$")


def temp_sibling(path: Path, tag: str | None = None) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place:
    ``.<stem>.vsr-tmp-<tag><suffix>`` in the same folder (same file system, so the rename
    is atomic; the suffix kept, so muxers still see the format). ``tag`` defaults to the
    process id (what :func:`remove_temp_files` relies on for outputs of killed workers);
    pass a random one where one process may write the same name twice at once."""
    return path.with_name(f".{path.stem}{TMP_MARK}{tag or os.getpid()}{path.suffix}")


def random_tag() -> str:
    """A tag for :func:`temp_sibling` unique within a process."""
    return secrets.token_hex(4)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a file name, no folder) is one of vsr's temporary names."""
    return bool(_TEMP_RE.match(name))


def remove_temp_files(output: str | Path) -> list[Path]:
    """Delete the temporary siblings of ``output`` that killed processes left; return
    what was removed (symlinks and folders are left alone)."""
    out = Path(output)
    pattern = re.compile(
        rf"^\.{re.escape(out.stem)}{re.escape(TMP_MARK)}[0-9a-z]+{re.escape(out.suffix)}$"
    )
    removed: list[Path] = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if pattern.match(entry.name) and not entry.is_symlink() and entry.is_file():
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            removed.append(entry)
    return removed


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` (a file, or with ``directory`` its folder entry) to the disk.
    Folders that a platform cannot open or sync are skipped; a file that fails raises."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def replace_durably(tmp: Path, final: Path) -> None:
    """Rename the complete file ``tmp`` to ``final``: its data synced first, the folder
    after, so after a crash ``final`` is either the old file or the whole new one."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent, directory=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a durable rename
    (``str`` as UTF-8). The folder is created; the temporary file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, random_tag())
    try:
        with open(tmp, "xb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LockBusyError(BlockingIOError):
    """A non-blocking :class:`FileLock` is held by another process."""


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing), held until :meth:`release`.

    ``blocking=False`` raises :class:`LockBusyError` at once if another process holds it
    (or what ``busy()`` returns, an error that says what to do). Where ``fcntl`` does not
    exist (not POSIX) the lock is a no-op. Usable as a context manager.
    """

    def __init__(
        self,
        path: Path,
        *,
        blocking: bool = True,
        busy: Callable[[], BaseException] | None = None,
    ) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            os.close(fd)
            if busy is not None:
                raise busy() from None
            raise LockBusyError(f"{self.path} is locked by another process") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
