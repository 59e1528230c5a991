"""Tiling benchmark: split + blend of a 7680x4320 image with 1024x1024 tiles and 128 px overlap.

Measured in one run, so the ratios are comparable even on a noisy shared machine:
  * numpy copy       — a plain `ndarray.copy()` of the image (the memory-bandwidth floor);
  * naive            — what tile upscalers commonly do: PIL `paste` of each tile through a gradient mask;
  * in-process       — services.tiling's split_tiles + Blender (normalised feathering, exact);
  * gRPC (loopback)  — the same through a real tiling server in its own process: image chunks in,
                       raw tiles out (Split), tiles in, image chunks out (Blend).
Goals (issue 2): in-process blend >= 5x faster than naive; through gRPC within 2x of in-process.

    python bench/bench_tiling.py [--width 7680 --height 4320 --tile 1024 --overlap 128 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from rich.console import Console
from rich.table import Table

from services.common.memory import tune_malloc
from services.common.server import channel_options
from services.tiling import blend, grid
from tilesmith import images
from tilesmith.v1 import common_pb2, tiling_pb2, tiling_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_BYTES = 64 * 1024 * 1024


def make_image(width: int, height: int) -> np.ndarray:
    """A smooth gradient with noise: compressible like art, but no constant runs."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noise = rng.integers(-12, 13, size=base.shape, dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# --- the naive approach ------------------------------------------------------------------------------


def naive_masks(plan: grid.Grid) -> dict[tuple[int, int, bool, bool], Image.Image]:
    """Gradient masks as tile upscalers build them: ramp over `overlap` on sides with a neighbour."""
    cache: dict[tuple[int, int, bool, bool], Image.Image] = {}
    for t in plan.tiles:
        key = (t.width, t.height, t.x > 0, t.y > 0)
        if key in cache:
            continue
        mask = np.ones((t.height, t.width), np.float32)
        ramp = np.linspace(0, 1, plan.overlap, dtype=np.float32)
        if t.x > 0:
            mask[:, : plan.overlap] *= ramp[None, :]
        if t.y > 0:
            mask[: plan.overlap, :] *= ramp[:, None]
        cache[key] = Image.fromarray((mask * 255).astype(np.uint8), "L")
    return cache


def naive_split_blend(image: np.ndarray, plan: grid.Grid) -> np.ndarray:
    source = Image.fromarray(image)
    canvas = Image.new("RGB", source.size)
    masks = naive_masks(plan)
    for t in plan.tiles:
        tile = source.crop((t.x, t.y, t.x + t.width, t.y + t.height))
        canvas.paste(tile, (t.x, t.y), masks[(t.width, t.height, t.x > 0, t.y > 0)])
    return np.asarray(canvas)


# --- in-process and gRPC -----------------------------------------------------------------------------


def inprocess_split_blend(image: np.ndarray, plan: grid.Grid) -> np.ndarray:
    tiles = blend.split_tiles(image, plan)
    return blend.blend_tiles(tiles, plan, mode="cosine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tune: bool = True) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "TILESMITH_TILING_TUNE_MALLOC": "true" if tune else "false",
        "TILESMITH_TILING_HOST": "127.0.0.1",
        "TILESMITH_TILING_PORT": str(port),
        "TILESMITH_TILING_METRICS_PORT": "0",
        "TILESMITH_TILING_METRICS_HOST": "127.0.0.1",
        "TILESMITH_TILING_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.tiling"], env=env, cwd=ROOT)
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return process, address
            except grpc.RpcError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError("the tiling server did not become ready") from None
            time.sleep(0.1)


def grpc_split_blend(stub: tiling_pb2_grpc.TilingStub, image: np.ndarray, plan: grid.Grid) -> np.ndarray:
    params = tiling_pb2.GridParams(
        tile_size=common_pb2.Size(width=plan.tile_width, height=plan.tile_height), overlap=plan.overlap
    )

    def split_requests():
        yield tiling_pb2.SplitRequest(params=params)
        for chunk in images.iter_array_chunks(image, chunk_bytes=4 * 1024 * 1024):
            yield tiling_pb2.SplitRequest(image=chunk)

    tiles = list(stub.Split(split_requests()))

    def blend_requests():
        yield tiling_pb2.BlendRequest(
            params=tiling_pb2.BlendParams(
                image_size=common_pb2.Size(width=image.shape[1], height=image.shape[0]),
                grid=params,
                format=common_pb2.PIXEL_FORMAT_RGB8,
                feather=tiling_pb2.FEATHER_MODE_COSINE,
            )
        )
        for tile in tiles:
            yield tiling_pb2.BlendRequest(tile=tile)

    result = images.ChunkAssembler()
    for reply in stub.Blend(blend_requests()):
        if reply.WhichOneof("part") == "image":
            result.add(reply.image)
    return result.to_array()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=7680)
    parser.add_argument("--height", type=int, default=4320)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_tiling.json")
    parser.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="leave glibc malloc as it is (the services tune it; see services/common/memory.py)",
    )
    args = parser.parse_args()
    if not args.no_tune_malloc:
        tune_malloc()  # as the services do (same for every approach measured here)

    image = make_image(args.width, args.height)
    plan = grid.plan_grid(args.width, args.height, args.tile, args.tile, args.overlap)
    megapixels = args.width * args.height / 1e6

    results: dict[str, float] = {}
    results["numpy copy"], _ = timed(image.copy, args.repeat)
    results["naive PIL paste"], _ = timed(lambda: naive_split_blend(image, plan), args.repeat)
    results["in-process split+blend"], exact = timed(lambda: inprocess_split_blend(image, plan), args.repeat)
    assert np.array_equal(exact, image), "in-process split+blend must reproduce the input exactly"
    process, address = start_server(tune=not args.no_tune_malloc)
    try:
        with grpc.insecure_channel(address, options=channel_options(MESSAGE_BYTES)) as channel:
            stub = tiling_pb2_grpc.TilingStub(channel)
            grpc_split_blend(stub, image, plan)  # warm-up: connection, first allocations
            results["gRPC split+blend (loopback)"], remote = timed(
                lambda: grpc_split_blend(stub, image, plan), args.repeat
            )
        assert np.array_equal(remote, image), (
            "split+blend through the service must reproduce the input exactly"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)

    inprocess = results["in-process split+blend"]
    table = Table(
        title=f"split + blend, {args.width}x{args.height}, {len(plan.tiles)} tiles of {args.tile}px, overlap {args.overlap}"
    )
    for column in ("approach", "median s", "MP/s", "x numpy copy", "vs in-process"):
        table.add_column(column, justify="right" if column != "approach" else "left")
    rows = []
    for name, seconds in results.items():
        row = {
            "approach": name,
            "seconds": seconds,
            "megapixels_per_second": megapixels / seconds,
            "ratio_to_numpy_copy": seconds / results["numpy copy"],
            "ratio_to_inprocess": seconds / inprocess,
        }
        rows.append(row)
        table.add_row(
            name,
            f"{seconds:.3f}",
            f"{row['megapixels_per_second']:.1f}",
            f"{row['ratio_to_numpy_copy']:.1f}",
            f"{row['ratio_to_inprocess']:.2f}",
        )
    speedup = results["naive PIL paste"] / inprocess
    grpc_overhead = results["gRPC split+blend (loopback)"] / inprocess
    console = Console()
    console.print(table)
    console.print(
        f"in-process vs naive: {speedup:.1f}x faster (goal >= 5x: {'met' if speedup >= 5 else 'NOT met'})"
    )
    console.print(
        f"gRPC vs in-process: {grpc_overhead:.2f}x (goal <= 2x: {'met' if grpc_overhead <= 2 else 'NOT met'})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "tiling split+blend",
                "image": [args.width, args.height],
                "tile": args.tile,
                "overlap": args.overlap,
                "tiles": len(plan.tiles),
                "repeat": args.repeat,
                "malloc_tuned": not args.no_tune_malloc,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "results": rows,
                "inprocess_speedup_vs_naive": speedup,
                "grpc_ratio_to_inprocess": grpc_overhead,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
