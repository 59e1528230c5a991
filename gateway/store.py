"""The gateway's job store: jobs, their event logs, checkpointed tiles, results, presets and uploads.

`JobStore` is the interface the gateway codes against; `SqliteJobStore` is the embedded default (one
SQLite file for rows, a `BlobStore` for bytes), so a cluster can swap in a shared database and volume.
Specs, results, errors, events and preset settings are stored as the serialized proto messages the
gateway hands in (`JobSpec`, `JobResult`, `JobError`, `JobEvent`, `UpscaleSettings`); the store reads
only the columns it filters on.

Guarantees:

- Event seqs are assigned here: 1, 2, 3... per job, without gaps, in commit order, also under
  concurrent appends (the seq is bumped on the job's row inside the inserting transaction).
- A checkpoint, result or image row is written only after its blob is complete on disk, so a row always
  names a whole blob; a crash between the two leaves an unreferenced blob, never a dangling row.
- Deleting removes the rows first, then the blobs.
- Every call is thread-safe (the gateway calls the store through `asyncio.to_thread`); writes run in
  `BEGIN IMMEDIATE` transactions.

New events are announced through `EventNotifier` (`store.notifier`), so WatchJob waits instead of
polling::

    seen = after_seq
    while True:
        for event in await asyncio.to_thread(store.events_after, job_id, seen):
            yield event
            seen = event.seq
        if job_has_ended:
            break
        try:
            async with asyncio.timeout(5.0):
                await store.notifier.wait(job_id, seen)
        except TimeoutError:
            yield heartbeat  # and loop: the next events_after doubles as a poll

The notifier is in-process only; with a database shared by several gateways the timeout makes the loop
a 5 s poll for events appended elsewhere.

Errors raised: NotFound (unknown job, result, preset or image; names the id), AlreadyExists (a preset
name or idempotency key that is taken), FailedPrecondition (a state change the job's state does not
allow, deleting an unfinished job), InvalidArgument (a bad name, page size or page token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.blobs import BlobStore
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from tilesmith.v1 import gateway_pb2 as pb

__all__ = [
    "FINAL_RESULT",
    "SCHEMA_VERSION",
    "EventNotifier",
    "EventRecord",
    "ImageMeta",
    "ImageRecord",
    "JobRecord",
    "JobStore",
    "PresetRecord",
    "PurgeReport",
    "SqliteJobStore",
]

#: The name `put_result` / `get_result` use for a job's final image; intermediates use their own names.
FINAL_RESULT = "final"

QUEUED, RUNNING = pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING
SUCCEEDED, FAILED, CANCELLED = pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})

# Legal state changes. RUNNING -> QUEUED puts a job back in the queue (a gateway shutting down, or one
# restarted that resumes later); QUEUED -> FAILED is a job that fails before it starts.
_TRANSITIONS: dict[int, frozenset[int]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

_PRESET_NAME = re.compile(r"[A-Za-z0-9 _.-]{1,100}")
_RESULT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_PRESET_DESCRIPTION = 2000
_MAX_LABEL = 200
_MAX_IDEMPOTENCY_KEY = 128


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job. Times are Unix seconds; `started` / `finished` are None until they happen."""

    id: str
    kind: int  # tilesmith.v1.JobKind
    state: int  # tilesmith.v1.JobState
    spec: bytes  # serialized JobSpec, resolved seed written in
    label: str
    seed: int
    created: float
    started: float | None
    finished: float | None
    stage: int  # tilesmith.v1.JobStage running now
    tiles_done: int
    tiles_total: int
    result: bytes  # serialized JobResult; empty until SUCCEEDED
    error: bytes  # serialized JobError; empty unless FAILED
    last_seq: int  # seq of the latest logged event, 0 before the first
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One logged event: `payload` is the serialized JobEvent, `kind` its oneof field name."""

    job_id: str
    seq: int
    time: float
    kind: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PresetRecord:
    """A named preset: `settings` is the serialized UpscaleSettings."""

    name: str
    description: str
    settings: bytes
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """What the gateway learned decoding an upload (the store does not decode)."""

    width: int
    height: int
    has_alpha: bool
    encoding: int  # tilesmith.v1.ImageEncoding detected from the bytes
    filename: str = ""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A stored upload. `image_id` is derived from the bytes, so the same bytes get the same id."""

    image_id: str
    sha256: str
    size_bytes: int
    meta: ImageMeta
    created: float


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What `purge_expired` removed."""

    jobs: int
    images: int


# ---------------------------------------------------------------------------------------------------
# Event notifier
# ---------------------------------------------------------------------------------------------------


class EventNotifier:
    """Wakes coroutines waiting for a job's next event; `notify` may be called from any thread.

    It remembers the latest seq announced per job, so a waiter that read the log up to `seen_seq`
    cannot miss an event committed between its read and its wait: `wait` returns at once when a newer
    seq has already been announced.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def notify(self, job_id: str, seq: int) -> None:
        """Announces that `job_id` has logged events up to `seq` and wakes its waiters."""
        with self._lock:
            self._latest[job_id] = max(seq, self._latest.get(job_id, 0))
            waiters = self._waiters.pop(job_id, set())
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed: nobody to wake
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, job_id: str, seen_seq: int) -> None:
        """Returns once an event newer than `seen_seq` has been announced for `job_id`.

        Bound it with `asyncio.timeout` (WatchJob's heartbeat interval); a cancelled or timed-out wait
        leaves nothing behind.

        Args:
            job_id: The job to wait on.
            seen_seq: The last seq the caller has read from the log.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._latest.get(job_id, 0) > seen_seq:
                return
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            await future
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiters[job_id]

    def forget(self, job_id: str) -> None:
        """Drops what is remembered about a deleted job."""
        with self._lock:
            self._latest.pop(job_id, None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ---------------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------------


class JobStore(Protocol):
    """Everything the gateway persists. Arguments are documented here once; see `SqliteJobStore`."""

    notifier: EventNotifier

    # --- Jobs ---

    def create_job(
        self, kind: int, spec: bytes, seed: int, label: str = "", idempotency_key: str | None = None
    ) -> JobRecord:
        """Stores a new QUEUED job with a generated id.

        Args:
            kind: The JobKind (not UNSPECIFIED).
            spec: The serialized JobSpec, resolved seed written in.
            seed: The resolved seed.
            label: JobSpec.label, for the history; at most 200 characters.
            idempotency_key: SubmitJobRequest.idempotency_key; None or "" for none. AlreadyExists when a
                kept job has it (fetch that one with `find_job_by_idempotency_key`).
        """
        ...

    def get_job(self, job_id: str) -> JobRecord:
        """One job. NotFound naming `job_id`."""
        ...

    def find_job_by_idempotency_key(self, key: str) -> JobRecord | None:
        """The kept job submitted with `key`, if any."""
        ...

    def list_jobs(
        self,
        states: Iterable[int] | None = None,
        kinds: Iterable[int] | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[JobRecord], str]:
        """Jobs newest first (created time, then id), one page at a time.

        Args:
            states: Only jobs in these JobStates; None or empty: all.
            kinds: Only jobs of these JobKinds; None or empty: all.
            page_size: Jobs per page, 1..500.
            page_token: "" for the first page, else the token the previous page returned (with the same
                filters). Pages are keyset cursors: jobs created meanwhile do not shift later pages.

        Returns:
            The page and the next page's token ("" on the last page).
        """
        ...

    def running_jobs(self) -> list[JobRecord]:
        """RUNNING jobs, oldest first: the ones a restarted gateway resumes from their checkpoints."""
        ...

    def queued_jobs(self) -> list[JobRecord]:
        """QUEUED jobs, oldest first: the queue a restarted gateway rebuilds."""
        ...

    def set_state(
        self, job_id: str, state: int, *, result: bytes | None = None, error: bytes | None = None
    ) -> JobRecord:
        """Moves a job to `state`: QUEUED -> RUNNING | CANCELLED | FAILED; RUNNING -> SUCCEEDED | FAILED |
        CANCELLED | QUEUED. Anything else (a job that has ended, among others) is FailedPrecondition, so
        a cancel racing a success has exactly one winner. Entering RUNNING sets `started` the first
        time; a terminal state sets `finished`.

        Args:
            job_id: The job.
            state: The new JobState.
            result: The serialized JobResult to store with it (SUCCEEDED); None keeps what is stored.
            error: The serialized JobError to store with it (FAILED); None keeps what is stored.

        Returns:
            The job after the change.
        """
        ...

    def update_progress(self, job_id: str, *, stage: int, tiles_done: int, tiles_total: int) -> None:
        """Records the running JobStage and tile counts (JobProgress)."""
        ...

    def set_seed(self, job_id: str, seed: int) -> None:
        """Records the seed a job ran with once it is known (REFERENCE: the provider's)."""
        ...

    def delete_job(self, job_id: str) -> None:
        """Deletes an ended job with its events, checkpoints and results (rows, then blobs).
        FailedPrecondition for a QUEUED or RUNNING job; NotFound naming `job_id`."""
        ...

    # --- Events ---

    def append_event(self, job_id: str, kind: str, payload: bytes, at: float | None = None) -> int:
        """Logs an event and returns its seq (last_seq + 1), then wakes the job's waiters.

        Args:
            job_id: The job.
            kind: The JobEvent oneof field name ("tile_done", "succeeded", ...).
            payload: The serialized JobEvent. The seq is assigned here, so the gateway writes it into
                the event it streams, not necessarily into the payload.
            at: The event's time, Unix seconds; None: now.
        """
        ...

    def events_after(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Logged events with seq > `after_seq`, in order, at most `limit` (1..10000). NotFound for an
        unknown job; an `after_seq` at or past the end gives an empty list."""
        ...

    # --- Checkpoints and results ---

    def checkpoint_tile(self, job_id: str, stage: str, index: int, data: bytes) -> None:
        """Stores a finished tile (replacing an earlier one at the same place).

        Args:
            job_id: The job.
            stage: The pass: "redraw", "seam_fix", "region" (lowercase, digits and "_").
            index: The tile's (or region's) index in that pass.
            data: The tile's pixels, in whatever encoding the gateway restores from.
        """
        ...

    def checkpointed_tiles(self, job_id: str, stage: str) -> dict[int, bytes]:
        """Every checkpointed tile of a pass, by index."""
        ...

    def clear_checkpoints(self, job_id: str) -> None:
        """Drops a job's checkpoints (once it has ended and they are no longer needed)."""
        ...

    def checkpoint_count(self, job_id: str) -> int:
        """How many tiles a job has checkpointed, over every pass."""
        ...

    def put_result(self, job_id: str, name: str, data: bytes) -> None:
        """Stores a job's final image (`FINAL_RESULT`) or an intermediate ("preupscaled", ...),
        replacing one of the same name. Names: lowercase letters, digits and "_", 1..64."""
        ...

    def get_result(self, job_id: str, name: str = FINAL_RESULT) -> bytes:
        """A stored result. NotFound naming `job_id` or `name`."""
        ...

    def result_names(self, job_id: str) -> list[str]:
        """Names of a job's stored results, in the order they were stored."""
        ...

    def purge_expired(self, retention_seconds: float, now: float | None = None) -> PurgeReport:
        """Deletes ended jobs that finished, and uploads made, more than `retention_seconds` before
        `now` (None: the current time). Unfinished jobs are never purged."""
        ...

    # --- Presets ---

    def save_preset(
        self, name: str, settings: bytes, description: str = "", *, overwrite: bool = True
    ) -> PresetRecord:
        """Creates or replaces a preset (replacing keeps its created time).

        Args:
            name: 1..100 characters: letters, digits, space, ".", "_", "-".
            settings: The serialized UpscaleSettings.
            description: Free text, at most 2000 characters.
            overwrite: False refuses a taken name with AlreadyExists.
        """
        ...

    def get_preset(self, name: str) -> PresetRecord:
        """One preset. NotFound naming `name`."""
        ...

    def list_presets(self) -> list[PresetRecord]:
        """Every preset, sorted by name."""
        ...

    def delete_preset(self, name: str) -> None:
        """Deletes a preset. NotFound naming `name`."""
        ...

    # --- Uploaded images ---

    def put_image(self, data: bytes, meta: ImageMeta) -> ImageRecord:
        """Stores an upload; the same bytes again return the same record (its retention restarted)."""
        ...

    def get_image(self, image_id: str) -> ImageRecord:
        """An upload's record. NotFound naming `image_id`."""
        ...

    def read_image(self, image_id: str) -> bytes:
        """An upload's bytes. NotFound naming `image_id`."""
        ...

    def delete_image(self, image_id: str) -> None:
        """Deletes an upload. NotFound naming `image_id`."""
        ...

    def close(self) -> None:
        """Closes the database."""
        ...


# ---------------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------------

# Each migration moves the schema from version i to i + 1; applied in order at open, in one transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind INTEGER NOT NULL,
            state INTEGER NOT NULL,
            spec BLOB NOT NULL,
            label TEXT NOT NULL,
            seed INTEGER NOT NULL,
            idempotency_key TEXT UNIQUE,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            stage INTEGER NOT NULL DEFAULT 0,
            tiles_done INTEGER NOT NULL DEFAULT 0,
            tiles_total INTEGER NOT NULL DEFAULT 0,
            result BLOB NOT NULL DEFAULT x'',
            error BLOB NOT NULL DEFAULT x'',
            last_seq INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_newest_first ON jobs (created DESC, id DESC)",
        "CREATE INDEX jobs_by_state ON jobs (state, created)",
        """CREATE TABLE events (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            PRIMARY KEY (job_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE checkpoints (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            tile_index INTEGER NOT NULL,
            blob_key TEXT NOT NULL,
            PRIMARY KEY (job_id, stage, tile_index)
        ) WITHOUT ROWID""",
        """CREATE TABLE results (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            blob_key TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (job_id, name)
        )""",
        """CREATE TABLE presets (
            name TEXT PRIMARY KEY,
            description TEXT NOT NULL,
            settings BLOB NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL
        )""",
        """CREATE TABLE images (
            image_id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            blob_key TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            has_alpha INTEGER NOT NULL,
            encoding INTEGER NOT NULL,
            filename TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX images_by_created ON images (created)",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION = len(_MIGRATIONS)

_JOB_COLUMNS = (
    "id, kind, state, spec, label, seed, created, started, finished, stage, tiles_done, tiles_total,"
    " result, error, last_seq, idempotency_key"
)


class SqliteJobStore:
    """`JobStore` on one SQLite file (WAL, foreign keys) plus a `BlobStore` for bytes.

    One connection shared by every thread behind a lock: the gateway's store calls are short, and
    SQLite serialises writers anyway. `busy_timeout` lets several processes share the file.

    Args:
        path: The database file; its folder is created when missing.
        blobs: Where checkpoints, results and uploads are kept.
        clock: Current Unix time; injectable for tests.
    """

    def __init__(
        self,
        path: str | Path,
        blobs: BlobStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        self.notifier = EventNotifier()
        self._clock = clock
        self._lock = threading.RLock()
        # isolation_level=None: no implicit transactions; `_write` opens each one explicitly.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    # --- Plumbing ---

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            if version > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"the job database has schema version {version}, newer than this gateway's "
                    f"{SCHEMA_VERSION}: upgrade the gateway"
                )
            for migration in _MIGRATIONS[version:]:
                for statement in migration:
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._read() as db:
            return db.execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _job_row(self, db: sqlite3.Connection, job_id: str) -> JobRecord:
        row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id {job_id!r}: no such job")
        return JobRecord(*row)

    # --- Jobs ---

    def create_job(
        self, kind: int, spec: bytes, seed: int, label: str = "", idempotency_key: str | None = None
    ) -> JobRecord:
        # 1. Check inputs.
        if kind not in pb.JobKind.values() or kind == pb.JOB_KIND_UNSPECIFIED:
            raise InvalidArgument("kind", f"{kind!r} is not a JobKind")
        if len(label) > _MAX_LABEL:
            raise InvalidArgument("label", f"{len(label)} characters; at most {_MAX_LABEL} allowed")
        key = idempotency_key or None
        if key is not None and len(key) > _MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(
                "idempotency_key", f"{len(key)} characters; at most {_MAX_IDEMPOTENCY_KEY} allowed"
            )
        # 2. Insert; the unique index turns a taken idempotency key into AlreadyExists, also under races.
        record = JobRecord(
            id=uuid.uuid4().hex,
            kind=kind,
            state=QUEUED,
            spec=spec,
            label=label,
            seed=seed,
            created=self._clock(),
            started=None,
            finished=None,
            stage=pb.JOB_STAGE_UNSPECIFIED,
            tiles_done=0,
            tiles_total=0,
            result=b"",
            error=b"",
            last_seq=0,
            idempotency_key=key,
        )
        try:
            with self._write() as db:
                db.execute(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                    dataclasses.astuple(record),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"idempotency_key {key!r} belongs to another job") from exc
        return record

    def get_job(self, job_id: str) -> JobRecord:
        with self._read() as db:
            return self._job_row(db, job_id)

    def find_job_by_idempotency_key(self, key: str) -> JobRecord | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else JobRecord(*row)

    def list_jobs(
        self,
        states: Iterable[int] | None = None,
        kinds: Iterable[int] | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[JobRecord], str]:
        # 1. Check inputs.
        if not 1 <= page_size <= 500:
            raise InvalidArgument("page_size", f"{page_size} is out of range; allowed 1..500")
        states = _enum_values("states", states, pb.JobState)
        kinds = _enum_values("kinds", kinds, pb.JobKind)
        # 2. Build the query: filters, then the keyset cursor (rows strictly after the last one seen).
        where: list[str] = []
        params: list[object] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if page_token:
            created, job_id = _decode_page_token(page_token)
            where.append("(created < ? OR (created = ? AND id < ?))")
            params.extend((created, created, job_id))
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        params.append(page_size + 1)
        # 3. One row past the page tells whether another page follows.
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        records = [JobRecord(*row) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            next_token = _encode_page_token(records[-1].created, records[-1].id)
        return records, next_token

    def running_jobs(self) -> list[JobRecord]:
        return self._jobs_in_state(RUNNING)

    def queued_jobs(self) -> list[JobRecord]:
        return self._jobs_in_state(QUEUED)

    def _jobs_in_state(self, state: int) -> list[JobRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? ORDER BY created, id", (state,)
            ).fetchall()
        return [JobRecord(*row) for row in rows]

    def set_state(
        self, job_id: str, state: int, *, result: bytes | None = None, error: bytes | None = None
    ) -> JobRecord:
        if state not in _TRANSITIONS:
            raise InvalidArgument("state", f"{state!r} is not a JobState")
        with self._write() as db:
            # 1. Check the transition against the state as stored, inside the transaction.
            job = self._job_row(db, job_id)
            if state not in _TRANSITIONS[job.state]:
                raise FailedPrecondition(
                    f"job {job_id!r} is {pb.JobState.Name(job.state)}; it cannot become "
                    f"{pb.JobState.Name(state)}"
                )
            # 2. Write the state with its times and, when given, the result or error.
            now = self._clock()
            db.execute(
                """UPDATE jobs SET state = ?,
                    started = CASE WHEN ? AND started IS NULL THEN ? ELSE started END,
                    finished = CASE WHEN ? THEN ? ELSE finished END,
                    result = COALESCE(?, result),
                    error = COALESCE(?, error)
                WHERE id = ?""",
                (state, state == RUNNING, now, state in TERMINAL_STATES, now, result, error, job_id),
            )
            return self._job_row(db, job_id)

    def update_progress(self, job_id: str, *, stage: int, tiles_done: int, tiles_total: int) -> None:
        with self._write() as db:
            updated = db.execute(
                "UPDATE jobs SET stage = ?, tiles_done = ?, tiles_total = ? WHERE id = ?",
                (stage, tiles_done, tiles_total, job_id),
            ).rowcount
        if not updated:
            raise NotFound(f"job_id {job_id!r}: no such job")

    def set_seed(self, job_id: str, seed: int) -> None:
        with self._write() as db:
            if db.execute("UPDATE jobs SET seed = ? WHERE id = ?", (seed, job_id)).rowcount == 0:
                raise NotFound(f"job_id {job_id!r}: no such job")

    def delete_job(self, job_id: str) -> None:
        with self._write() as db:
            # 1. Only ended jobs: a running one would write checkpoints into a deleted job.
            job = self._job_row(db, job_id)
            if job.state not in TERMINAL_STATES:
                raise FailedPrecondition(
                    f"job {job_id!r} is {pb.JobState.Name(job.state)}; cancel it before deleting it"
                )
            # 2. Remove the rows (events, checkpoints and results cascade), remembering the blobs.
            keys = self._blob_keys_of(db, [job_id])
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        # 3. Then the blobs: a crash here leaves unreferenced files, never rows without files.
        self._delete_blobs(keys)
        self.notifier.forget(job_id)

    @staticmethod
    def _blob_keys_of(db: sqlite3.Connection, job_ids: list[str]) -> list[str]:
        marks = ", ".join("?" * len(job_ids))
        rows = db.execute(
            f"SELECT blob_key FROM checkpoints WHERE job_id IN ({marks})"
            f" UNION ALL SELECT blob_key FROM results WHERE job_id IN ({marks})",
            (*job_ids, *job_ids),
        ).fetchall()
        return [key for (key,) in rows]

    def _delete_blobs(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.blobs.delete(key)

    # --- Events ---

    def append_event(self, job_id: str, kind: str, payload: bytes, at: float | None = None) -> int:
        if not kind:
            raise InvalidArgument("kind", "an event kind is required, e.g. 'tile_done'")
        with self._write() as db:
            # 1. Bump the job's last_seq: the row lock of this transaction makes seqs gap-free.
            row = db.execute(
                "UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (job_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"job_id {job_id!r}: no such job")
            seq = row[0]
            # 2. Log the event under it.
            db.execute(
                "INSERT INTO events (job_id, seq, time, kind, payload) VALUES (?, ?, ?, ?, ?)",
                (job_id, seq, self._clock() if at is None else at, kind, payload),
            )
        # 3. Committed: wake the watchers.
        self.notifier.notify(job_id, seq)
        return seq

    def events_after(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        if after_seq < 0:
            raise InvalidArgument("after_seq", f"{after_seq} is negative; allowed 0 or more")
        if not 1 <= limit <= 10_000:
            raise InvalidArgument("limit", f"{limit} is out of range; allowed 1..10000")
        with self._read() as db:
            self._job_row(db, job_id)
            rows = db.execute(
                "SELECT job_id, seq, time, kind, payload FROM events"
                " WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after_seq, limit),
            ).fetchall()
        return [EventRecord(*row) for row in rows]

    # --- Checkpoints and results ---

    def checkpoint_tile(self, job_id: str, stage: str, index: int, data: bytes) -> None:
        if _STAGE_NAME.fullmatch(stage) is None:
            raise InvalidArgument("stage", f"{stage!r}: lowercase letters, digits and '_', 1..32")
        if index < 0:
            raise InvalidArgument("index", f"{index} is negative")
        # 1. The blob first, complete on disk, so the row never names a partial file.
        key = self.blobs.put(data)
        # 2. Then the row, replacing an earlier checkpoint of the same tile.
        try:
            with self._write() as db:
                self._job_row(db, job_id)
                old = db.execute(
                    "SELECT blob_key FROM checkpoints WHERE job_id = ? AND stage = ? AND tile_index = ?",
                    (job_id, stage, index),
                ).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO checkpoints (job_id, stage, tile_index, blob_key)"
                    " VALUES (?, ?, ?, ?)",
                    (job_id, stage, index, key),
                )
        except BaseException:
            self.blobs.delete(key)
            raise
        # 3. The replaced blob is unreferenced now.
        if old is not None:
            self.blobs.delete(old[0])

    def checkpointed_tiles(self, job_id: str, stage: str) -> dict[int, bytes]:
        with self._read() as db:
            rows = db.execute(
                "SELECT tile_index, blob_key FROM checkpoints WHERE job_id = ? AND stage = ?"
                " ORDER BY tile_index",
                (job_id, stage),
            ).fetchall()
        return {index: self.blobs.get(key) for index, key in rows}

    def checkpoint_count(self, job_id: str) -> int:
        with self._read() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
        return count

    def clear_checkpoints(self, job_id: str) -> None:
        with self._write() as db:
            keys = [
                key
                for (key,) in db.execute(
                    "DELETE FROM checkpoints WHERE job_id = ? RETURNING blob_key", (job_id,)
                ).fetchall()
            ]
        self._delete_blobs(keys)

    def put_result(self, job_id: str, name: str, data: bytes) -> None:
        if _RESULT_NAME.fullmatch(name) is None:
            raise InvalidArgument("name", f"{name!r}: lowercase letters, digits and '_', 1..64")
        key = self.blobs.put(data)
        try:
            with self._write() as db:
                self._job_row(db, job_id)
                old = db.execute(
                    "SELECT blob_key FROM results WHERE job_id = ? AND name = ?", (job_id, name)
                ).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO results (job_id, name, blob_key, size_bytes, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (job_id, name, key, len(data), self._clock()),
                )
        except BaseException:
            self.blobs.delete(key)
            raise
        if old is not None:
            self.blobs.delete(old[0])

    def get_result(self, job_id: str, name: str = FINAL_RESULT) -> bytes:
        with self._read() as db:
            self._job_row(db, job_id)
            row = db.execute(
                "SELECT blob_key FROM results WHERE job_id = ? AND name = ?", (job_id, name)
            ).fetchone()
        if row is None:
            raise NotFound(f"name {name!r}: job {job_id!r} has no result of that name")
        return self.blobs.get(row[0])

    def result_names(self, job_id: str) -> list[str]:
        with self._read() as db:
            self._job_row(db, job_id)
            rows = db.execute(
                "SELECT name FROM results WHERE job_id = ? ORDER BY created, rowid", (job_id,)
            ).fetchall()
        return [name for (name,) in rows]

    def purge_expired(self, retention_seconds: float, now: float | None = None) -> PurgeReport:
        if retention_seconds <= 0:
            raise InvalidArgument("retention_seconds", f"{retention_seconds} must be positive")
        cutoff = (self._clock() if now is None else now) - retention_seconds
        ended = tuple(TERMINAL_STATES)
        with self._write() as db:
            # 1. Ended jobs past retention, with their blobs.
            job_ids = [
                job_id
                for (job_id,) in db.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?, ?) AND finished < ?", (*ended, cutoff)
                ).fetchall()
            ]
            keys = self._blob_keys_of(db, job_ids) if job_ids else []
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in job_ids])
            # 2. Uploads past retention.
            image_keys = [
                key
                for (key,) in db.execute(
                    "DELETE FROM images WHERE created < ? RETURNING blob_key", (cutoff,)
                ).fetchall()
            ]
        # 3. The blobs, after the rows.
        self._delete_blobs([*keys, *image_keys])
        for job_id in job_ids:
            self.notifier.forget(job_id)
        return PurgeReport(jobs=len(job_ids), images=len(image_keys))

    # --- Presets ---

    def save_preset(
        self, name: str, settings: bytes, description: str = "", *, overwrite: bool = True
    ) -> PresetRecord:
        _check_preset_name(name)
        if len(description) > _MAX_PRESET_DESCRIPTION:
            raise InvalidArgument(
                "description",
                f"{len(description)} characters; at most {_MAX_PRESET_DESCRIPTION} allowed",
            )
        now = self._clock()
        with self._write() as db:
            row = db.execute("SELECT created FROM presets WHERE name = ?", (name,)).fetchone()
            if row is not None and not overwrite:
                raise AlreadyExists(f"name {name!r}: a preset of that name exists")
            created = now if row is None else row[0]
            db.execute(
                "INSERT OR REPLACE INTO presets (name, description, settings, created, updated)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, description, settings, created, now),
            )
        return PresetRecord(name, description, settings, created, now)

    def get_preset(self, name: str) -> PresetRecord:
        _check_preset_name(name)
        with self._read() as db:
            row = db.execute(
                "SELECT name, description, settings, created, updated FROM presets WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            raise NotFound(f"name {name!r}: no such preset")
        return PresetRecord(*row)

    def list_presets(self) -> list[PresetRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name, description, settings, created, updated FROM presets ORDER BY name"
            ).fetchall()
        return [PresetRecord(*row) for row in rows]

    def delete_preset(self, name: str) -> None:
        _check_preset_name(name)
        with self._write() as db:
            deleted = db.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise NotFound(f"name {name!r}: no such preset")

    # --- Uploaded images ---

    def put_image(self, data: bytes, meta: ImageMeta) -> ImageRecord:
        # 1. The id comes from the bytes, so the same upload gets the same id.
        sha256 = hashlib.sha256(data).hexdigest()
        image_id = sha256[:32]
        # 2. The blob first; then the row, or a refreshed created time when the bytes are known.
        key = self.blobs.put(data)
        now = self._clock()
        try:
            with self._write() as db:
                (stored_key,) = db.execute(
                    """INSERT INTO images (image_id, sha256, blob_key, size_bytes, width, height,
                        has_alpha, encoding, filename, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (image_id) DO UPDATE SET created = excluded.created
                    RETURNING blob_key""",
                    (
                        image_id,
                        sha256,
                        key,
                        len(data),
                        meta.width,
                        meta.height,
                        meta.has_alpha,
                        meta.encoding,
                        meta.filename,
                        now,
                    ),
                ).fetchone()
        except BaseException:
            self.blobs.delete(key)
            raise
        # 3. A second copy of known bytes is not needed.
        if stored_key != key:
            self.blobs.delete(key)
        return self.get_image(image_id)

    def get_image(self, image_id: str) -> ImageRecord:
        return self._image_row(image_id)[0]

    def read_image(self, image_id: str) -> bytes:
        return self.blobs.get(self._image_row(image_id)[1])

    def delete_image(self, image_id: str) -> None:
        with self._write() as db:
            row = db.execute(
                "DELETE FROM images WHERE image_id = ? RETURNING blob_key", (image_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"image_id {image_id!r}: no such image")
        self.blobs.delete(row[0])

    def _image_row(self, image_id: str) -> tuple[ImageRecord, str]:
        with self._read() as db:
            row = db.execute(
                "SELECT image_id, sha256, size_bytes, width, height, has_alpha, encoding, filename,"
                " created, blob_key FROM images WHERE image_id = ?",
                (image_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"image_id {image_id!r}: no such image")
        image_id, sha256, size_bytes, width, height, has_alpha, encoding, filename, created, key = row
        meta = ImageMeta(width, height, bool(has_alpha), encoding, filename)
        return ImageRecord(image_id, sha256, size_bytes, meta, created), key


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _check_preset_name(name: str) -> None:
    if _PRESET_NAME.fullmatch(name) is None:
        raise InvalidArgument("name", f"{name!r}: 1..100 characters of letters, digits, space, '.', '_', '-'")


def _enum_values(field: str, values: Iterable[int] | None, enum: object) -> list[int]:
    chosen = sorted(set(values or ()))
    allowed = {value for value in enum.values() if value != 0}  # type: ignore[attr-defined]
    for value in chosen:
        if value not in allowed:
            raise InvalidArgument(field, f"{value!r} is not a valid value; allowed {sorted(allowed)}")
    return chosen


def _encode_page_token(created: float, job_id: str) -> str:
    raw = json.dumps([created, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[float, str]:
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(created, (int, float)) or not isinstance(job_id, str):
            raise ValueError("wrong types")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(
            "page_token", f"{token!r} is not a token from a previous ListJobs page"
        ) from exc
    return float(created), job_id
