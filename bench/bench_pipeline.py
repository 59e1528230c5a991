"""Pipeline benchmark: what a job through the gateway costs over the pipeline's own work, and what a second
diffusion replica buys. CPU, tiny profile.

Overhead. One UPSCALE job: a seeded RGB noise image upscaled x2 (384x256 -> 768x512), 256 px tiles with
64 px overlap, 8 steps at strength 0.5, ControlNet-tile on at 0.7, seam fix on (the offset tiles at half
the strength), once with batch size 1 and once with 2. Measured two ways, same torch thread count:
  direct  the job's stages as plain in-process calls, no gRPC, no job store: tiling's Lanczos pre-upscale,
          the first-pass tiles re-drawn by a DiffusionEngine in batches cut from sorted tile indices (with
          the seeds, prompts and parameters the gateway sends), tiling's blend, the offset tiles re-drawn
          and mixed in by tiling's seam-band blend, Lanczos down to the target (a no-op at supersampling 1,
          as in the job). T_direct is the sum of these calls.
  job     the same spec through an EmbeddedStack and the SDK: upload, submit, wait, fetch the result's
          pixels. T_job is that wall time: decoding the upload, planning, every gRPC hop, checkpoints,
          events and the PNG of the result are the overhead.
S = T_job / T_direct, medians over --repeats interleaved runs after one warm-up of each (goal: <= 1.10).
The direct result is checked to have the job's shape, and compared pixel for pixel.

Replicas. The same kind of job over more tiles (512x384 -> 1024x768: 20 first-pass and 26 seam tiles,
batch size 1), with the diffusion service as separate processes (`python -m services.diffusion`) behind
an in-process tiling server and gateway: 1 replica x 1 torch thread, 1 replica x 2 threads, 2 replicas x
1 thread each. Prints job times and the speed-ups of two replicas (at most 2x on a 2-core machine).

Both parts are wall times, so other work on the machine moves them: the JSON keeps the 1-minute load
average at the start, between the parts and at the end. The full run takes about 15 minutes on 2 cores;
--quick (3 + 2 tiles at 4 steps, 1 repeat) about one.

    python bench/bench_pipeline.py [--repeats 3] [--torch-threads 2] [--quick] [--skip-replicas]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table
from transformers.utils import logging as transformers_logging

from gateway.app import build_server as build_gateway
from gateway.clients import chunked
from gateway.settings import GatewaySettings
from gateway.specs import derive_seed, tile_prompt
from gateway.stack import EmbeddedStack, StackConfig, free_port
from services.common.grid import plan_grid
from services.diffusion.engine import (
    ControlNetOptions,
    DiffusionEngine,
    EngineConfig,
    Img2ImgBatch,
    Img2ImgTileInput,
)
from services.diffusion.profiles import TINY
from services.diffusion.tiny import build_tiny_models, default_cache_dir
from services.tiling.app import build_server as build_tiling
from services.tiling.blend import blend_seam_band, blend_tiles
from services.tiling.resize import resize
from services.tiling.settings import TilingSettings
from tilesmith import AsyncClient, UpscaleOptions
from tilesmith.v1 import gateway_pb2

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a stone castle on a hill, detailed"
NEGATIVE_PROMPT = "blurry"
JOB_SEED = 1234
SCHEDULER = "dpmpp_2m_sde_karras"  # gateway.proto's default, named on both sides
CFG_SCALE = 7.0
CONTROLNET_SCALE = 0.7
FEATHER = "cosine"
S_GOAL = 1.10


def _f32(value: float) -> float:
    """`value` as it arrives through a proto float field (0.7 becomes 0.699999988)."""
    return float(np.float32(value))


@dataclass(frozen=True)
class Workload:
    """One upscale job's shape; the direct pipeline and the job both run from it."""

    input_size: tuple[int, int]  # (width, height)
    tile: int
    overlap: int
    steps: int
    strength: float
    batch_size: int
    scale: int = 2

    @property
    def working_size(self) -> tuple[int, int]:
        return self.input_size[0] * self.scale, self.input_size[1] * self.scale

    def source(self) -> np.ndarray:
        width, height = self.input_size
        return np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    def options(self) -> UpscaleOptions:
        return UpscaleOptions(
            target=float(self.scale),
            tile_size=self.tile,
            overlap=self.overlap,
            prompt=PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            strength=self.strength,
            steps=self.steps,
            cfg=CFG_SCALE,
            seed=JOB_SEED,
            scheduler=SCHEDULER,
            controlnet=True,
            controlnet_scale=CONTROLNET_SCALE,
            seam_fix=True,
            batch_size=self.batch_size,
        )

    def tiles(self) -> tuple[int, int]:
        """First-pass and seam-fix tiles (every offset tile borders a re-drawn one: all are re-drawn)."""
        grid = plan_grid(*self.working_size, self.tile, self.tile, self.overlap)
        offset = plan_grid(*self.working_size, self.tile, self.tile, self.overlap, offset=True)
        return len(grid.tiles), len(offset.tiles)


OVERHEAD_WORK = Workload(input_size=(384, 256), tile=256, overlap=64, steps=8, strength=0.5, batch_size=1)
REPLICAS_WORK = Workload(input_size=(512, 384), tile=256, overlap=64, steps=8, strength=0.5, batch_size=1)
QUICK_WORK = Workload(input_size=(256, 128), tile=256, overlap=64, steps=4, strength=0.5, batch_size=1)


# --- direct: the job's stages as in-process calls ----------------------------------------------------


class _Item(NamedTuple):
    """One tile to re-draw (gateway/pipeline.py's `_Item`)."""

    index: int
    image: np.ndarray
    control: np.ndarray | None
    prompt: str


class DirectPipeline:
    """gateway/pipeline.py's UPSCALE stages for a plain job (every tile, no regions, no colour fix), called
    in-process on tiling's functions and a DiffusionEngine."""

    def __init__(self, engine: DiffusionEngine) -> None:
        self.engine = engine

    def run(self, source: np.ndarray, work: Workload) -> tuple[np.ndarray, dict[str, float]]:
        """The final image and the seconds of each stage (named as the job's stages)."""
        timings: dict[str, float] = {}

        def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
            start = time.perf_counter()
            result = fn(*args)
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
            return result

        # 1. Pre-upscale to the working size.
        working = timed("preupscale", resize, source, *work.working_size)
        # 2. The grids, as gateway.specs plans them.
        grid = plan_grid(*work.working_size, work.tile, work.tile, work.overlap)
        seam_grid = plan_grid(*work.working_size, work.tile, work.tile, work.overlap, offset=True)
        # 3. Re-draw every first-pass tile.
        first = [_Item(t.index, working[t.slices], None, tile_prompt(PROMPT, "")) for t in grid.tiles]
        redrawn = timed("redraw", self._redraw, "redraw", first, _f32(work.strength), work)
        # 4. Blend.
        image = timed("blend", blend_tiles, [redrawn[t.index] for t in grid.tiles], grid, FEATHER, 3)
        # 5. Seam fix: the offset tiles (control image: the pre-upscaled pixels) at half the strength,
        #    mixed in only inside the bands around the first grid's seams (band width: the overlap).
        seams = [_Item(t.index, image[t.slices], working[t.slices], PROMPT) for t in seam_grid.tiles]
        fixed = timed("seam_fix", self._redraw, "seam_fix", seams, _f32(work.strength) / 2, work)
        offset_tiles = [fixed[t.index] for t in seam_grid.tiles]
        band = max(2, work.overlap)
        image = timed("seam_fix", blend_seam_band, image, offset_tiles, seam_grid, grid, band, FEATHER).image
        # 6. Down to the target (the working size at supersampling 1: the gateway skips the call too).
        output_size = work.working_size
        if (image.shape[1], image.shape[0]) != output_size:
            image = timed("downscale", resize, image, *output_size)
        return image, timings

    def _redraw(
        self, pass_name: str, items: list[_Item], strength: float, work: Workload
    ) -> dict[int, np.ndarray]:
        """Re-draw `items` in batches cut from their sorted indices, as the gateway does."""
        by_index = {item.index: item for item in items}
        results: dict[int, np.ndarray] = {}
        for batch in chunked(by_index, work.batch_size):
            tiles = [
                Img2ImgTileInput(
                    image=np.ascontiguousarray(by_index[index].image),
                    prompt=by_index[index].prompt,
                    negative_prompt=NEGATIVE_PROMPT,
                    seed=derive_seed(JOB_SEED, pass_name, index),
                    control_image=by_index[index].control,
                )
                for index in batch
            ]
            outputs = self.engine.img2img(
                Img2ImgBatch(
                    tiles=tiles,
                    strength=_f32(strength),
                    steps=work.steps,
                    cfg_scale=CFG_SCALE,
                    scheduler=SCHEDULER,
                    controlnet=ControlNetOptions(enabled=True, scale=_f32(CONTROLNET_SCALE)),
                )
            )
            results.update(zip(batch, outputs, strict=True))
        return results


# --- job: through the gateway ------------------------------------------------------------------------


@dataclass
class JobRun:
    seconds: float
    image: np.ndarray
    stages: dict[str, float]
    providers: Counter[str]


async def run_job(client: AsyncClient, source: np.ndarray, work: Workload) -> JobRun:
    """Upload, submit, wait and fetch the result's pixels; the wall time of all of it."""
    providers: Counter[str] = Counter()

    def on_event(event: gateway_pb2.JobEvent) -> None:
        if event.WhichOneof("kind") == "tile_done":
            providers[event.tile_done.provider] += 1

    start = time.perf_counter()
    job = await client.upscale(source, work.options())
    done = await job.wait(on_event=on_event)
    image = np.asarray(await job.result())
    seconds = time.perf_counter() - start
    stages = {
        gateway_pb2.JobStage.Name(timing.stage).removeprefix("JOB_STAGE_").lower(): timing.seconds
        for timing in done.result.stage_timings
    }
    return JobRun(seconds, image, stages, providers)


# --- part 1: overhead --------------------------------------------------------------------------------


async def bench_overhead(
    args: argparse.Namespace, base: Workload, models: Path, console: Console
) -> list[dict[str, Any]]:
    engine = DiffusionEngine(EngineConfig(profile=TINY, models_dir=models, device="cpu"))
    engine.load()
    direct = DirectPipeline(engine)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as state:
        config = StackConfig(
            profile="tiny",
            models_dir=models,
            state_dir=Path(state),
            torch_threads=args.torch_threads,
            metrics_port=0,
        )
        async with EmbeddedStack(config) as stack, AsyncClient(stack.address, timeout=600.0) as client:
            torch.set_num_threads(args.torch_threads)  # as the stack did, for the direct engine too
            for batch_size in (1, 2):
                work = replace(base, batch_size=batch_size)
                source = work.source()
                # Warm up both (first calls allocate, pick kernels, cache prompt encodings), then
                # interleave so machine noise hits both alike.
                direct.run(source, work)
                await run_job(client, source, work)
                direct_runs: list[tuple[float, dict[str, float]]] = []
                job_runs: list[JobRun] = []
                for _ in range(args.repeats):
                    image, timings = direct.run(source, work)
                    direct_runs.append((sum(timings.values()), timings))
                    job_runs.append(await run_job(client, source, work))
                row = _overhead_row(work, image, direct_runs, job_runs)
                rows.append(row)
                console.print(_overhead_table(row))
                console.print(_overhead_summary(row))
    return rows


def _overhead_row(
    work: Workload,
    direct_image: np.ndarray,
    direct_runs: list[tuple[float, dict[str, float]]],
    job_runs: list[JobRun],
) -> dict[str, Any]:
    job_image = job_runs[-1].image
    same_shape = direct_image.shape == job_image.shape
    differing = int(np.any(direct_image != job_image, axis=2).sum()) if same_shape else None
    t_direct = statistics.median([seconds for seconds, _ in direct_runs])
    t_job = statistics.median([run.seconds for run in job_runs])
    first, seam = work.tiles()
    return {
        "workload": asdict(work),
        "working_size": list(work.working_size),
        "tiles": {"first_pass": first, "seam_fix": seam},
        "t_direct_seconds": t_direct,
        "t_job_seconds": t_job,
        "overhead_ratio": t_job / t_direct,
        "direct_all": [seconds for seconds, _ in direct_runs],
        "job_all": [run.seconds for run in job_runs],
        "direct_stages_median": {
            stage: statistics.median([timings.get(stage, 0.0) for _, timings in direct_runs])
            for stage in direct_runs[0][1]
        },
        "job_stages_median": {
            stage: statistics.median([run.stages.get(stage, 0.0) for run in job_runs])
            for stage in job_runs[0].stages
        },
        "result_shape": list(job_image.shape),
        "same_shape": same_shape,
        "pixels_differing": differing,
        "max_abs_difference": int(np.abs(direct_image.astype(np.int16) - job_image).max())
        if same_shape
        else None,
    }


def _overhead_table(row: dict[str, Any]) -> Table:
    work = row["workload"]
    table = Table(
        title=f"batch size {work['batch_size']}: {row['tiles']['first_pass']} + {row['tiles']['seam_fix']} "
        f"tiles, seconds (medians of {len(row['job_all'])})"
    )
    for column in ("stage", "direct", "job"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    direct, job = row["direct_stages_median"], row["job_stages_median"]
    for stage in dict.fromkeys([*job, *direct]):
        table.add_row(
            stage,
            f"{direct[stage]:.3f}" if stage in direct else "-",
            f"{job[stage]:.3f}" if stage in job else "-",
        )
    table.add_row(
        "total (job: upload to pixels)", f"{row['t_direct_seconds']:.3f}", f"{row['t_job_seconds']:.3f}"
    )
    return table


def _overhead_summary(row: dict[str, Any]) -> str:
    s = row["overhead_ratio"]
    if not row["same_shape"]:
        pixels = "shapes DIFFER"
    elif row["pixels_differing"] == 0:
        pixels = "pixels identical"
    else:
        pixels = f"{row['pixels_differing']} pixels differ (by at most {row['max_abs_difference']})"
    return (
        f"batch {row['workload']['batch_size']}: S = {row['t_job_seconds']:.2f} s / {row['t_direct_seconds']:.2f} s"
        f" = {s:.3f} (goal <= {S_GOAL:.2f}: {'met' if s <= S_GOAL else 'NOT met'}); result "
        f"{'x'.join(map(str, row['result_shape']))}, {pixels}"
    )


# --- part 2: replicas --------------------------------------------------------------------------------

# (replicas, torch threads each); every replica serves the configurations that use one of its kind.
REPLICA_CONFIGS = ((1, 1), (1, 2), (2, 1))
QUIET = {"DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error"}


def _start_diffusion(models: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        **QUIET,
        "TILESMITH_DIFFUSION_HOST": "127.0.0.1",
        "TILESMITH_DIFFUSION_PORT": str(port),
        "TILESMITH_DIFFUSION_METRICS_PORT": "0",
        "TILESMITH_DIFFUSION_PROFILE": "tiny",
        "TILESMITH_DIFFUSION_MODELS_DIR": str(models),
        "TILESMITH_DIFFUSION_DEVICE": "cpu",
        "TILESMITH_DIFFUSION_TORCH_THREADS": str(threads),
        "TILESMITH_DIFFUSION_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.diffusion"], env=env, cwd=ROOT)
    return process, f"127.0.0.1:{port}"


async def _wait_serving(process: subprocess.Popen, address: str, within: float = 300.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while loop.time() < end and process.poll() is None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the diffusion replica at {address} did not become SERVING")


def _stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


@contextlib.asynccontextmanager
async def diffusion_replicas(models: Path, threads: list[int]) -> AsyncIterator[list[str]]:
    """One `python -m services.diffusion` per entry of `threads` (its torch threads), loading side by side;
    yields their addresses once all are SERVING."""
    with contextlib.ExitStack() as stack:
        started = []
        for count in threads:
            process, address = _start_diffusion(models, count)
            stack.callback(_stop_process, process)
            started.append((process, address))
        await asyncio.gather(*(_wait_serving(process, address) for process, address in started))
        yield [address for _, address in started]


@contextlib.asynccontextmanager
async def pipeline_gateway(diffusion: list[str]) -> AsyncIterator[str]:
    """A tiling server and a gateway over the `diffusion` replicas, in this process; yields the gateway's
    address."""
    async with contextlib.AsyncExitStack() as stack:
        loopback = {"host": "127.0.0.1", "port": 0, "tune_malloc": False}
        tiling = build_tiling(TilingSettings(**loopback), serve_metrics_http=False)
        await tiling.start()
        stack.push_async_callback(tiling.stop, 0)
        await tiling.set_serving()
        state = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-"))
        settings = GatewaySettings(
            **loopback, tiling_addr=tiling.address, diffusion_addr=",".join(diffusion), state_dir=Path(state)
        )
        server, gateway = build_gateway(settings, serve_metrics_http=False)
        await server.start()
        stack.push_async_callback(server.stop, 0)
        await gateway.start(backend_timeout=60.0)
        stack.push_async_callback(gateway.stop)
        await server.set_serving()
        yield server.address


def _replica_label(replicas: int, threads: int) -> str:
    return f"{replicas} replica{'s' if replicas > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"


async def bench_replicas(
    args: argparse.Namespace, work: Workload, models: Path, console: Console
) -> dict[str, Any]:
    source = work.source()
    first, seam = work.tiles()
    rows = []
    # 1. Three replicas: two with 1 thread, one with 2.
    start = time.perf_counter()
    async with diffusion_replicas(models, [1, 1, 2]) as (one_a, one_b, two):
        console.print(f"3 diffusion replicas SERVING after {time.perf_counter() - start:.1f} s")
        pools = {(1, 1): [one_a], (1, 2): [two], (2, 1): [one_a, one_b]}
        # 2. Each configuration through its own gateway: a warm-up job, then the measured ones.
        for replicas, threads in REPLICA_CONFIGS:
            async with (
                pipeline_gateway(pools[(replicas, threads)]) as address,
                AsyncClient(address, timeout=600.0) as client,
            ):
                await run_job(client, source, work)
                runs = [await run_job(client, source, work) for _ in range(args.repeats)]
            seconds = statistics.median([run.seconds for run in runs])
            rows.append(
                {
                    "replicas": replicas,
                    "threads_per_replica": threads,
                    "seconds": seconds,
                    "all": [run.seconds for run in runs],
                    "tiles_per_second": (first + seam) / seconds,
                    "tiles_by_replica": dict(runs[-1].providers),
                }
            )
    # 3. The table.
    by_config = {(row["replicas"], row["threads_per_replica"]): row["seconds"] for row in rows}
    speedups = {
        "2x1_vs_1x1": by_config[(1, 1)] / by_config[(2, 1)],
        "2x1_vs_1x2": by_config[(1, 2)] / by_config[(2, 1)],
    }
    table = Table(
        title=f"replicas: {work.input_size[0]}x{work.input_size[1]} x{work.scale}, {first} + {seam} tiles of "
        f"{work.tile} px, batch {work.batch_size}, {work.steps} steps at {work.strength} "
        f"(medians of {args.repeats})"
    )
    for column in ("diffusion", "job s", "tiles/s", "speed vs 1x1", "tiles per replica"):
        table.add_column(column, justify="left" if column == "diffusion" else "right")
    for row in rows:
        table.add_row(
            _replica_label(row["replicas"], row["threads_per_replica"]),
            f"{row['seconds']:.2f}",
            f"{row['tiles_per_second']:.2f}",
            f"{by_config[(1, 1)] / row['seconds']:.2f}x",
            " / ".join(str(count) for count in row["tiles_by_replica"].values()),
        )
    console.print(table)
    console.print(
        f"2 replicas x 1 thread: {speedups['2x1_vs_1x1']:.2f}x the speed of 1 replica x 1 thread, "
        f"{speedups['2x1_vs_1x2']:.2f}x that of 1 replica x 2 threads"
    )
    return {"workload": asdict(work), "runs": rows, "speedups": speedups}


# --- main --------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    console = Console()
    models = build_tiny_models(default_cache_dir()).resolve()
    payload: dict[str, Any] = {
        "benchmark": "pipeline: job vs direct in-process calls, and diffusion replicas (CPU, tiny profile)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "settings": {
            "repeats": args.repeats,
            "torch_threads": args.torch_threads,
            "quick": args.quick,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE_PROMPT,
            "seed": JOB_SEED,
            "scheduler": SCHEDULER,
            "cfg_scale": CFG_SCALE,
            "controlnet_scale": CONTROLNET_SCALE,
            "seam_fix": True,
            "feather": FEATHER,
        },
    }

    overhead_work, replicas_work = (QUICK_WORK, QUICK_WORK) if args.quick else (OVERHEAD_WORK, REPLICAS_WORK)
    # Other work on a small shared machine moves these figures: the 1-minute load average is kept beside them.
    loads = [os.getloadavg()[0]]
    payload["overhead"] = await bench_overhead(args, overhead_work, models, console)
    loads.append(os.getloadavg()[0])
    if not args.skip_replicas:
        payload["replicas"] = await bench_replicas(args, replicas_work, models, console)
        loads.append(os.getloadavg()[0])
    payload["machine"]["load_average_1min"] = loads
    shown = ", ".join(f"{load:.2f}" for load in loads)
    console.print(f"1-minute load average at the start, between the parts and at the end: {shown}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measured runs of each after one warm-up (default 3; 1 with --quick)",
    )
    parser.add_argument("--torch-threads", type=int, default=2, help="torch threads on both sides (part 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 + 2 tiles at 4 steps")
    parser.add_argument("--skip-replicas", action="store_true", help="part 1 only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_pipeline.json")
    args = parser.parse_args()
    # The libraries' loading bars and per-call warnings would bury the tables.
    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    args.repeats = args.repeats or (1 if args.quick else 3)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
