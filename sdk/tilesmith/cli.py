"""The ``tilesmith`` command: upscale and generate images, manage jobs, models, LoRAs and presets, and
run the stack locally.

    tilesmith upscale art.png --preset 4K --seam-fix --lora ink:0.6 -o art_4k.png
    tilesmith generate "a castle at dusk" --base-size 1024x576 --scale 2
    tilesmith jobs list --state running
    tilesmith jobs show <id> --json | jq .state
    tilesmith serve --profile tiny

Every command but ``serve`` and ``demo`` talks to the gateway through `tilesmith.AsyncClient`; its
address and token come from ``--address`` / ``--token`` or the environment (``TILESMITH_ADDRESS``,
``TILESMITH_TOKEN``); the token is never printed. Global options go before or after the command.
``--json`` prints one JSON document on stdout (messages as `google.protobuf.json_format` writes them,
with the protos' field names) and no progress; ``jobs watch --json`` prints one JSON line per event.
Progress bars and errors go to stderr; an error is one line, never a traceback.

Exit codes:

    0    success
    1    the job failed or was cancelled (its message, field and request id are printed), or the
         gateway refused a call for another reason (AlreadyExists, FailedPrecondition,
         ResourceExhausted, Unauthenticated, Internal); a file that cannot be written
    2    a usage error, or InvalidArgument from the gateway (the field is printed); ``serve`` and
         ``demo`` without the server parts installed
    3    the gateway cannot be reached (Unavailable, DeadlineExceeded); the address is printed
    4    NotFound: no such job, intermediate, preset or LoRA
    130  interrupted (Ctrl-C); while ``upscale`` or ``generate`` waits on its job, the job is
         cancelled first (``jobs watch`` leaves the job running)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, RenderableType
from rich.json import JSON
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from tilesmith import __version__, errors
from tilesmith.client import DEFAULT_ADDRESS, AsyncClient, AsyncJob
from tilesmith.options import GenerateOptions, Region, UpscaleOptions
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, tiling_pb2

__all__ = ["JobProgress", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

COMMANDS_GROUP = "tilesmith.commands"
INSTALL_HINT = "the server parts are not installed: pip install 'tilesmith[all]'"

# Output file suffix -> GetResult encoding; None asks for the stored encoding (PNG) as it is.
_ENCODINGS = {".png": None, ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_OPTION_FIELDS = frozenset(option.name for option in fields(UpscaleOptions))
_STATE_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


class UsageError(Exception):
    """A command line that cannot run as given (exit 2), found after argparse accepted it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tilesmith`` command with `argv` (default: ``sys.argv[1:]``) and return its exit code."""
    # 1. Parse (argparse prints usage errors and --help itself, and exits 2 or 0)
    parser = _parser(os.environ)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    output = _Output(json=args.json, out=Console(), err=Console(stderr=True))

    # 2. Run the command; every failure becomes one line on stderr and an exit code
    try:
        if inspect.iscoroutinefunction(args.run):
            return asyncio.run(_with_client(args, output))
        return args.run(args, output)
    except KeyboardInterrupt:
        output.err.print("Interrupted.")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except errors.TilesmithError as exc:
        return _report(exc, args.address, output)
    except OSError as exc:
        output.error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_FAILED


async def _with_client(args: argparse.Namespace, output: _Output) -> int:
    timeout = {} if args.timeout is None else {"timeout": args.timeout}
    async with AsyncClient(args.address, token=args.token, **timeout) as client:
        return await args.run(client, args, output)


def _report(exc: errors.TilesmithError, address: str, output: _Output) -> int:
    """Print a failed call or job as one line; the exit code for it."""
    request_id = getattr(exc, "request_id", None)
    request = f" (request id {request_id})" if request_id else ""
    job = getattr(exc, "job", None)
    if job is not None:  # the job ran and ended badly: its error, not the call's
        if isinstance(exc, errors.Cancelled):
            output.error(f"job {job.id} was cancelled")
            return EXIT_FAILED
        stage = _name(gateway_pb2.JobStage, "JOB_STAGE_", job.error.stage)
        field = f" [field {exc.field}]" if isinstance(exc, errors.InvalidArgument) else ""
        output.error(f"job {job.id} failed{f' at {stage}' if stage else ''}: {exc.message}{field}{request}")
        return EXIT_FAILED
    if isinstance(exc, errors.InvalidArgument):
        output.error(f"invalid {exc.field}: {exc.message}{request}")
        return EXIT_USAGE
    if isinstance(exc, errors.Unavailable | errors.DeadlineExceeded):
        output.error(f"cannot reach the gateway at {address}: {exc.message}")
        return EXIT_UNREACHABLE
    if isinstance(exc, errors.NotFound):
        output.error(f"not found: {exc.message}{request}")
        return EXIT_NOT_FOUND
    if isinstance(exc, errors.Unauthenticated):
        output.error(f"{exc.message}: pass --token or set TILESMITH_TOKEN")
        return EXIT_FAILED
    output.error(f"{type(exc).__name__}: {exc.message}{request}")
    return EXIT_FAILED


@dataclass
class _Output:
    """Where a command's output goes: rich text on stdout, or JSON (``--json``); notes on stderr."""

    json: bool
    out: Console
    err: Console

    def emit(self, document: Any, human: RenderableType | Callable[[], RenderableType]) -> None:
        """`document` as JSON, or `human` (a renderable, or a function building one) as text."""
        if self.json:
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        else:
            renderable = human() if callable(human) else human
            self.out.print(renderable, soft_wrap=isinstance(renderable, str))  # keep paths on one line

    def json_line(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A line for people on stderr (not with --json)."""
        if not self.json:
            self.err.print(text, highlight=False, soft_wrap=True)

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------
# upscale, generate


async def _upscale(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    """Upload IMAGE, submit an UPSCALE job, wait for it with a progress bar, write the result."""
    # 1. Check inputs
    image = _existing_file(args.image, "IMAGE")
    path = args.output or image.with_name(f"{image.stem}_tilesmith.png")
    encoding = _encoding(path)
    flags = _option_flags(args)
    if "ip_adapter_image" in flags:
        _existing_file(flags["ip_adapter_image"], "--style-image")

    # 2. The options: a saved preset's settings, then the flags given
    options = UpscaleOptions()
    if args.settings_preset:
        options = UpscaleOptions.from_settings((await client.get_preset(args.settings_preset)).settings)
    options = _apply_flags(options, flags)

    # 3. Submit (the client uploads the image and style image first), then follow the job
    job = await client.upscale(image, options, label=args.label)
    return await _follow(client, job, path, encoding, args.detach, output)


async def _generate(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    """Submit a GENERATE job for PROMPT, wait for it with a progress bar, write the result."""
    encoding = _encoding(args.output) if args.output else None
    options = GenerateOptions(
        negative_prompt=args.base_negative_prompt,
        base_size=args.base_size,
        base_steps=args.base_steps,
        base_cfg=args.base_cfg,
        enhance=_apply_flags(UpscaleOptions(), _option_flags(args)),
    )
    job = await client.generate(args.prompt_text, options, label=args.label)
    path = args.output or Path(f"tilesmith_{job.id}.png")
    return await _follow(client, job, path, encoding, args.detach, output)


async def _follow(
    client: AsyncClient, job: AsyncJob, path: Path, encoding: str | None, detach: bool, output: _Output
) -> int:
    """Print the id of a detached job, or wait for it and write its result to `path`."""
    if detach:
        output.emit({"job": _dict(job.job)}, job.id)
        return EXIT_OK
    final = await _wait(job, output)
    image = await client.get_result(job.id, encoding=encoding)
    await asyncio.to_thread(path.write_bytes, image.data)
    size = final.result.size
    output.emit(
        {"job": _dict(final), "output": str(path)},
        f"Wrote [bold]{escape(str(path))}[/] ({size.width}x{size.height}), job {job.id}, seed {final.seed}",
    )
    return EXIT_OK


async def _wait(job: AsyncJob, output: _Output) -> gateway_pb2.Job:
    """Wait for `job` with a progress bar; on Ctrl-C cancel it first, then let the interrupt through."""
    try:
        with JobProgress(output.err, disable=output.json) as progress:
            return await job.wait(on_event=progress.update)
    except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: asyncio.run cancels the main task
        output.err.print(f"Cancelling job {job.id}...")
        try:
            await job.cancel()
        except errors.TilesmithError as exc:
            output.error(f"could not cancel job {job.id}: {exc}")
        raise


class JobProgress:
    """A progress bar fed by a job's events: the stage, tiles done/total and the gateway's ETA."""

    def __init__(self, console: Console, *, disable: bool = False) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[tiles]}"),
            TextColumn("{task.fields[eta]}"),
            console=console,
            disable=disable,
        )
        self._task = self._progress.add_task("queued", total=1.0, tiles="", eta="")

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, event: gateway_pb2.JobEvent) -> None:
        progress, kind = event.progress, event.WhichOneof("kind")
        if kind in ("succeeded", "failed", "cancelled"):
            description = kind
        elif progress.stage:
            description = _name(gateway_pb2.JobStage, "JOB_STAGE_", progress.stage) or ""
        else:
            description = f"queued ({progress.queue_position} ahead)" if progress.queue_position else "queued"
        eta = progress.eta_seconds if progress.HasField("eta_seconds") else None
        self._progress.update(
            self._task,
            description=description,
            completed=1.0 if kind == "succeeded" else progress.fraction,
            tiles=f"{progress.tiles_done}/{progress.tiles_total} tiles" if progress.tiles_total else "",
            eta=f"ETA {timedelta(seconds=round(eta))}" if eta is not None else "",
        )


# ---------------------------------------------------------------------------------------------------
# jobs


async def _jobs_list(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    jobs: list[gateway_pb2.Job] = []
    listing = client.list_jobs(args.state, args.kind, page_size=min(args.limit, 500))
    async with contextlib.aclosing(listing) as pages:
        async for job in pages:
            jobs.append(job)
            if len(jobs) == args.limit:
                break

    def table() -> Table:
        table = Table("id", "kind", "state", "progress", "created", "label", title="Jobs, newest first")
        for job in jobs:
            table.add_row(
                job.id,
                _name(gateway_pb2.JobKind, "JOB_KIND_", job.kind),
                _state(job.state),
                _progress_text(job),
                _time(job.created_time),
                escape(job.spec.label),
            )
        return table

    output.emit({"jobs": [_dict(job) for job in jobs]}, table)
    return EXIT_OK


async def _jobs_show(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    job = await client.get_job(args.job_id)

    def details() -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        rows = [
            ("id", job.id),
            ("kind", _name(gateway_pb2.JobKind, "JOB_KIND_", job.kind)),
            ("state", _state(job.state)),
            ("label", escape(job.spec.label)),
            ("seed", str(job.seed)),
            ("progress", _progress_text(job)),
            ("created", _time(job.created_time)),
            ("started", _time(job.started_time)),
            ("finished", _time(job.finished_time)),
        ]
        if job.HasField("result"):
            result = job.result
            rows += [
                ("size", f"{result.size.width}x{result.size.height}"),
                ("result image id", result.image_id),
                ("intermediates", ", ".join(result.intermediates)),
                ("tiles re-drawn", str(result.tiles_redrawn)),
                ("stage seconds", _stage_timings(result.stage_timings)),
            ]
        if job.HasField("error"):
            rows += [
                ("error", escape(job.error.message)),
                ("failed stage", _name(gateway_pb2.JobStage, "JOB_STAGE_", job.error.stage)),
                ("field", job.error.field),
                ("request id", job.error.request_id),
            ]
        for label, value in rows:
            if value:
                grid.add_row(label, value)
        grid.add_row("spec", JSON.from_data(_dict(job.spec)))
        return grid

    output.emit(_dict(job), details)
    return EXIT_OK


async def _jobs_watch(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    job = client.job(args.job_id)
    try:
        if output.json:
            await job.wait(on_event=lambda event: output.json_line(_dict(event)), after_seq=args.after_seq)
            return EXIT_OK
        with JobProgress(output.err, disable=False) as progress:
            final = await job.wait(on_event=progress.update, after_seq=args.after_seq)
    except (asyncio.CancelledError, KeyboardInterrupt):
        output.err.print(f"Stopped watching; job {job.id} keeps running (tilesmith jobs cancel {job.id}).")
        raise
    output.out.print(f"Job {final.id} succeeded; fetch it with: tilesmith jobs result {final.id}")
    return EXIT_OK


async def _jobs_cancel(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    job = await client.cancel_job(args.job_id)
    output.emit({"job": _dict(job)}, f"Job {job.id}: {_state(job.state)}")
    return EXIT_OK


async def _jobs_result(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    name = args.intermediate or "final"
    path = args.output or Path(f"{args.job_id}.png" if name == "final" else f"{args.job_id}_{name}.png")
    image = await client.get_result(args.job_id, name, encoding=_encoding(path))
    await asyncio.to_thread(path.write_bytes, image.data)
    output.emit(
        {"job_id": args.job_id, "image": name, "output": str(path), "size_bytes": len(image.data)},
        f"Wrote [bold]{escape(str(path))}[/] ({name} image of job {args.job_id})",
    )
    return EXIT_OK


async def _jobs_delete(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    await client.delete_job(args.job_id)
    output.emit({"deleted": args.job_id}, f"Deleted job {args.job_id}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# models


async def _models_list(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    models, loras, providers = await asyncio.gather(
        client.list_models(), client.list_loras(), client.list_providers()
    )

    def tables() -> Table:
        page = Table.grid()
        page.add_row(
            f"Profile [bold]{models.profile}[/] on {models.device} ({models.dtype}), "
            f"at most {models.max_batch_size} tiles per diffusion call"
        )
        table = Table("name", "kind", "architecture", "scale", "loaded", "default", "source", title="Models")
        for model in models.models:
            architecture = _name(common_pb2.BaseArchitecture, "BASE_ARCHITECTURE_", model.base_architecture)
            table.add_row(
                escape(model.name),
                _name(diffusion_pb2.ModelKind, "MODEL_KIND_", model.kind),
                architecture or model.architecture,
                f"x{model.scale}" if model.scale else "",
                _yes(model.loaded),
                _yes(model.is_default),
                escape(model.source),
            )
        page.add_row(table)
        table = Table("name", "architecture", "compatible", "type", "trigger words", "size", title="LoRAs")
        for lora in loras.loras:
            table.add_row(
                lora.name,
                _name(common_pb2.BaseArchitecture, "BASE_ARCHITECTURE_", lora.base_architecture) or "unknown",
                _yes(lora.compatible),
                _name(diffusion_pb2.LoraType, "LORA_TYPE_", lora.metadata.type),
                escape(", ".join(lora.metadata.trigger_words)),
                _megabytes(lora.size_bytes),
            )
        page.add_row(table)
        table = Table("name", "kind", "capabilities", "available", "models", title="Providers")
        for provider in providers.providers:
            table.add_row(
                provider.name,
                _name(bridge_pb2.ProviderKind, "PROVIDER_KIND_", provider.kind),
                ", ".join(
                    _name(bridge_pb2.ProviderCapability, "PROVIDER_CAPABILITY_", capability)
                    for capability in provider.capabilities
                ),
                _yes(provider.available) if provider.available else escape(provider.unavailable_reason),
                ", ".join(provider.models),
            )
        page.add_row(table)
        return page

    output.emit({"models": _dict(models), "loras": _dict(loras), "providers": _dict(providers)}, tables)
    return EXIT_OK


async def _lora_upload(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    path = _existing_file(args.file, "FILE")
    metadata = None
    if args.type or args.trigger:
        lora_type = diffusion_pb2.LoraType.Value(f"LORA_TYPE_{args.type.upper()}") if args.type else None
        metadata = diffusion_pb2.LoraMetadata(type=lora_type, trigger_words=args.trigger)
    output.note(f"Uploading {path.name} ({_megabytes(path.stat().st_size)})")
    lora = await client.upload_lora(path, args.name or path.stem, metadata=metadata, overwrite=args.overwrite)
    architecture = _name(common_pb2.BaseArchitecture, "BASE_ARCHITECTURE_", lora.base_architecture)
    output.emit(
        {"lora": _dict(lora)},
        f"Uploaded LoRA [bold]{lora.name}[/] ({architecture or 'unknown architecture'}, "
        f"{'compatible' if lora.compatible else 'not compatible with the loaded checkpoint'}, "
        f"sha256 {lora.sha256[:12]})",
    )
    return EXIT_OK


async def _lora_delete(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    await client.delete_lora(args.name)
    output.emit({"deleted": args.name}, f"Deleted LoRA {args.name}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# presets


async def _presets_list(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    presets = await client.list_presets()

    def table() -> Table:
        table = Table("name", "settings", "description", "updated", title="Presets")
        for preset in presets:
            table.add_row(
                escape(preset.name),
                _settings_summary(preset.settings),
                escape(preset.description),
                _time(preset.updated_time),
            )
        return table

    output.emit({"presets": [_dict(preset) for preset in presets]}, table)
    return EXIT_OK


async def _presets_show(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    preset = await client.get_preset(args.name)
    output.emit(_dict(preset), lambda: JSON.from_data(_dict(preset)))
    return EXIT_OK


async def _presets_save(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    flags = _option_flags(args)
    if "ip_adapter_image" in flags:  # a preset keeps the style image as an uploaded image id
        flags["ip_adapter_image"] = await client.upload_image(
            _existing_file(flags["ip_adapter_image"], "--style-image")
        )
    options = _apply_flags(UpscaleOptions(), flags)
    preset = await client.save_preset(args.name, options, description=args.description)
    output.emit(
        {"preset": _dict(preset)},
        f"Saved preset [bold]{escape(preset.name)}[/]: {_settings_summary(preset.settings)}",
    )
    return EXIT_OK


async def _presets_delete(client: AsyncClient, args: argparse.Namespace, output: _Output) -> int:
    await client.delete_preset(args.name)
    output.emit({"deleted": args.name}, f"Deleted preset {escape(args.name)}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# serve, demo (the server parts, imported only here)


def _server_command(name: str, output: _Output) -> Callable[..., int] | None:
    """The `serve` / `demo` implementation the server side registered (entry-point group
    ``tilesmith.commands``); None, with the install hint printed, when it is not installed."""
    for entry_point in entry_points(group=COMMANDS_GROUP, name=name):
        try:
            return entry_point.load()
        except ImportError as exc:
            output.error(f"{INSTALL_HINT} ({exc})")
            return None
    output.error(f"{INSTALL_HINT} (no {name!r} command is registered in {COMMANDS_GROUP!r})")
    return None


def _serve(args: argparse.Namespace, output: _Output) -> int:
    serve = _server_command("serve", output)
    if serve is None:
        return EXIT_USAGE
    options = {"profile": args.profile, "split": args.split, "host": args.host, "port": args.port}
    options["state_dir"] = args.state_dir
    if args.ui is not None:
        options["ui_port"] = args.ui
    return serve(**options)


def _demo(args: argparse.Namespace, output: _Output) -> int:
    run_demo = _server_command("demo", output)
    if run_demo is None:
        return EXIT_USAGE
    return run_demo(output_dir=args.output_dir)


# ---------------------------------------------------------------------------------------------------
# Helpers


def _dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _name(wrapper: EnumTypeWrapper, prefix: str, value: int) -> str:
    """An enum value for people: ``JOB_STAGE_SEAM_FIX`` -> ``seam fix``; empty for UNSPECIFIED."""
    return wrapper.Name(value).removeprefix(prefix).lower().replace("_", " ") if value else ""


def _choices(wrapper: EnumTypeWrapper, prefix: str) -> list[str]:
    """The names a flag accepts for an enum: lower case, without the prefix and UNSPECIFIED."""
    return [
        name.removeprefix(prefix).lower()
        for name in wrapper.DESCRIPTOR.values_by_name
        if not name.endswith("UNSPECIFIED")
    ]


def _state(state: int) -> str:
    name = _name(gateway_pb2.JobState, "JOB_STATE_", state)
    return f"[{_STATE_STYLES[name]}]{name}[/]" if name in _STATE_STYLES else name


def _progress_text(job: gateway_pb2.Job) -> str:
    progress = job.progress
    tiles = f", {progress.tiles_done}/{progress.tiles_total} tiles" if progress.tiles_total else ""
    return f"{progress.fraction:.0%}{tiles}"


def _time(timestamp: Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    return timestamp.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _stage_timings(timings: Sequence[gateway_pb2.StageTiming]) -> str:
    return ", ".join(
        f"{_name(gateway_pb2.JobStage, 'JOB_STAGE_', timing.stage)} {timing.seconds:.1f}"
        for timing in timings
    )


def _settings_summary(settings: gateway_pb2.UpscaleSettings) -> str:
    options = UpscaleOptions.from_settings(settings)
    match options.target:
        case None:
            parts = ["x2"]
        case float() as scale:
            parts = [f"x{scale:g}"]
        case (width, height):
            parts = [f"{width}x{height}"]
        case preset:
            parts = [str(preset)]
    if options.strength is not None:
        parts.append(f"strength {options.strength:.2f}")
    parts += [f"{name}:{weight:g}" for name, weight in options.loras]
    if options.seam_fix:
        parts.append("seam fix")
    return escape(", ".join(parts))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{what}: no such file: {path}")
    return path


def _encoding(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix not in _ENCODINGS:
        raise UsageError(f"output {path}: the name must end in {', '.join(_ENCODINGS)}")
    return _ENCODINGS[suffix]


def _option_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The UpscaleOptions fields given on the command line; flags left out are absent, not None."""
    flags = {name: value for name, value in vars(args).items() if name in _OPTION_FIELDS}
    if "tile_prompts" in flags:
        flags["tile_prompts"] = dict(flags["tile_prompts"])
    return flags


def _apply_flags(options: UpscaleOptions, flags: dict[str, Any]) -> UpscaleOptions:
    """`options` with the given flags replacing fields (repeated flags replace the whole list)."""
    if "target" in flags and "fit" not in flags:
        flags = {**flags, "fit": None}  # a fit belongs to the exact size it came with
    options = replace(options, **flags)
    if options.fit is not None and not isinstance(options.target, tuple):
        raise UsageError("--fit applies only with --size WxH")
    return options


# --- Flag value types (argparse reports their errors as usage errors) ---------------------------------


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}")
    return int(match[1]), int(match[2])


def _tile_size(text: str) -> int | tuple[int, int]:
    return int(text) if text.strip().isdigit() else _size(text)


def _lora(text: str) -> tuple[str, float]:
    name, _, weight = text.partition(":")
    if not name or not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)?", weight):
        raise argparse.ArgumentTypeError(f"expected NAME[:WEIGHT] such as detail:0.6, got {text!r}")
    return name, float(weight) if weight else 1.0


def _tile_prompt(text: str) -> tuple[int, str]:
    index, separator, prompt = text.partition("=")
    if not separator or not index.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected INDEX=TEXT such as '3=a stone wall', got {text!r}")
    return int(index), prompt


def _region(text: str) -> Region:
    rect, _, prompt = text.partition(":")
    numbers = rect.split(",")
    if len(numbers) != 4 or not all(number.strip().isdigit() for number in numbers):
        raise argparse.ArgumentTypeError(
            f"expected X,Y,W,H[:PROMPT] such as '10,20,300,200:a face', got {text!r}"
        )
    x, y, width, height = (int(number) for number in numbers)
    return Region((x, y, width, height), prompt=prompt)


def _indices(text: str) -> list[int]:
    indices = [part.strip() for part in text.split(",")]
    if not all(index.isdigit() for index in indices):
        raise argparse.ArgumentTypeError(f"expected tile indices such as 0,3,4, got {text!r}")
    return [int(index) for index in indices]


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


# --- The parser -------------------------------------------------------------------------------------


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line; `environ` supplies the defaults of --address and --token."""
    parser = argparse.ArgumentParser(
        prog="tilesmith",
        description="Tile-based AI upscaling: drive a Tilesmith gateway, or run the stack locally.",
        epilog="Exit codes: 0 ok, 1 job failed or cancelled, 2 usage or invalid argument, "
        "3 gateway unreachable, 4 not found, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"tilesmith {__version__}")
    _add_global_options(parser, environ)
    # The same options after the command: SUPPRESS there keeps a value given before the command.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_global_options(common, None)
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    def group(name: str, summary: str) -> argparse._SubParsersAction:
        sub = commands.add_parser(name, help=summary, description=summary)
        return sub.add_subparsers(title="commands", dest=f"{name}_command", required=True, metavar="COMMAND")

    def command(
        where: argparse._SubParsersAction, name: str, run: Callable[..., Any], summary: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        sub = where.add_parser(name, help=summary, description=summary, parents=[common], **kwargs)
        sub.set_defaults(run=run)
        return sub

    # Option flags default to SUPPRESS: only the flags given reach UpscaleOptions (`_option_flags`).
    flags_only = {"argument_default": argparse.SUPPRESS}

    upscale = command(
        commands, "upscale", _upscale, "Upscale an image and wait for the result.", **flags_only
    )
    upscale.add_argument("image", type=Path, metavar="IMAGE", help="PNG, JPEG or WebP file")
    upscale.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="OUT",
        help="default: <stem>_tilesmith.png by IMAGE",
    )
    _add_enhance_flags(upscale)
    _add_upscale_flags(upscale)
    tiles = upscale.add_argument_group("tiles and regions")
    tiles.add_argument(
        "--tile-prompt",
        dest="tile_prompts",
        type=_tile_prompt,
        action="append",
        metavar="INDEX=TEXT",
        help="prompt of one first-pass tile (repeatable)",
    )
    tiles.add_argument(
        "--region",
        dest="regions",
        type=_region,
        action="append",
        metavar="X,Y,W,H[:PROMPT]",
        help="re-draw a rectangle of IMAGE with its own prompt (repeatable)",
    )
    tiles.add_argument(
        "--select",
        dest="selected_tiles",
        type=_indices,
        metavar="0,3,4",
        help="re-draw only these first-pass tiles",
    )
    upscale.add_argument(
        "--settings-preset",
        default=None,
        metavar="NAME",
        help="start from a saved preset's settings, then apply the flags given",
    )
    _add_job_flags(upscale)

    generate = command(commands, "generate", _generate, "Generate an image and enhance it.", **flags_only)
    generate.add_argument("prompt_text", metavar="PROMPT", help="what to draw")
    generate.add_argument(
        "-o", "--output", type=Path, default=None, metavar="OUT", help="default: tilesmith_<job id>.png"
    )
    base = generate.add_argument_group("base image")
    base.add_argument("--negative-prompt", dest="base_negative_prompt", default="", metavar="TEXT")
    base.add_argument("--base-size", type=_size, default=None, metavar="WxH", help="default 1024x1024")
    base.add_argument("--base-steps", type=int, default=None, metavar="N", help="default 30")
    base.add_argument("--base-cfg", type=float, default=None, metavar="F", help="default 7.0")
    _add_enhance_flags(generate)
    _add_job_flags(generate)

    jobs = group("jobs", "List, watch, cancel and fetch jobs.")
    listing = command(jobs, "list", _jobs_list, "Jobs, newest first.")
    listing.add_argument(
        "--state",
        action="extend",
        nargs="+",
        default=None,
        metavar="STATE",
        choices=_choices(gateway_pb2.JobState, "JOB_STATE_"),
        help="only these states: queued, running, succeeded, failed, cancelled",
    )
    listing.add_argument(
        "--kind",
        action="extend",
        nargs="+",
        default=None,
        metavar="KIND",
        choices=_choices(gateway_pb2.JobKind, "JOB_KIND_"),
        help="only these kinds: upscale, generate, transform, reference",
    )
    listing.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="default 20")
    command(jobs, "show", _jobs_show, "One job: spec, progress, result or error.").add_argument(
        "job_id", metavar="ID"
    )
    watch = command(jobs, "watch", _jobs_watch, "Follow a job until it ends (Ctrl-C leaves it running).")
    watch.add_argument("job_id", metavar="ID")
    watch.add_argument("--after-seq", type=int, default=0, metavar="N", help="only events after this seq")
    command(jobs, "cancel", _jobs_cancel, "Cancel a queued or running job.").add_argument(
        "job_id", metavar="ID"
    )
    result = command(jobs, "result", _jobs_result, "Download a job's result or a kept intermediate.")
    result.add_argument("job_id", metavar="ID")
    result.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="OUT",
        help="default: <ID>.png, or <ID>_<NAME>.png for an intermediate",
    )
    result.add_argument(
        "--intermediate", default=None, metavar="NAME", help="base, preupscaled, redrawn or seam_fixed"
    )
    command(jobs, "delete", _jobs_delete, "Delete an ended job and its results.").add_argument(
        "job_id", metavar="ID"
    )

    models = group("models", "Models, LoRAs and providers.")
    command(models, "list", _models_list, "The diffusion profile, models, LoRAs and providers.")
    upload = command(models, "lora-upload", _lora_upload, "Upload a .safetensors LoRA into the library.")
    upload.add_argument("file", type=Path, metavar="FILE")
    upload.add_argument("--name", default=None, help="default: FILE's name without its suffix")
    upload.add_argument("--type", default=None, choices=_choices(diffusion_pb2.LoraType, "LORA_TYPE_"))
    upload.add_argument(
        "--trigger", action="extend", nargs="+", default=[], metavar="WORD", help="trigger words"
    )
    upload.add_argument("--overwrite", action="store_true", help="replace a LoRA of the same name")
    command(models, "lora-delete", _lora_delete, "Delete a LoRA.").add_argument("name", metavar="NAME")

    presets = group("presets", "Saved upscale settings.")
    command(presets, "list", _presets_list, "Every preset.")
    command(presets, "show", _presets_show, "One preset.").add_argument("name", metavar="NAME")
    save = command(
        presets, "save", _presets_save, "Save the flags given as a preset (replacing NAME).", **flags_only
    )
    save.add_argument("name", metavar="NAME")
    save.add_argument("--description", default="", metavar="TEXT")
    _add_enhance_flags(save)
    _add_upscale_flags(save)
    command(presets, "delete", _presets_delete, "Delete a preset.").add_argument("name", metavar="NAME")

    serve = commands.add_parser("serve", help="Run the stack locally (needs tilesmith[all]).")
    serve.set_defaults(run=_serve)
    serve.add_argument("--split", action="store_true", help="one process per service instead of one in all")
    serve.add_argument("--profile", choices=["tiny", "production"], default=None, help="model profile")
    serve.add_argument("--host", default=None, help="interface to listen on")
    serve.add_argument("--port", type=int, default=None, help="the gateway's port")
    serve.add_argument("--state-dir", type=Path, default=None, metavar="DIR", help="jobs, results, presets")
    serve.add_argument(
        "--ui", type=int, default=None, metavar="PORT", help="also serve the operator UI (e.g. 8501)"
    )
    demo = commands.add_parser(
        "demo", help="Run an end-to-end demo on the tiny profile (needs tilesmith[all])."
    )
    demo.set_defaults(run=_demo)
    demo.add_argument("--output-dir", type=Path, default=None, metavar="DIR", help="where the images go")
    return parser


def _add_global_options(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None) -> None:
    """--address, --token, --json, --timeout; defaults from `environ`, or none (SUPPRESS) without it."""
    if environ is None:
        address = token = json_ = timeout = argparse.SUPPRESS
    else:
        address, token = environ.get("TILESMITH_ADDRESS", DEFAULT_ADDRESS), environ.get("TILESMITH_TOKEN")
        json_, timeout = False, None
    options = parser.add_argument_group("global options")
    options.add_argument(
        "--address",
        default=address,
        metavar="HOST:PORT",
        help=f"the gateway (env TILESMITH_ADDRESS; default {DEFAULT_ADDRESS})",
    )
    options.add_argument("--token", default=token, help="bearer token (env TILESMITH_TOKEN)")
    options.add_argument("--json", action="store_true", default=json_, help="one JSON document on stdout")
    options.add_argument(
        "--timeout",
        type=_positive_float,
        default=timeout,
        metavar="SECONDS",
        help="deadline of each unary call (default 60)",
    )


def _add_enhance_flags(parser: argparse.ArgumentParser) -> None:
    """UpscaleOptions flags of upscale, generate and presets save; each dest is the option's name."""
    size = parser.add_argument_group("output size (default: scale 2)")
    target = size.add_mutually_exclusive_group()
    target.add_argument("--scale", dest="target", type=float, metavar="F", help="scale factor, 1..16")
    target.add_argument("--size", dest="target", type=_size, metavar="WxH", help="exact size")
    target.add_argument(
        "--preset",
        dest="target",
        type=str.upper,
        choices=["2K", "4K", "8K"],
        help="longer side 2048, 3840 or 7680",
    )
    size.add_argument("--fit", choices=_choices(gateway_pb2.TargetFit, "TARGET_FIT_"), help="with --size")
    size.add_argument("--supersampling", type=float, metavar="F", help="work at F x the size, 1..4")
    tiles = parser.add_argument_group("tiles")
    tiles.add_argument("--tile-size", type=_tile_size, metavar="N|WxH", help="working pixels (default 1024)")
    tiles.add_argument("--overlap", type=int, metavar="N", help="working pixels (default 128)")
    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument(
        "--strength", type=float, metavar="F", help="re-draw strength, 0..1 (default 0.35)"
    )
    diffusion.add_argument("--steps", type=int, metavar="N", help="1..150 (default 30)")
    diffusion.add_argument("--cfg", type=float, metavar="F", help="guidance, 0..30 (default 7)")
    diffusion.add_argument("--seed", type=int, metavar="N", help="default: random (reported)")
    diffusion.add_argument(
        "--lora",
        dest="loras",
        type=_lora,
        action="append",
        metavar="NAME[:WEIGHT]",
        help="a LoRA from the library; weight default 1.0 (repeatable)",
    )
    seams = parser.add_argument_group("seam fix")
    seams.add_argument("--seam-fix", action="store_true", help="re-draw the seams in a second pass")
    seams.add_argument("--seam-fix-strength", type=float, metavar="F", help="default half of --strength")
    seams.add_argument("--seam-fix-band", type=int, metavar="N", help="band width (default the overlap)")
    parser.add_argument("--keep-intermediates", action="store_true", help="for jobs result --intermediate")


def _add_upscale_flags(parser: argparse.ArgumentParser) -> None:
    """The other UpscaleOptions flags: upscale and presets save."""
    more = parser.add_argument_group("more settings")
    more.add_argument("--feather", choices=_choices(tiling_pb2.FeatherMode, "FEATHER_MODE_"))
    more.add_argument("--prompt", metavar="TEXT", help="global prompt, before each tile's own")
    more.add_argument("--negative-prompt", metavar="TEXT")
    more.add_argument(
        "--scheduler",
        choices=_choices(diffusion_pb2.Scheduler, "SCHEDULER_"),
        metavar="NAME",
        help=", ".join(_choices(diffusion_pb2.Scheduler, "SCHEDULER_")),
    )
    more.add_argument("--no-controlnet", dest="controlnet", action="store_const", const=False)
    more.add_argument("--controlnet-scale", type=float, metavar="F", help="0..2 (default 0.7)")
    more.add_argument("--style-image", dest="ip_adapter_image", type=Path, metavar="PATH", help="IP-Adapter")
    more.add_argument("--style-scale", dest="ip_adapter_scale", type=float, metavar="F", help="default 0.6")
    more.add_argument("--color-fix", choices=_choices(gateway_pb2.ColorFixMode, "COLOR_FIX_MODE_"))
    more.add_argument("--auto-caption", action="store_true", help="caption tiles without a prompt")
    more.add_argument("--preupscaler", metavar="NAME", help="lanczos or an upscaler (models list)")
    more.add_argument("--generation-size", type=int, metavar="N", help="longer side tiles are drawn at")
    more.add_argument("--batch-size", type=int, metavar="N", help="tiles per diffusion call")


def _add_job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", default="", help="shown in the job history")
    parser.add_argument("--detach", action="store_true", default=False, help="print the job id, do not wait")


if __name__ == "__main__":
    raise SystemExit(main())
