"""The batch ledger: ``DIR/.vsr-batch.sqlite`` (SQLite in WAL mode), one row per input.

Only the driver process writes it, one short transaction per state change, so a killed
driver loses nothing that was recorded; readers (``vsr batch status``) open it read-only.
A lock file (``DIR/.vsr-batch.lock``, ``flock``) keeps two drivers off one folder; the
kernel releases it when the driver dies, however it dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vsr.errors import UsageError
from vsr.files import FileLock

__all__ = ["LEDGER_NAME", "LOCK_NAME", "STATES", "Ledger", "Row", "fingerprint"]

LEDGER_NAME = ".vsr-batch.sqlite"
LOCK_NAME = ".vsr-batch.lock"
STATES = ("pending", "running", "done", "failed")
SCHEMA_VERSION = 2  # 2: the fidelity column (1 is upgraded in place when the driver opens it)
_CHUNK = 1 << 20  # 1 MiB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key          TEXT PRIMARY KEY,
    input        TEXT NOT NULL,
    size         INTEGER,
    mtime_ns     INTEGER,
    fingerprint  TEXT,
    params_hash  TEXT,
    params       TEXT,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    permanent    INTEGER NOT NULL DEFAULT 0,
    output       TEXT,
    frames       INTEGER,
    started      REAL,
    finished     REAL,
    seconds      REAL,
    updated      REAL,
    fidelity     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_output ON jobs (output);
"""


def fingerprint(path: str | Path, size: int | None = None) -> str:
    """sha256 of the size and the first and last MiB: cheap, and changes with any edit
    that changes the length, the header or the end (mtime catches the rest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(_CHUNK))
        if size > 2 * _CHUNK:
            f.seek(size - _CHUNK)
            h.update(f.read(_CHUNK))
        elif size > _CHUNK:
            h.update(f.read())
    return h.hexdigest()


@dataclass
class Row:
    key: str
    input: str
    size: int | None
    mtime_ns: int | None
    fingerprint: str | None
    params_hash: str | None
    params: dict[str, Any]
    state: str
    attempts: int
    error: str | None
    permanent: bool
    output: str | None
    frames: int | None
    started: float | None
    finished: float | None
    seconds: float | None
    updated: float | None
    # every input stream and what became of it (vsr.media.fidelity), for a done job
    fidelity: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = (
    "key, input, size, mtime_ns, fingerprint, params_hash, params, state, attempts, error, "
    "permanent, output, frames, started, finished, seconds, updated, fidelity"
)
# A version-1 ledger opened read-only (``vsr batch status``) has no fidelity column.
_COLUMNS_V1 = _COLUMNS.replace(", fidelity", ", NULL")


def _row(values: tuple[Any, ...]) -> Row:
    (key, inp, size, mtime_ns, fp, phash, params, state, attempts, error, permanent, output,
     frames, started, finished, seconds, updated, fidelity) = values  # fmt: skip
    return Row(
        key=key,
        input=inp,
        size=size,
        mtime_ns=mtime_ns,
        fingerprint=fp,
        params_hash=phash,
        params=json.loads(params) if params else {},
        state=state,
        attempts=attempts,
        error=error,
        permanent=bool(permanent),
        output=output,
        frames=frames,
        started=started,
        finished=finished,
        seconds=seconds,
        updated=updated,
        fidelity=json.loads(fidelity) if fidelity else None,
    )


class Ledger:
    """The ledger of one output folder. ``Ledger.open(dir)`` for the driver (takes the
    lock, creates the file), ``Ledger.open(dir, readonly=True)`` for status."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: FileLock | None) -> None:
        self.path = path
        self.conn = conn
        names = {r[1] for r in conn.execute("PRAGMA table_info(jobs)").fetchall()}
        self._columns = _COLUMNS if "fidelity" in names else _COLUMNS_V1
        self._lock = lock
        self._mutex = threading.Lock()  # an engine may call back from another thread

    @classmethod
    def open(cls, out_dir: Path, *, readonly: bool = False) -> Ledger:
        path = Path(out_dir) / LEDGER_NAME
        if readonly:
            if not path.is_file():
                raise UsageError(
                    f"no batch ledger in {out_dir}",
                    hint="run `vsr batch INPUT... --out DIR` first",
                )
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
                conn.execute("SELECT count(*) FROM jobs").fetchone()
            except sqlite3.Error as exc:
                raise UsageError(f"cannot read the batch ledger {path}: {exc}") from None
            return cls(path, conn, None)
        lock = _lock(Path(out_dir) / LOCK_NAME)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA wal_autocheckpoint=64")
            conn.execute(f"PRAGMA journal_size_limit={1 << 20}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(
                    f"the batch ledger {path} was written by a newer vsr",
                    hint="upgrade vsr, or use another --out folder",
                )
            conn.executescript(_SCHEMA)
            if version == 1:
                conn.execute("ALTER TABLE jobs ADD COLUMN fidelity TEXT")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            lock.release()
            raise UsageError(f"cannot open the batch ledger {path}: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return cls(path, conn, lock)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        with self._mutex:
            cur = self.conn.execute(f"SELECT {self._columns} FROM jobs ORDER BY key")
            return [_row(v) for v in cur.fetchall()]

    def get(self, key: str) -> Row | None:
        with self._mutex:
            cur = self.conn.execute(f"SELECT {self._columns} FROM jobs WHERE key = ?", (key,))
            values = cur.fetchone()
        return _row(values) if values else None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        with self._mutex:
            rows = self.conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        for state, n in rows:
            out[state] = n
        return out

    # -- writing (the driver only) -------------------------------------------------------

    def recover_running(self) -> list[Row]:
        """Rows left ``running`` by a driver that died: back to ``pending``; returned so
        that their temporary files can be removed."""
        with self._tx() as c:
            cur = c.execute(f"SELECT {self._columns} FROM jobs WHERE state = 'running'")
            rows = [_row(v) for v in cur.fetchall()]
            c.execute(
                "UPDATE jobs SET state = 'pending', error = ?, updated = ? WHERE state = 'running'",
                ("interrupted (the batch stopped while this job ran)", time.time()),
            )
        return rows

    def queue(
        self,
        key: str,
        *,
        input: str,
        size: int,
        mtime_ns: int,
        fingerprint: str,
        params_hash: str,
        params: dict[str, Any],
        output: str,
        reset_attempts: bool,
    ) -> None:
        """Insert or update ``key`` as ``pending`` with this input and these parameters."""
        now = time.time()
        with self._tx() as c:
            # Free the output name if a row that is not this one still holds it (its
            # input is gone from this run and the name was given to this input).
            c.execute("UPDATE jobs SET output = NULL WHERE output = ? AND key != ?", (output, key))
            c.execute(
                """INSERT INTO jobs (key, input, size, mtime_ns, fingerprint, params_hash, params,
                                     state, attempts, error, permanent, output, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, NULL, 0, ?, ?)
                   ON CONFLICT (key) DO UPDATE SET
                       input = excluded.input, size = excluded.size,
                       mtime_ns = excluded.mtime_ns, fingerprint = excluded.fingerprint,
                       params_hash = excluded.params_hash, params = excluded.params,
                       state = 'pending', permanent = 0, output = excluded.output,
                       attempts = CASE WHEN ? THEN 0 ELSE attempts END,
                       error = CASE WHEN ? THEN NULL ELSE error END,
                       frames = NULL, updated = excluded.updated""",
                (
                    key,
                    input,
                    size,
                    mtime_ns,
                    fingerprint,
                    params_hash,
                    json.dumps(params, sort_keys=True),
                    output,
                    now,
                    reset_attempts,
                    reset_attempts,
                ),
            )

    def requeue_failed(self) -> list[str]:
        """Every ``failed`` row back to ``pending`` (``vsr batch retry``); their keys."""
        with self._tx() as c:
            keys = [k for (k,) in c.execute("SELECT key FROM jobs WHERE state = 'failed'")]
            c.execute(
                "UPDATE jobs SET state = 'pending', permanent = 0, updated = ? "
                "WHERE state = 'failed'",
                (time.time(),),
            )
        return keys

    def mark_running(self, key: str) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ?, "
                "finished = NULL, seconds = NULL, updated = ? WHERE key = ?",
                (now, now, key),
            )

    def mark_done(
        self,
        key: str,
        *,
        output: str,
        frames: int,
        seconds: float,
        fidelity: dict[str, Any] | None = None,
    ) -> None:
        now = time.time()
        blob = json.dumps(fidelity) if fidelity else None
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = 'done', error = NULL, permanent = 0, output = ?, "
                "frames = ?, finished = ?, seconds = ?, updated = ?, fidelity = ? WHERE key = ?",
                (output, frames, now, seconds, now, blob, key),
            )

    def mark_failed(self, key: str, *, error: str, permanent: bool, seconds: float) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = 'failed', error = ?, permanent = ?, frames = NULL, "
                "fidelity = NULL, finished = ?, seconds = ?, updated = ? WHERE key = ?",
                (error, int(permanent), now, seconds, now, key),
            )

    def mark_pending(self, key: str, *, error: str | None = None) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = 'pending', error = ?, updated = ? WHERE key = ?",
                (error, time.time(), key),
            )

    def update_input(self, key: str, *, size: int, mtime_ns: int, fingerprint: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET size = ?, mtime_ns = ?, fingerprint = ?, updated = ? "
                "WHERE key = ?",
                (size, mtime_ns, fingerprint, time.time(), key),
            )


def _lock(path: Path) -> FileLock:
    """Take the folder's driver lock (non-blocking) or raise UsageError."""
    return FileLock(
        path,
        blocking=False,
        busy=lambda: UsageError(
            f"another vsr batch is running on {path.parent}",
            hint="wait for it, or use another --out folder",
        ),
    )
