"""The job store: schema, event log seqs, paging, state rules, checkpoints across restarts, results,
retention, presets, uploads, blob keys and the event notifier."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.blobs import FolderBlobStore
from gateway.store import (
    FINAL_RESULT,
    SCHEMA_VERSION,
    ImageMeta,
    SqliteJobStore,
)
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from tilesmith.v1 import gateway_pb2 as pb

# Only the notifier tests are async; they share the session loop like the other async tests.
on_session_loop = pytest.mark.asyncio(loop_scope="session")

UPSCALE, GENERATE = pb.JOB_KIND_UPSCALE, pb.JOB_KIND_GENERATE
QUEUED, RUNNING = pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING
SUCCEEDED, FAILED, CANCELLED = pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_store(tmp_path: Path, clock: FakeClock) -> SqliteJobStore:
    return SqliteJobStore(tmp_path / "db" / "jobs.sqlite", FolderBlobStore(tmp_path / "blobs"), clock=clock)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    store = open_store(tmp_path, clock)
    yield store
    store.close()


def blob_files(tmp_path: Path) -> list[Path]:
    return [path for path in (tmp_path / "blobs").rglob("*") if path.is_file()]


def spec_bytes(label: str = "") -> bytes:
    return pb.JobSpec(label=label).SerializeToString()


# --- Schema ---


def test_schema_is_created_with_wal_and_reopens_without_migrating_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = open_store(tmp_path, clock)
    job = store.create_job(UPSCALE, spec_bytes("a"), seed=7, label="a")
    assert store.schema_version() == SCHEMA_VERSION
    store.close()

    reopened = open_store(tmp_path, clock)
    assert reopened.schema_version() == SCHEMA_VERSION
    assert reopened.get_job(job.id) == job
    reopened.close()

    db = sqlite3.connect(tmp_path / "db" / "jobs.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    db.close()


def test_a_database_from_a_newer_gateway_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    open_store(tmp_path, clock).close()
    db = sqlite3.connect(tmp_path / "db" / "jobs.sqlite")
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(FailedPrecondition, match="newer"):
        open_store(tmp_path, clock)


# --- Jobs ---


def test_create_and_get_job(store: SqliteJobStore, clock: FakeClock) -> None:
    spec = spec_bytes("castle")
    job = store.create_job(UPSCALE, spec, seed=42, label="castle")
    assert (job.kind, job.state, job.spec, job.seed, job.label) == (UPSCALE, QUEUED, spec, 42, "castle")
    assert (job.created, job.started, job.finished, job.last_seq) == (clock.now, None, None, 0)
    assert store.get_job(job.id) == job
    with pytest.raises(NotFound, match="job_id 'nope'"):
        store.get_job("nope")
    with pytest.raises(InvalidArgument) as info:
        store.create_job(pb.JOB_KIND_UNSPECIFIED, spec, seed=1)
    assert info.value.field == "kind"


def test_idempotency_key_is_unique(store: SqliteJobStore) -> None:
    first = store.create_job(UPSCALE, spec_bytes(), seed=1, idempotency_key="k1")
    with pytest.raises(AlreadyExists, match="k1"):
        store.create_job(UPSCALE, spec_bytes(), seed=2, idempotency_key="k1")
    assert store.find_job_by_idempotency_key("k1") == first
    assert store.find_job_by_idempotency_key("k2") is None
    # No key is not a key: many jobs may have none.
    store.create_job(UPSCALE, spec_bytes(), seed=3, idempotency_key="")
    store.create_job(UPSCALE, spec_bytes(), seed=4)


def test_legal_transitions_set_times(store: SqliteJobStore, clock: FakeClock) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    started = clock.tick()
    running = store.set_state(job.id, RUNNING)
    assert (running.state, running.started, running.finished) == (RUNNING, started, None)
    # Requeued and resumed: the first start time stays.
    clock.tick()
    store.set_state(job.id, QUEUED)
    clock.tick()
    assert store.set_state(job.id, RUNNING).started == started
    finished = clock.tick()
    result = pb.JobResult(tiles_redrawn=4).SerializeToString()
    done = store.set_state(job.id, SUCCEEDED, result=result)
    assert (done.state, done.finished, done.result) == (SUCCEEDED, finished, result)


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], SUCCEEDED),  # QUEUED -> SUCCEEDED skips running
        ([], QUEUED),
        ([RUNNING], RUNNING),
        ([RUNNING, SUCCEEDED], CANCELLED),  # a cancel that lost the race
        ([RUNNING, FAILED], RUNNING),
        ([CANCELLED], RUNNING),
    ],
)
def test_illegal_transitions_are_refused(store: SqliteJobStore, path: list[int], refused: int) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    for state in path:
        store.set_state(job.id, state)
    before = store.get_job(job.id)
    with pytest.raises(FailedPrecondition, match=pb.JobState.Name(refused)):
        store.set_state(job.id, refused)
    assert store.get_job(job.id) == before


def test_failed_job_keeps_its_error(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    error = pb.JobError(code=14, message="diffusion unavailable").SerializeToString()
    store.set_state(job.id, RUNNING)
    assert store.set_state(job.id, FAILED, error=error).error == error


def test_update_progress(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.update_progress(job.id, stage=pb.JOB_STAGE_REDRAW, tiles_done=3, tiles_total=12)
    got = store.get_job(job.id)
    assert (got.stage, got.tiles_done, got.tiles_total) == (pb.JOB_STAGE_REDRAW, 3, 12)
    with pytest.raises(NotFound):
        store.update_progress("nope", stage=0, tiles_done=0, tiles_total=0)


def test_list_jobs_pages_newest_first_and_stays_stable(store: SqliteJobStore, clock: FakeClock) -> None:
    ids = []
    for index in range(7):
        clock.tick()
        ids.append(store.create_job(UPSCALE if index % 2 else GENERATE, spec_bytes(), seed=index).id)
    # Two jobs in the same instant are still ordered (by id), never dropped or repeated.
    ids.append(store.create_job(UPSCALE, spec_bytes(), seed=99).id)

    page, token = store.list_jobs(page_size=3)
    seen = [job.id for job in page]
    # A job created while paging does not shift the pages that follow.
    clock.tick()
    store.create_job(UPSCALE, spec_bytes(), seed=100)
    while token:
        page, token = store.list_jobs(page_size=3, page_token=token)
        seen.extend(job.id for job in page)
    records = [store.get_job(job_id) for job_id in ids]
    newest_first = [job.id for job in sorted(records, key=lambda job: (job.created, job.id), reverse=True)]
    assert seen == newest_first


def test_list_jobs_filters(store: SqliteJobStore) -> None:
    upscale = store.create_job(UPSCALE, spec_bytes(), seed=1)
    generate = store.create_job(GENERATE, spec_bytes(), seed=2)
    store.set_state(generate.id, RUNNING)
    assert [job.id for job in store.list_jobs(kinds=[UPSCALE])[0]] == [upscale.id]
    assert [job.id for job in store.list_jobs(states=[RUNNING])[0]] == [generate.id]
    assert store.list_jobs(states=[RUNNING], kinds=[UPSCALE]) == ([], "")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 501}, "page_size"),
        ({"page_token": "garbage!"}, "page_token"),
        ({"page_token": "WzFd"}, "page_token"),  # valid base64 of "[1]"
        ({"states": [99]}, "states"),
        ({"kinds": [pb.JOB_KIND_UNSPECIFIED]}, "kinds"),
    ],
)
def test_list_jobs_refuses_bad_arguments(store: SqliteJobStore, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.list_jobs(**kwargs)
    assert info.value.field == field


def test_running_and_queued_jobs_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = open_store(tmp_path, clock)
    first = store.create_job(UPSCALE, spec_bytes(), seed=1)
    clock.tick()
    second = store.create_job(UPSCALE, spec_bytes(), seed=2)
    clock.tick()
    waiting = store.create_job(UPSCALE, spec_bytes(), seed=3)
    clock.tick()
    done = store.create_job(UPSCALE, spec_bytes(), seed=4)
    for job in (second, first, done):
        store.set_state(job.id, RUNNING)
    store.set_state(done.id, SUCCEEDED)
    store.close()

    reopened = open_store(tmp_path, clock)
    assert [job.id for job in reopened.running_jobs()] == [first.id, second.id]
    assert [job.id for job in reopened.queued_jobs()] == [waiting.id]
    reopened.close()


def test_delete_job_removes_rows_and_blobs(store: SqliteJobStore, tmp_path: Path) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.set_state(job.id, RUNNING)
    store.append_event(job.id, "accepted", b"e")
    store.checkpoint_tile(job.id, "redraw", 0, b"tile")
    store.put_result(job.id, FINAL_RESULT, b"png")
    store.put_result(job.id, "preupscaled", b"png2")
    with pytest.raises(FailedPrecondition, match="cancel it"):
        store.delete_job(job.id)
    assert len(blob_files(tmp_path)) == 3

    store.set_state(job.id, SUCCEEDED)
    store.delete_job(job.id)
    assert blob_files(tmp_path) == []
    with pytest.raises(NotFound):
        store.get_job(job.id)
    with pytest.raises(NotFound):
        store.events_after(job.id)
    with pytest.raises(NotFound):
        store.delete_job(job.id)


# --- Events ---


def test_events_are_numbered_from_one_and_replayed_after_a_seq(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    seqs = [store.append_event(job.id, "tile_done", f"e{n}".encode()) for n in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    assert store.get_job(job.id).last_seq == 5

    assert [e.seq for e in store.events_after(job.id)] == [1, 2, 3, 4, 5]
    resumed = store.events_after(job.id, after_seq=3)
    assert [(e.seq, e.payload, e.kind) for e in resumed] == [(4, b"e4", "tile_done"), (5, b"e5", "tile_done")]
    assert store.events_after(job.id, after_seq=5) == []
    assert store.events_after(job.id, after_seq=50) == []
    assert [e.seq for e in store.events_after(job.id, after_seq=1, limit=2)] == [2, 3]
    with pytest.raises(NotFound):
        store.append_event("nope", "accepted", b"")
    with pytest.raises(InvalidArgument):
        store.events_after(job.id, after_seq=-1)


def test_concurrent_appends_get_gap_free_increasing_seqs(store: SqliteJobStore) -> None:
    jobs = [store.create_job(UPSCALE, spec_bytes(), seed=n).id for n in range(2)]
    threads, per_thread = 8, 40
    got: dict[str, list[int]] = {job_id: [] for job_id in jobs}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def append(worker: int) -> None:
        start.wait()
        for n in range(per_thread):
            job_id = jobs[(worker + n) % 2]
            seq = store.append_event(job_id, "tile_done", f"{worker}:{n}".encode())
            with lock:
                got[job_id].append(seq)

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    for job_id in jobs:
        expected = list(range(1, threads * per_thread // 2 + 1))
        assert sorted(got[job_id]) == expected
        logged = store.events_after(job_id, limit=10_000)
        assert [e.seq for e in logged] == expected
        # Each worker's own events keep their order in the log.
        for worker in range(threads):
            mine = [
                int(e.payload.split(b":")[1]) for e in logged if e.payload.startswith(f"{worker}:".encode())
            ]
            assert mine == sorted(mine)


@on_session_loop
async def test_a_waiter_wakes_on_append_from_another_thread(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.append_event(job.id, "accepted", b"")
    waiting = asyncio.create_task(store.notifier.wait(job.id, seen_seq=1))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await asyncio.to_thread(store.append_event, job.id, "stage_started", b"")
    async with asyncio.timeout(2):
        await waiting
    assert [e.seq for e in store.events_after(job.id, after_seq=1)] == [2]


@on_session_loop
async def test_a_waiter_behind_the_log_returns_at_once(store: SqliteJobStore) -> None:
    # The event landed between the watcher's replay and its wait: no wake-up is lost.
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.append_event(job.id, "accepted", b"")
    store.append_event(job.id, "stage_started", b"")
    async with asyncio.timeout(1):
        await store.notifier.wait(job.id, seen_seq=1)


@on_session_loop
async def test_a_timed_out_waiter_leaves_nothing_behind(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await store.notifier.wait(job.id, seen_seq=0)
    assert store.notifier._waiters == {}
    store.append_event(job.id, "accepted", b"")  # nobody to wake: no error


# --- Checkpoints and results ---


def test_checkpoints_round_trip_and_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = open_store(tmp_path, clock)
    job = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.set_state(job.id, RUNNING)
    tiles = {0: b"\x00" * 64, 3: b"\x03" * 64, 7: bytes(range(256))}
    for index, data in tiles.items():
        store.checkpoint_tile(job.id, "redraw", index, data)
    store.checkpoint_tile(job.id, "seam_fix", 0, b"seam")
    store.checkpoint_tile(job.id, "redraw", 3, b"redone")  # a re-drawn tile replaces its checkpoint
    tiles[3] = b"redone"
    assert store.checkpointed_tiles(job.id, "redraw") == tiles
    store.close()

    reopened = open_store(tmp_path, clock)
    (resumed,) = reopened.running_jobs()
    assert reopened.checkpointed_tiles(resumed.id, "redraw") == tiles
    assert reopened.checkpointed_tiles(resumed.id, "seam_fix") == {0: b"seam"}
    assert reopened.checkpointed_tiles(resumed.id, "region") == {}
    assert len(blob_files(tmp_path)) == 4  # the replaced blob is gone

    reopened.clear_checkpoints(resumed.id)
    assert reopened.checkpointed_tiles(resumed.id, "redraw") == {}
    assert blob_files(tmp_path) == []
    reopened.close()


def test_checkpoint_of_an_unknown_job_leaves_no_blob(store: SqliteJobStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        store.checkpoint_tile("nope", "redraw", 0, b"tile")
    with pytest.raises(InvalidArgument):
        store.checkpoint_tile("nope", "../x", 0, b"tile")
    assert blob_files(tmp_path) == []


def test_results_are_stored_by_name(store: SqliteJobStore) -> None:
    job = store.create_job(GENERATE, spec_bytes(), seed=1)
    store.put_result(job.id, "base", b"base")
    store.put_result(job.id, FINAL_RESULT, b"v1")
    store.put_result(job.id, FINAL_RESULT, b"v2")
    assert store.get_result(job.id) == b"v2"
    assert store.get_result(job.id, "base") == b"base"
    assert store.result_names(job.id) == ["base", FINAL_RESULT]
    with pytest.raises(NotFound, match="name 'seam_fixed'"):
        store.get_result(job.id, "seam_fixed")
    with pytest.raises(NotFound, match="job_id"):
        store.get_result("nope")
    with pytest.raises(InvalidArgument):
        store.put_result(job.id, "../../etc/passwd", b"")


def test_purge_expired_removes_old_ended_jobs_and_uploads(
    store: SqliteJobStore, clock: FakeClock, tmp_path: Path
) -> None:
    old = store.create_job(UPSCALE, spec_bytes(), seed=1)
    store.set_state(old.id, RUNNING)
    store.put_result(old.id, FINAL_RESULT, b"old")
    store.set_state(old.id, SUCCEEDED)
    still_running = store.create_job(UPSCALE, spec_bytes(), seed=2)
    store.set_state(still_running.id, RUNNING)
    store.checkpoint_tile(still_running.id, "redraw", 0, b"tile")
    old_image = store.put_image(b"old image", ImageMeta(8, 8, False, 1))

    clock.tick(100)
    fresh = store.create_job(UPSCALE, spec_bytes(), seed=3)
    store.set_state(fresh.id, CANCELLED)
    fresh_image = store.put_image(b"new image", ImageMeta(8, 8, True, 1))

    report = store.purge_expired(retention_seconds=50)
    assert (report.jobs, report.images) == (1, 1)
    with pytest.raises(NotFound):
        store.get_job(old.id)
    with pytest.raises(NotFound):
        store.get_image(old_image.image_id)
    assert store.get_job(still_running.id).state == RUNNING
    assert store.get_job(fresh.id).state == CANCELLED
    assert store.read_image(fresh_image.image_id) == b"new image"
    assert len(blob_files(tmp_path)) == 2  # the running job's checkpoint and the fresh upload


# --- Presets ---


def test_presets(store: SqliteJobStore, clock: FakeClock) -> None:
    settings = b"settings-1"
    created = store.save_preset("Pixel art 2x", settings, "crisp")
    assert store.get_preset("Pixel art 2x") == created
    with pytest.raises(AlreadyExists, match="Pixel art 2x"):
        store.save_preset("Pixel art 2x", b"other", overwrite=False)
    clock.tick()
    replaced = store.save_preset("Pixel art 2x", b"settings-2")
    assert (replaced.created, replaced.updated, replaced.settings) == (
        created.created,
        clock.now,
        b"settings-2",
    )
    store.save_preset("a.b_c-d", b"")
    assert [p.name for p in store.list_presets()] == ["Pixel art 2x", "a.b_c-d"]
    store.delete_preset("a.b_c-d")
    with pytest.raises(NotFound, match=r"a\.b_c-d"):
        store.delete_preset("a.b_c-d")
    with pytest.raises(NotFound):
        store.get_preset("missing")


@pytest.mark.parametrize("name", ["", "x" * 101, "a/b", "../up", "tab\t", "é"])
def test_preset_names_are_checked(store: SqliteJobStore, name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.save_preset(name, b"")
    assert info.value.field == "name"


def test_preset_description_is_capped(store: SqliteJobStore) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.save_preset("ok", b"", "x" * 2001)
    assert info.value.field == "description"


# --- Uploaded images ---


def test_same_bytes_give_the_same_image(store: SqliteJobStore, clock: FakeClock, tmp_path: Path) -> None:
    meta = ImageMeta(width=16, height=8, has_alpha=True, encoding=1, filename="sprite.png")
    first = store.put_image(b"pixels", meta)
    assert (first.meta, first.size_bytes) == (meta, 6)
    clock.tick()
    again = store.put_image(b"pixels", meta)
    assert again.image_id == first.image_id
    assert again.created == clock.now  # its retention restarts
    assert len(blob_files(tmp_path)) == 1
    assert store.read_image(first.image_id) == b"pixels"
    store.delete_image(first.image_id)
    assert blob_files(tmp_path) == []
    with pytest.raises(NotFound, match="image_id"):
        store.get_image(first.image_id)


# --- Blobs ---


def test_blob_round_trip(tmp_path: Path) -> None:
    blobs = FolderBlobStore(tmp_path / "blobs", fsync=True)
    key = blobs.put(b"hello")
    assert blobs.get(key) == b"hello"
    assert blobs.size(key) == 5
    assert [p.name for p in blob_files(tmp_path)] == [key]  # no temporary file left
    blobs.delete(key)
    blobs.delete(key)  # idempotent
    with pytest.raises(NotFound):
        blobs.get(key)
    with pytest.raises(NotFound):
        blobs.size(key)


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "/etc/passwd", "0" * 31, "0" * 33, "A" * 32, "ab/" + "0" * 29, "", "0" * 31 + "\n"],
)
def test_blob_keys_that_are_not_generated_are_refused(tmp_path: Path, key: str) -> None:
    blobs = FolderBlobStore(tmp_path / "blobs")
    for call in (blobs.get, blobs.delete, blobs.size):
        with pytest.raises(InvalidArgument) as info:
            call(key)
        assert info.value.field == "key"


def test_a_seed_learnt_later_is_recorded(store: SqliteJobStore) -> None:
    job = store.create_job(UPSCALE, spec_bytes("ref"), seed=-1)
    store.set_seed(job.id, 99)
    assert store.get_job(job.id).seed == 99
    with pytest.raises(NotFound):
        store.set_seed("missing", 1)
