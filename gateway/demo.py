"""`make demo`: one whole upscale through the real stack, on the sample sprite shipped in `assets/`.

Builds the tiny models if they are missing, starts the embedded stack (gateway, tiling and diffusion
in this process, on a free loopback port), upscales `assets/sample_sprite.png` (RGBA) 2x with the
seam-fix pass through the SDK while a progress bar follows the job's events, writes the result and a
side-by-side comparison, prints a per-stage timing summary, and stops the stack.

With the `tiny` profile (the default) the models have random weights, so the re-drawn pixels are
noise by design: the demo shows the machinery (tiling, batching, seam fix, alpha, events, timings),
not quality. `--profile production` runs the same job on the real weights (`make models` first).

    python -m gateway.demo [--output-dir demo-output/] [--scale 2] [--profile tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from gateway.stack import EmbeddedStack, StackConfig
from tilesmith import AsyncClient, UpscaleOptions
from tilesmith.cli import JobProgress
from tilesmith.errors import InvalidArgument, TilesmithError
from tilesmith.v1 import gateway_pb2

__all__ = ["SAMPLE", "main", "run_demo"]

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample_sprite.png"
DEFAULT_OUTPUT_DIR = Path("demo-output")

# Tiles of 128 with an overlap of 32 make a 3x3 first-pass grid and 12 seam-fix tiles at 2x of the
# 128 px sprite; few steps and a light strength keep the tiny profile at a few seconds on a CPU.
_OPTIONS = UpscaleOptions(
    tile_size=128, overlap=32, steps=8, strength=0.4, seam_fix=True, batch_size=2, seed=1234
)
_CHECKER = 16  # checkerboard square, in pixels of the comparison
_MARGIN = 16
_LABEL_HEIGHT = 28


@dataclass(frozen=True)
class _Outcome:
    job: gateway_pb2.Job
    image: Image.Image


def _stage_name(stage: int) -> str:
    return gateway_pb2.JobStage.Name(stage).removeprefix("JOB_STAGE_").lower()


async def _upscale(config: StackConfig, source: Image.Image, scale: float, console: Console) -> _Outcome:
    """Start the stack, run one upscale of the sample through the SDK, fetch the result, stop the stack."""
    stack = EmbeddedStack(config)
    with console.status(f"Starting the embedded stack (profile {config.profile})..."):
        await stack.start()
    try:
        console.print(f"Stack serving on {stack.address}")
        async with AsyncClient(stack.address) as client:
            job = await client.upscale(source, _OPTIONS, label="demo", target=scale)
            console.print(f"Submitted job {job.id}")
            with JobProgress(console) as progress:
                final = await job.wait(on_event=progress.update)
            return _Outcome(final, await job.result())
    finally:
        with console.status("Stopping the stack..."):
            await stack.stop()


def _checkerboard(size: tuple[int, int]) -> Image.Image:
    board = Image.new("RGBA", size, (255, 255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], _CHECKER):
        for x in range(0, size[0], _CHECKER):
            if (x // _CHECKER + y // _CHECKER) % 2:
                draw.rectangle([x, y, x + _CHECKER - 1, y + _CHECKER - 1], fill=(204, 204, 204, 255))
    return board


def _comparison(source: Image.Image, result: Image.Image, labels: tuple[str, str]) -> Image.Image:
    """`source` Lanczos-upscaled to the result's size beside `result`, each on a checkerboard, labelled."""
    width, height = result.size
    panels = [source.convert("RGBA").resize(result.size, Image.Resampling.LANCZOS), result.convert("RGBA")]
    sheet = Image.new("RGB", (3 * _MARGIN + 2 * width, _LABEL_HEIGHT + height + _MARGIN), (32, 32, 40))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = _MARGIN + i * (width + _MARGIN)
        sheet.paste(
            Image.alpha_composite(_checkerboard(result.size), panel).convert("RGB"), (x, _LABEL_HEIGHT)
        )
        draw.text((x, _LABEL_HEIGHT // 2), label, fill=(235, 235, 235), font=font, anchor="lm")
    return sheet


def _timings(job: gateway_pb2.Job) -> Table:
    timings = job.result.stage_timings
    total = sum(t.seconds for t in timings) or 1.0
    table = Table("stage", "seconds", "share", title="Time per stage")
    for timing in timings:
        table.add_row(_stage_name(timing.stage), f"{timing.seconds:.2f}", f"{timing.seconds / total:.0%}")
    table.add_row("total", f"{sum(t.seconds for t in timings):.2f}", "100%", style="bold")
    return table


def run_demo(output_dir: Path | str | None = None, *, scale: float = 2.0, profile: str = "tiny") -> int:
    """Upscale the sample sprite through a freshly started embedded stack; the exit code (0 or 1).

    Args:
        output_dir: Where `sample_sprite_x<scale>.png` and `sample_sprite_comparison.png` are written
            (created if missing; the stack's state lives in a temporary folder inside it, removed at
            the end). Default (None): `demo-output/` in the working directory.
        scale: Upscale factor.
        profile: ``"tiny"`` (random-weight models, built if missing) or ``"production"``.
    """
    console = Console(soft_wrap=True)  # paths stay whole when the output is piped
    started = time.perf_counter()
    # 1. Paths
    out = Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / f"{SAMPLE.stem}_x{scale:g}.png"
    comparison_path = out / f"{SAMPLE.stem}_comparison.png"
    source = Image.open(SAMPLE)
    source.load()
    console.print(
        f"[bold]Tilesmith demo[/]: {SAMPLE.name} ({source.width}x{source.height} {source.mode}) x{scale:g}"
    )
    if profile == "tiny":
        console.print(
            "[yellow]The tiny profile's models have random weights: the re-drawn pixels are noise by design. "
            "It shows the machinery (tiles, seam fix, alpha, events, timings), not quality.[/]"
        )

    # 2. The tiny models (a stamp check when they are built already)
    if profile == "tiny":
        from services.diffusion.tiny import build_tiny_models, default_cache_dir

        with console.status("Building the tiny models if missing..."):
            tick = time.perf_counter()
            models = build_tiny_models(default_cache_dir())
        console.print(f"Tiny models ready in {time.perf_counter() - tick:.1f} s ({models})")

    # 3. Stack up, the job through the SDK, stack down
    with tempfile.TemporaryDirectory(prefix=".state-", dir=out) as state_dir:
        config = StackConfig(
            profile=profile, state_dir=Path(state_dir), torch_threads=0, metrics_port=0, grace_seconds=1.0
        )
        try:
            outcome = asyncio.run(_upscale(config, source, scale, console))
        except TilesmithError as exc:
            job = getattr(exc, "job", None)  # set when the job itself failed
            where = f"The job failed in stage {_stage_name(job.error.stage)}" if job else "The demo failed"
            console.print(f"[red bold]{where}:[/] {type(exc).__name__}: {exc.message}")
            if isinstance(exc, InvalidArgument):
                console.print(f"[red]field:[/] {exc.field}")
            return 1

    # 4. The result and the comparison
    outcome.image.save(result_path)
    labels = ("input (Lanczos)", f"Tilesmith ({profile} profile)")
    _comparison(source, outcome.image, labels).save(comparison_path)

    # 5. The summary
    job = outcome.job
    console.print(_timings(job))
    console.print(f"job id          {job.id}")
    console.print(f"seed            {job.seed}")
    console.print(f"tiles re-drawn  {job.result.tiles_redrawn}")
    console.print(f"output          {outcome.image.width}x{outcome.image.height} {outcome.image.mode}")
    console.print(
        f"wall time       {time.perf_counter() - started:.1f} s (models, stack start and stop included)"
    )
    console.print(f"result          {result_path}")
    console.print(f"comparison      {comparison_path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """`python -m gateway.demo` (what `make demo` runs)."""
    from services.common.logging import configure_logging, route_library_logging

    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="default: %(default)s/")
    parser.add_argument("--scale", type=float, default=2.0, help="upscale factor (default: %(default)s)")
    parser.add_argument("--profile", choices=("tiny", "production"), default="tiny", help="default: tiny")
    args = parser.parse_args(argv)
    configure_logging("WARNING", json=False)  # the demo's own output is the report; services only warn
    with Console().status("Importing torch and diffusers..."):  # seconds on a small machine
        route_library_logging("diffusers", "transformers", "huggingface_hub")
    # diffusers warns about float32 modules on every tiny model it loads; nothing for a demo to act on.
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    raise SystemExit(run_demo(args.output_dir, scale=args.scale, profile=args.profile))


if __name__ == "__main__":
    main()
