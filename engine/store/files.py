"""The session store: one SQLite file (WAL mode) per session, written as the session runs.

The log is the single source of truth for the console, replay, reports and export. Rows are
buffered in memory and committed at least every ``flush_s`` seconds of wall time (0.5 s by
default), so a SIGKILL loses at most the last second. The file is created with mode 0600 (its
WAL and shared-memory files inherit that mode from SQLite) in a directory of mode 0700, and
holds a pseudonymous patient id only. Each commit carries a checksum of every table as committed
(``digests_so_far`` in meta), replaced at the end of the session by the final ones (``digests``),
so that damage to the file afterwards is seen, whether the session ended or was killed.

Tables (time ``t`` in seconds from session start; see the manual, docs/sessions.md, for columns):
meta, samples, features, decisions, commands, suds, events, scene.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ExposureError

SCHEMA_VERSION = 1
SUFFIX = ".session"
PATIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "samples": (("t", "REAL"), ("wall", "REAL"), ("bpm", "REAL"), ("rr_ms", "TEXT"),
                ("contact", "INTEGER"), ("source", "TEXT")),
    "features": (("t", "REAL"), ("hr", "REAL"), ("baseline", "REAL"), ("hr_delta", "REAL"),
                 ("hr_slope", "REAL"), ("rmssd", "REAL"), ("quality", "REAL"), ("lost", "INTEGER"),
                 ("look_away", "REAL")),
    "decisions": (("t", "REAL"), ("who", "TEXT"), ("name", "TEXT"), ("reason", "TEXT"),
                  ("mode", "TEXT"), ("intensity", "REAL"),
                  ("target_before", "REAL"), ("target_after", "REAL"),
                  ("level_before", "INTEGER"), ("level_after", "INTEGER"),
                  ("level_name_before", "TEXT"), ("level_name_after", "TEXT"),
                  ("proposed", "REAL"), ("shield", "TEXT"), ("obs", "TEXT"), ("info", "TEXT"),
                  ("samples_seen", "INTEGER")),
    "commands": (("t", "REAL"), ("type", "TEXT"), ("origin", "TEXT"), ("payload", "TEXT"),
                 ("accepted", "INTEGER"), ("error", "TEXT")),
    "suds": (("t", "REAL"), ("value", "REAL"), ("origin", "TEXT"), ("asked_t", "REAL"),
             ("level", "INTEGER"), ("intensity", "REAL")),
    "events": (("t", "REAL"), ("kind", "TEXT"), ("detail", "TEXT")),
    "scene": (("t", "REAL"), ("intensity", "REAL"), ("level", "INTEGER"), ("mode", "TEXT"),
              ("paused", "INTEGER"), ("behaviour", "TEXT")),
}
KINDS = tuple(TABLES)

log = logging.getLogger(__name__)
#: columns never NULL in a healthy file; a row lacking one (or holding a value of the wrong
#: type anywhere) comes from a damaged page and is left out by SessionReader, counted
REQUIRED: dict[str, frozenset[str]] = {
    "samples": frozenset({"t", "wall", "rr_ms", "source"}),
    "features": frozenset({"t", "quality", "lost"}),
    "decisions": frozenset({"t", "who", "name", "reason", "mode", "intensity", "target_before", "target_after",
                            "level_before", "level_after", "level_name_before", "level_name_after", "shield"}),
    "commands": frozenset({"t", "type", "origin", "payload", "accepted"}),
    "suds": frozenset({"t", "value", "origin", "level", "intensity"}),
    "events": frozenset({"t", "kind", "detail"}),
    "scene": frozenset({"t", "intensity", "level", "mode", "paused"}),
}
_PYTYPES = {"REAL": (int, float), "INTEGER": (int,), "TEXT": (str,)}


class StoreError(ExposureError):
    """A session file or directory that cannot be used; the message says how to fix it."""


def validate_patient(pid: str) -> str:
    if not isinstance(pid, str) or not PATIENT_RE.match(pid):
        raise StoreError(
            f"patient id {pid!r} is not a pseudonymous code: use 1-32 letters, digits, '-' or '_' "
            "(e.g. P017), never a name")
    return pid


def make_private_dirs(d: Path) -> Path:
    """Create the folder ``d`` and every missing folder above it 0700, whatever the umask
    (``Path.mkdir(parents=True, mode=...)`` gives the parents the umask's mode, and the umask
    masks ``mode``). Folders that exist are left as they are. Raises OSError."""
    d = Path(d).expanduser()
    missing = []
    p = d
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        try:
            m.mkdir(mode=0o700)
        except FileExistsError:
            if not m.is_dir():
                raise
            continue  # made meanwhile by someone else: not ours to change
        os.chmod(m, 0o700)
    if not d.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(d))
    return d


def open_private(path: Path, mode: str = "w", **kwargs):
    """Open a file of patient data for writing, created or truncated, readable by its owner only
    (0600 whatever the umask, also when it existed before)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return open(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def private_dir(d: Path, what: str = "folder") -> Path:
    """A folder for patient data: created 0700 whatever the umask; an existing one that others
    can read or enter is tightened to 0700 with a warning."""
    d = Path(d).expanduser()
    try:
        make_private_dirs(d)
        st = d.stat()
    except OSError as e:
        in_the_way = file_in_the_way(d)
        if in_the_way is not None:
            raise StoreError(f"cannot create {what} {d}: {in_the_way} is a file, not a folder") from None
        raise StoreError(f"cannot create {what} {d}: {e.strerror}") from None
    if not d.is_dir():
        raise StoreError(f"{what} {d} is not a folder")
    if st.st_mode & 0o077:
        try:
            os.chmod(d, 0o700)
        except OSError as e:
            log.warning("%s %s is open to other users (%o) and could not be made private: %s",
                        what, d, st.st_mode & 0o777, e.strerror)
        else:
            log.warning("%s %s was open to other users (%o); made private (700): it holds patient data",
                        what, d, st.st_mode & 0o777)
    return d


def file_in_the_way(d: Path) -> Path | None:
    """The first part of the path ``d`` that exists and is not a folder (so ``d`` cannot be one)."""
    for p in (*reversed(Path(d).parents), Path(d)):
        try:
            if p.exists() and not p.is_dir():
                return p
        except OSError:
            return None
    return None


def private_file(path: Path) -> Path:
    """Make a file of patient data readable by its owner only (0600)."""
    os.chmod(path, 0o600)
    return path


def check_sessions_dir(d: Path) -> Path:
    """A sessions folder to read: an error that says what is wrong if it is a file or unreadable
    (a missing folder is fine: it has no sessions yet)."""
    d = Path(d).expanduser()
    try:
        if d.exists() and not d.is_dir():
            raise StoreError(f"--sessions-dir {d} is a file, not a folder; point it at the folder of session files")
    except OSError as e:  # the folder above cannot be entered
        raise StoreError(f"cannot read sessions dir {d}: {e.strerror}") from None
    if d.exists() and not os.access(d, os.R_OK | os.X_OK):
        raise StoreError(f"cannot read sessions dir {d}: permission denied (ask its owner, or choose "
                         "another with --sessions-dir)")
    return d


def ensure_dir(d: Path) -> Path:
    if Path(d).expanduser().is_file():
        raise StoreError(f"--sessions-dir {d} is a file, not a folder; choose a folder with --sessions-dir")
    try:
        d = private_dir(d, "sessions dir")
    except StoreError as e:
        raise StoreError(f"{e}; choose another with --sessions-dir") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise StoreError(f"sessions dir {d} is not writable; choose another with --sessions-dir")
    return d


def _enc(v):
    if isinstance(v, str):
        return v if v.isascii() else _utf8(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=_json_default)
    if isinstance(v, bool):
        return int(v)
    return v


def _utf8(v: str) -> str:
    """Text SQLite can store: a lone surrogate (which no UTF-8 holds) is kept as its escape
    (``\\ud800``) rather than failing the whole commit and every one after it."""
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


class SessionWriter:
    """Append-only writer of one session file."""

    def __init__(self, sessions_dir: Path, patient: str, meta: dict, flush_s: float = 0.5,
                 session_id: str | None = None):
        validate_patient(patient)
        d = ensure_dir(sessions_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.id = session_id or f"{stamp}-{patient}-{secrets.token_hex(2)}"
        self.path = d / f"{self.id}{SUFFIX}"
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise StoreError(f"session file {self.path} already exists; refusing to overwrite it") from None
        except OSError as e:
            raise StoreError(f"cannot create {self.path}: {e.strerror}; choose another --sessions-dir") from None
        os.close(fd)
        os.chmod(self.path, 0o600)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.execute("BEGIN")
        for sql in SCHEMA_SQL.values():
            self.db.execute(sql)
        self.db.execute("COMMIT")
        self._sql = {name: f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})"
                     for name, cols in TABLES.items()}
        self._buf: dict[str, list[tuple]] = {name: [] for name in TABLES}
        self._meta: dict[str, object] = {}
        self._lock = threading.Lock()  # guards the buffers
        self._db_lock = threading.Lock()  # one flush at a time
        self.flush_s = flush_s
        self.counts = {name: 0 for name in TABLES}
        # per table: rows covered, last rowid covered, SHA-256 of those rows (see flush)
        self._running: dict[str, tuple[int, int, object]] = {name: (0, 0, hashlib.sha256()) for name in TABLES}
        self.closed = False
        self.flush_errors = 0
        self.set_meta(schema_version=SCHEMA_VERSION, session_id=self.id, patient=patient, **meta)
        self.flush()
        # Commits happen on a thread of their own, so a tick never waits on the disk.
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flusher, name=f"store-{self.id}", daemon=True)
        self._thread.start()

    def _flusher(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 — disk full, I/O error, …: keep the rows, retry, say so
                self.flush_errors += 1
                log.error("session %s: could not write to %s (%s); will retry", self.id, self.path, e)

    def set_meta(self, **kv) -> None:
        with self._lock:
            self._meta.update(kv)

    def write(self, kind: str, row: tuple) -> None:
        with self._lock:
            self._buf[kind].append(row)
        self.counts[kind] += 1

    def write_dict(self, kind: str, row: dict) -> None:
        self.write(kind, tuple(row.get(c) for c, _ in TABLES[kind]))

    def flush(self) -> None:
        with self._db_lock:
            if self.closed:
                return
            with self._lock:
                bufs, self._buf = self._buf, {name: [] for name in TABLES}
                meta, self._meta = self._meta, {}
            db = self.db
            try:
                db.execute("BEGIN")
                for name, rows in bufs.items():
                    if rows:
                        db.executemany(self._sql[name], [tuple(_enc(v) for v in r) for r in rows])
                if meta:
                    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   [(k, json.dumps(v, default=_json_default)) for k, v in meta.items()])
                running = self._running_digests(bufs) if any(bufs.values()) or meta else None
                db.execute("COMMIT")
            except Exception:  # whatever failed, nothing is half-written and no row is lost
                if db.in_transaction:
                    db.execute("ROLLBACK")
                with self._lock:  # put the rows back in front, in order, for the next try
                    for name, rows in bufs.items():
                        self._buf[name][:0] = rows
                    self._meta = {**meta, **self._meta}
                raise
            if running:
                self._running.update(running)

    def _running_digests(self, bufs: dict[str, list]) -> dict[str, tuple[int, int, object]]:
        """Inside the flush's transaction: carry each table's checksum over the rows just written
        (read back, as a reader will see them) and write the checksums into meta, so that they
        cover exactly what is committed, and a session killed before its end can be verified too.
        Returns the new per-table state, kept once the transaction commits. The cost is on this
        thread (the tick never waits for it): a few dozen rows read back per flush."""
        new = {}
        for name, rows in bufs.items():
            if not rows:
                continue
            n, last, h = self._running[name]
            h = h.copy()
            for row in self.db.execute(f"SELECT rowid, * FROM {name} WHERE rowid > ? ORDER BY rowid", (last,)):
                h.update(_row_bytes(row[1:]))
                n, last = n + 1, row[0]
            new[name] = (n, last, h)
        state = {**self._running, **new}
        d: dict[str, object] = {name: [n, h.hexdigest()] for name, (n, _, h) in state.items()}
        d["meta"] = table_digests_one(self.db, "meta")
        d["self"] = _self_digest(d)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (RUNNING_KEY, json.dumps(d)))
        return new

    def close(self, **final_meta) -> None:
        if self.closed:
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self.set_meta(**final_meta)
        self.flush()
        # A checksum of each table as written, so a reader can tell a damaged file from a whole one
        # (SQLite has no checksums of its own: a flipped byte in a number is a valid number).
        # They take the place of the checksums written as the session ran (in one transaction: a
        # file holds one or the other), which would otherwise be the one entry the end's don't cover.
        with self._db_lock:
            try:
                self.db.execute("BEGIN")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                (DIGEST_KEY, json.dumps(table_digests(self.db))))
                self.db.execute("DELETE FROM meta WHERE key = ?", (RUNNING_KEY,))
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                log.error("session %s: could not write the final checksums (%s); the file is complete and keeps "
                          "those written as it ran", self.id, e)
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()
            self.closed = True


DIGEST_KEY = "digests"
#: the checksums as the session runs: per table [rows, SHA-256 of those rows], meta's, and "self";
#: written with every commit, so a file whose session never ended (a crash) can be verified too
RUNNING_KEY = "digests_so_far"
#: the table definitions this version writes (a reader compares them with the file's)
SCHEMA_SQL = {"meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
              **{name: f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in cols)})"
                 for name, cols in TABLES.items()}}


def table_digests(db: sqlite3.Connection) -> dict[str, str]:
    """SHA-256 of each table's rows in rowid order (meta: its entries but this one, by key), and
    under "self" one of these, so that damage to the checksums themselves is seen as such."""
    d = {name: table_digests_one(db, name) for name in ("meta", *TABLES)}
    return {**d, "self": _self_digest(d)}


def _self_digest(d: dict) -> str:
    body = json.dumps({k: v for k, v in d.items() if k != "self"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def table_digests_one(db: sqlite3.Connection, name: str) -> str:
    h = hashlib.sha256()
    if name == "meta":  # sorted here, not by its index: the digest is of the table alone
        rows = sorted((r for r in db.execute("SELECT key, value FROM meta ORDER BY rowid")
                       if r[0] not in (DIGEST_KEY, RUNNING_KEY)), key=lambda r: str(r[0]))
    else:
        rows = db.execute(f"SELECT * FROM {name} ORDER BY rowid")
    for row in rows:
        h.update(_row_bytes(row))
    return h.hexdigest()


def _row_bytes(row) -> bytes:
    return repr(tuple(row)).encode("utf-8", "backslashreplace") + b"\n"


def prefix_digest(db: sqlite3.Connection, name: str, n: int) -> tuple[str, int]:
    """SHA-256 of a table's first ``n`` rows in rowid order, and how many rows it has."""
    h = hashlib.sha256()
    count = 0
    for row in db.execute(f"SELECT * FROM {name} ORDER BY rowid"):
        if count < n:
            h.update(_row_bytes(row))
        count += 1
    return h.hexdigest(), count


@dataclass
class SessionInfo:
    id: str
    path: Path
    meta: dict
    counts: dict
    duration_s: float
    problems: list = field(default_factory=list)
    damaged: bool = False

    def summary(self) -> dict:
        m = self.meta
        return {
            "id": self.id,
            "patient": m.get("patient"),
            "scene": m.get("scene"),
            "start": m.get("started_at"),
            "duration_s": round(self.duration_s, 1),
            "samples": self.counts.get("samples", 0),
            "controller": m.get("controller"),
            "ended": m.get("end_reason") or "incomplete (no end recorded: crashed or killed)",
            "no_signal": m.get("no_signal") or None,  # e.g. "no signal: not one sample from … in 0:15"
            "path": str(self.path),
            "damaged": self.damaged,
            "problems": list(self.problems),
        }


# sqlite3 raises UnicodeDecodeError for a damaged schema whose error text is not UTF-8, and
# MemoryError for SQLITE_NOMEM, which a damaged record claiming a huge size gives (session files are
# small: reading one never needs the memory a real shortage would be)
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError, MemoryError)


def _text(b: bytes) -> str:
    # Text from a damaged page may not be UTF-8: read it with replacement characters rather
    # than fail the whole table (JSON columns that no longer parse are then left out as damage).
    return b.decode("utf-8", "replace")


class SessionReader:
    """Read a session file; tolerant of a file cut short or damaged by a crash.

    What is intact is read; what is not is named in :attr:`problems` (one line each), never
    raised: a table whose pages are damaged yields the rows before the damage, a file of an
    older schema version yields its columns under today's names (missing ones empty). Only a
    file with nothing readable at all (no meta table, an unreadable header) raises StoreError.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            if not self.path.exists():
                raise StoreError(f"no session file at {self.path}")
            if self.path.is_dir():
                raise StoreError(f"{self.path} is a folder, not a session file")
        except OSError as e:
            raise StoreError(f"cannot read {self.path}: {e.strerror}") from None
        if not os.access(self.path, os.R_OK):
            raise StoreError(f"cannot read {self.path}: permission denied")
        #: one line per thing that could not be read (damage, older schema); empty when whole
        self._problems: list[str] = []
        self._integrity = ""  # SQLite's integrity check, when it fails
        self.damaged = False
        #: tables whose content is known to be damaged (one problem line each), and whether the
        #: file as a whole failed SQLite's integrity check
        self.damaged_tables: set[str] = set()
        self.file_damaged = False
        self._verified = False
        self._digests_ok = False
        try:
            # Open read-write when we can so SQLite replays a WAL left by a killed writer
            # (the frames are recovered, nothing is modified).
            mode = "rw" if os.access(self.path, os.W_OK) else "ro"
            self.db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True)
            self.db.text_factory = _text
        except sqlite3.Error as e:
            raise StoreError(f"{self.path} is not a readable session file ({e}); it may be corrupt") from None
        try:
            version, names = self._schema()
        except _DB_ERRORS as e:
            # A file cut short (a crash, a full disk, a partial copy) is shorter than its header
            # says; SQLite refuses it unless told to trust the file's real size. We never write
            # the schema: the file is reopened read-only for that.
            self.db.close()
            try:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                self.db.text_factory = _text
                self.db.execute("PRAGMA writable_schema=ON")
                version, names = self._schema()
            except _DB_ERRORS:
                self.db.close()
                raise StoreError(f"{self.path} is not a readable session file ({e}); it may be corrupt") from None
            self._problem(f"the file is damaged or cut short ({e}); reading the parts that are intact")
            self.file_damaged = True
        if "meta" not in names:
            self.db.close()
            raise StoreError(f"{self.path} is not a session file (no meta table)")
        version = self._header_version(version, names)
        if version > SCHEMA_VERSION:
            self.db.close()
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this software reads "
                f"({SCHEMA_VERSION}); upgrade exposure to read it")
        self.schema_version = version
        self._present: dict[str, set[str]] = {}
        for t in [t for t in KINDS if t in names]:
            try:
                self._present[t] = {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")}
            except _DB_ERRORS as e:
                self._problem(f"table {t} is unreadable ({e}); read as empty")
        self.tables = [t for t in KINDS if t in self._present]
        if version < SCHEMA_VERSION:
            gaps = [f"{t}.{c}" for t in self.tables for c, _ in TABLES[t] if c not in self._present[t]]
            self._problem(damage=False, msg=f"older schema version {version} (this software writes {SCHEMA_VERSION})"
                          + (f"; columns it lacks read as empty: {', '.join(gaps)}" if gaps else ""))
        missing = [t for t in KINDS if t not in names]
        if missing:
            self._problem(f"tables missing: {', '.join(missing)} (read as empty)", damage=version >= SCHEMA_VERSION)
            if version >= SCHEMA_VERSION:  # this version writes every table: a missing one is damage
                self.damaged_tables.update(missing)
        self.meta = {}
        try:
            for k, v in self.db.execute("SELECT key, value FROM meta"):
                try:
                    self.meta[k] = json.loads(v)
                except (TypeError, ValueError):  # the writer stores JSON only: this is damage
                    self._problem(f"meta entry {k!r} is damaged and left out", table="meta")
        except _DB_ERRORS as e:
            self._problem(f"meta is damaged ({e}); read {len(self.meta)} entries", table="meta")
        self.id = self.meta.get("session_id", self.path.stem)

    def _header_version(self, version: int, names: set[str]) -> int:
        """The schema version in the file header, checked against the one the writer also put in
        meta: a header that disagrees is damage (a flipped byte), not a different version."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            mv = json.loads(row[0]) if row else None
        except (*_DB_ERRORS, TypeError, ValueError):
            return version
        if isinstance(mv, int) and not isinstance(mv, bool) and mv != version and 0 <= mv <= SCHEMA_VERSION:
            self._problem(f"the file header is damaged (schema version {version}; the session recorded {mv})")
            return mv
        return version

    def _schema(self) -> tuple[int, set[str]]:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        names = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return version, names

    def _problem(self, msg: str, damage: bool = True, table: str | None = None) -> None:
        #: True once anything could not be read because the file is damaged (not for an older
        #: schema): a caller that must have all or nothing (single-session export) checks it
        self.damaged = self.damaged or damage
        if table is not None:  # one line per damaged table: the first thing found
            if table in self.damaged_tables:
                return
            self.damaged_tables.add(table)
        if msg not in self._problems:
            self._problems.append(msg)

    @property
    def problems(self) -> list[str]:
        """One line per problem. The integrity check's line is left out when a damaged table
        already says where the damage is (one damage, one line)."""
        if self._integrity and not self.damaged_tables:
            return [self._integrity, *self._problems]
        return list(self._problems)

    def verify(self) -> bool:
        """Check the whole file once: SQLite's integrity check, then each table against the
        checksum written when the session ended. Returns True when nothing is damaged."""
        if self._verified:
            return not self.damaged
        self._verified = True
        try:
            # integrity_check, not quick_check: it also compares indexes with their tables (the
            # meta keys), which a flipped byte in a key would otherwise slip past
            res = [str(r[0]) for r in self.db.execute("PRAGMA integrity_check(3)")]
        except _DB_ERRORS as e:
            res = [str(e)]
        if res != ["ok"]:
            self.file_damaged = True
            first = " ".join(res[0].replace("*** in database main ***", "").split())
            self._integrity = f"the file is damaged (SQLite integrity check: {first[:120]})"
            self.damaged = True
        if self.schema_version == SCHEMA_VERSION:
            try:
                have = dict(self.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
            except _DB_ERRORS:
                have = {}
            bad = sorted(n for n, sql in SCHEMA_SQL.items() if n in have and have[n] != sql)
            if bad:  # a column renamed by a flipped byte would read as empty: the table is not to be trusted
                self.file_damaged = True
                for n in bad:
                    self._problem(f"the definition of table {n} is damaged", table=n)
        want = self.meta.get(DIGEST_KEY)
        if isinstance(want, dict) and want.get("self") != _self_digest(want):
            self.file_damaged = True
            self._problem("the checksums written when the session ended are damaged: the file cannot be verified",
                          table="meta")
        elif isinstance(want, dict):
            self._digests_ok = True
            for name in ("meta", *KINDS):
                if name not in want or name in self.damaged_tables:
                    continue
                if name != "meta" and name not in self.tables:
                    continue
                try:
                    got = table_digests_one(self.db, name)
                except _DB_ERRORS as e:
                    self._problem(f"table {name} is damaged ({e})", table=name)
                    continue
                if got != want[name]:
                    self._problem(f"table {name} was damaged or changed since the session ended "
                                  "(its checksum does not match)", table=name)
        elif isinstance(running := self.meta.get(RUNNING_KEY), dict):
            self._verify_running(running)  # a session that never ended (or its end checksums are lost)
        # else: a file written before checksums were, or whose checksum entries are damaged (a problem)
        return not self.damaged

    def _verify_running(self, running: dict) -> None:
        """Each table against the checksums written with the last commit: the rows they cover
        (all of the table's: rows and checksums are committed together)."""
        if running.get("self") != _self_digest(running):
            self.file_damaged = True
            self._problem("the checksums written as the session ran are damaged: the file cannot be verified",
                          table="meta")
            return
        self._digests_ok = True
        for name in ("meta", *KINDS):
            if name not in running or name in self.damaged_tables or (name != "meta" and name not in self.tables):
                continue
            try:
                if name == "meta":
                    ok = table_digests_one(self.db, "meta") == running["meta"]
                else:
                    n, want = running[name]
                    got, count = prefix_digest(self.db, name, int(n))
                    ok = got == want and count == n
            except _DB_ERRORS as e:
                self._problem(f"table {name} is damaged ({e})", table=name)
                continue
            except (TypeError, ValueError):  # a well-formed entry that is not ours: the checksums are not usable
                self.file_damaged = True
                self._problem("the checksums written as the session ran are damaged: the file cannot be verified",
                              table="meta")
                return
            if not ok:
                self._problem(f"table {name} was damaged or changed since it was written (its checksum does not "
                              "match)", table=name)

    def unsure(self, *tables: str) -> bool:
        """True when facts drawn from these tables cannot be established: one of them is
        damaged, or the file failed the integrity check and has no checksums to clear them."""
        self.verify()
        if any(t in self.damaged_tables for t in tables):
            return True
        return self.file_damaged and not self._digests_ok

    def columns(self, kind: str) -> list[str]:
        return [c for c, _ in TABLES[kind]]

    def _select(self, kind: str) -> str:
        have = self._present.get(kind, set())
        cols = ", ".join(c if c in have else f"NULL AS {c}" for c, _ in TABLES[kind])
        return f"SELECT {cols} FROM {kind} ORDER BY rowid"

    def rows(self, kind: str) -> list[tuple]:
        """Rows of one record kind in today's column order; the intact ones if damaged."""
        if kind not in self.tables:
            return []
        out: list[tuple] = []
        have = self._present.get(kind, set())
        checks = [(_PYTYPES[typ], c in REQUIRED[kind] and c in have) for c, typ in TABLES[kind]]
        bad = 0
        try:
            for r in self.db.execute(self._select(kind)):
                if all((v is None and not req) or (isinstance(v, ty) and not isinstance(v, bool))
                       for v, (ty, req) in zip(r, checks, strict=True)):
                    out.append(r)
                else:
                    bad += 1
        except _DB_ERRORS as e:
            self._problem(f"table {kind} is damaged ({e}); read the {len(out)} rows before the damage", table=kind)
        if bad:
            self._problem(f"{bad} damaged {kind} row(s) left out (missing or mistyped values)", table=kind)
        return out

    def records(self, kind: str) -> list[dict]:
        names = self.columns(kind)
        return [dict(zip(names, r, strict=True)) for r in self.rows(kind)]

    def count(self, kind: str) -> int:
        if kind not in self.tables:
            return 0
        try:
            return self.db.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()[0]
        except _DB_ERRORS as e:
            self._problem(f"table {kind} is damaged ({e})", table=kind)
            return len(self.rows(kind))

    def last_t(self) -> float:
        best = 0.0
        for kind in ("samples", "scene", "decisions", "events"):
            if kind in self.tables:
                try:
                    v = self.db.execute(f"SELECT MAX(t) FROM {kind}").fetchone()[0]
                except _DB_ERRORS:
                    ts = [r[0] for r in self.rows(kind) if isinstance(r[0], (int, float))]
                    v = max(ts) if ts else None
                if isinstance(v, (int, float)) and math.isfinite(v):
                    best = max(best, v)
        return best

    def info(self) -> SessionInfo:
        dur = self.meta.get("duration_s")
        if not isinstance(dur, (int, float)) or isinstance(dur, bool) or not math.isfinite(dur):
            dur = self.last_t()
        self.verify()
        return SessionInfo(self.id, self.path, self.meta,
                           {k: self.count(k) for k in self.tables}, float(dur), list(self.problems), self.damaged)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def list_sessions(sessions_dir: Path) -> tuple[list[SessionInfo], list[str]]:
    """All sessions in a directory, oldest first, and one line per file that could not be read."""
    d = check_sessions_dir(sessions_dir)
    if not d.exists():
        return [], []
    infos, problems = [], []
    for p in sorted(d.glob(f"*{SUFFIX}")):
        try:
            with SessionReader(p) as r:
                infos.append(r.info())
        except StoreError as e:
            problems.append(str(e))
    # the start to the second, then its fraction (several sessions may start in one second)
    infos.sort(key=lambda i: (str(i.meta.get("started_at", "")), _float(i.meta.get("started_wall")), i.id))
    return infos, problems


def find_session(sessions_dir: Path, ref: str) -> Path:
    """A session by id, unique id prefix, or path."""
    p = Path(ref).expanduser()
    try:
        if p.suffix == SUFFIX and p.exists():
            return p
    except OSError as e:
        raise StoreError(f"cannot read {p}: {e.strerror}") from None
    d = check_sessions_dir(sessions_dir)
    exact = d / f"{ref}{SUFFIX}"
    if exact.exists():
        return exact
    matches = sorted(d.glob(f"{ref}*{SUFFIX}")) if d.exists() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise StoreError(f"session {ref!r} is ambiguous in {d}: {len(matches)} match; give more of the id")
    raise StoreError(f"no session {ref!r} in {d}; list them with 'exposure sessions --sessions-dir {d}'")


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0
