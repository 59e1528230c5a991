"""Job specs at the gateway's door: validation, and resolution into the values the pipeline runs with.

Pure Python over gateway.proto's messages: no gRPC calls, no I/O. What the gateway knows from elsewhere
(uploaded images, the LoRA library, upscaler names, batch and pixel limits, bridge providers) arrives in
a `SpecContext`.

    validate_job_spec   SubmitJob: checks a whole JobSpec, returns the copy to store (job seed and batch
                        size written in, so submitting it again reproduces the run)
    resolve_upscale     UPSCALE / GENERATE: every default filled in, sizes and grids worked out. Pure
    resolve_generate    functions of a stored spec and the context: a resumed job gets the same values
    validate_settings   SavePreset: the UpscaleSettings checks that need no input image
    geometry            input, working and output sizes of an upscale; rects mapped between them
    plan_grids          the first-pass and seam-fix grids alone (PlanGrid, RenderGrid, CaptionTiles)
    tile_prompt         "<global>, <own>" without repeating the global prompt
    derive_seed         per-tile seeds from the job seed

Sizes of an upscale (gateway.proto UpscaleTarget, TargetFit, ResolutionPreset):

    input    the uploaded image (GENERATE: the base image)
    output   the target: scale x input (default 2.0), a preset (longer side 2048 / 3840 / 7680), or an
             exact size reached by STRETCH (both axes), COVER (uniform, then an even crop) or CONTAIN
             (uniform, inside the size)
    working  output x supersampling, each side rounded; tiles are re-drawn here
    scaled   what the input is resized to before any crop: the working size, except with COVER, where
             it is input x cover factor x supersampling and the working image is its centred crop

Sides are rounded to the nearest pixel (Python's `round`, exact rational arithmetic) and are at least 1.

Errors (`services.common.errors`). Fields are dotted paths from the JobSpec (`upscale.settings.strength`,
`upscale.regions[2].rect`, `upscale.tile_prompts[7]`, `generate.settings.loras[1].weight`); messages
give the allowed range and the value got. Errors without a field attribute start with the field.

    InvalidArgument     a value out of range or missing, an enum value the proto does not define, a
                        broken LoRA stacking rule, an unknown or repeated provider
    NotFound            an unknown image, LoRA or upscaler ("upscale.image_id: image 'x' not found")
    FailedPrecondition  a LoRA of another base architecture than the loaded checkpoint
    ImageTooLarge       a working image over the pixel cap, or over 65535 px on a side
    Unavailable         LoRAs to check while the LoRA library is unknown (no diffusion service)
"""

from __future__ import annotations

import hashlib
import math
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from services.common.errors import (
    FailedPrecondition,
    ImageTooLarge,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.grid import Grid, plan_grid
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, tiling_pb2

__all__ = [
    "Geometry",
    "ImageInfo",
    "ResolvedGenerate",
    "ResolvedRegion",
    "ResolvedSettings",
    "ResolvedUpscale",
    "SpecContext",
    "derive_seed",
    "geometry",
    "job_kind",
    "plan_grids",
    "resolve_generate",
    "resolve_upscale",
    "tile_prompt",
    "validate_job_spec",
    "validate_settings",
]

_LANCZOS = "lanczos"
_INTERNAL = "internal"

_MAX_PROMPT = 2000
_MAX_CAPTION_TEXT = 4000
_MAX_REFERENCE_PROMPT = 4000
_MAX_LABEL = 200
_MAX_REGIONS = 64
_MAX_SEED = 2**63 - 1
_RANDOM_SEEDS = 2**32
# The tiling service's largest image side (tiling.proto PlanGridRequest.image_size).
_MAX_SIDE = 65535
_PRESET_SIDES = {
    gateway_pb2.RESOLUTION_PRESET_2K: 2048,
    gateway_pb2.RESOLUTION_PRESET_4K: 3840,
    gateway_pb2.RESOLUTION_PRESET_8K: 7680,
}
_FEATHERS = {
    tiling_pb2.FEATHER_MODE_UNSPECIFIED: "cosine",
    tiling_pb2.FEATHER_MODE_LINEAR: "linear",
    tiling_pb2.FEATHER_MODE_COSINE: "cosine",
}
_KINDS = {
    "upscale": gateway_pb2.JOB_KIND_UPSCALE,
    "generate": gateway_pb2.JOB_KIND_GENERATE,
    "transform": gateway_pb2.JOB_KIND_TRANSFORM,
    "reference": gateway_pb2.JOB_KIND_REFERENCE,
}
# LoRA weights arrive as proto float32 (1.1 becomes 1.10000002) while library ranges are typed by hand;
# the diffusion service allows the same slack (services/diffusion/loras.py).
_WEIGHT_TOLERANCE = 1e-6
_DEFAULT_LORA_WEIGHTS = (-2.0, 2.0)
_MAX_REMOTE_LORAS = 5
_MAX_TRIGGER_WORDS = 32
_MAX_WORD = 100
_MAX_ATTRIBUTE_EXTRAS = 16
_MAX_ATTRIBUTE_KEY = 50


# ---------------------------------------------------------------------------------------------------
# What the gateway knows, and what resolution gives
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """What the gateway knows of an uploaded image.

    Attributes:
        width: Width in pixels, after EXIF orientation.
        height: Height in pixels.
        has_alpha: True when the image has an alpha channel.
    """

    width: int
    height: int
    has_alpha: bool


@dataclass(frozen=True)
class SpecContext:
    """Everything outside a spec that its checks need.

    Attributes:
        image_info: An uploaded image's info by id; raises NotFound for an unknown id.
        loras: The LoRA library and stacking rules (ListLoras); None when the diffusion service cannot
            be reached, which refuses a spec with LoRAs (Unavailable) and passes one without.
        upscalers: Names of the UPSCALER models (ListModels); "lanczos" is valid besides these.
        default_upscaler: The profile's default upscaler (GENERATE's default pre_upscaler).
        max_batch_size: The diffusion replicas' max_batch_size.
        default_batch_size: The gateway's configured batch size; the default is this, or
            max_batch_size when that is smaller.
        max_pixels: The most pixels a working image may have.
        hosted_providers: Bridge provider names (TRANSFORM and REFERENCE chains).
    """

    image_info: Callable[[str], ImageInfo]
    loras: diffusion_pb2.ListLorasResponse | None
    upscalers: frozenset[str]
    default_upscaler: str
    max_batch_size: int
    default_batch_size: int
    max_pixels: int
    hosted_providers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Geometry:
    """The sizes of an upscale of one image (module docstring), as (width, height) pairs.

    Attributes:
        input_size: The input image.
        scaled_size: What the input is resized to at working scale, before any crop.
        crop: (x, y) of the working image inside the scaled image; (0, 0) unless the fit is COVER.
        working_size: Target size x supersampling: where tiles are re-drawn.
        output_size: The final image.
    """

    input_size: tuple[int, int]
    scaled_size: tuple[int, int]
    crop: tuple[int, int]
    working_size: tuple[int, int]
    output_size: tuple[int, int]

    def input_rect_to_working(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        """An input-image rect in working-image pixels, `(x, y, w, h)`.

        Scaled and shifted by the crop, start floored and end ceiled (so it covers every working pixel
        the rect touches), then clipped to the working image: a rect inside the part that COVER crops
        away comes back 0 wide or 0 high.
        """
        (iw, ih), (sw, sh), (cx, cy), (ww, wh) = (
            self.input_size,
            self.scaled_size,
            self.crop,
            self.working_size,
        )
        x0, x1 = _map_span(x, w, sw, iw, -cx, ww)
        y0, y1 = _map_span(y, h, sh, ih, -cy, wh)
        return x0, y0, x1 - x0, y1 - y0

    def working_rect_to_input(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        """A working-image rect in input-image pixels, `(x, y, w, h)`: the inverse of
        `input_rect_to_working`, start floored and end ceiled, clipped to the input, at least 1x1."""
        (iw, ih), (sw, sh), (cx, cy) = self.input_size, self.scaled_size, self.crop
        x0, x1 = _at_least_one(*_map_span(x + cx, w, iw, sw, 0, iw), iw)
        y0, y1 = _at_least_one(*_map_span(y + cy, h, ih, sh, 0, ih), ih)
        return x0, y0, x1 - x0, y1 - y0


@dataclass(frozen=True)
class ResolvedRegion:
    """One UpscaleRegion with its defaults filled in.

    Attributes:
        index: Its index in UpscaleSpec.regions.
        rect: `(x, y, w, h)` in input-image pixels.
        prompt: Its own prompt as given; the re-draw uses `tile_prompt(settings.prompt, prompt)`.
        padding: Context around the rect, in input pixels.
        feather: Width of the soft edge outside the rect, in input pixels.
        strength: Its re-draw strength.
    """

    index: int
    rect: tuple[int, int, int, int]
    prompt: str
    padding: int
    feather: int
    strength: float


@dataclass(frozen=True)
class ResolvedSettings:
    """UpscaleSettings for one input image, every default resolved (gateway.proto gives them).

    Attributes:
        geometry: The sizes.
        grid: The first-pass grid over the working image (tiles are smaller only where the image is).
        seam_grid: The offset grid of the seam-fix pass; None when seam fix is off or `grid` has one tile.
        tile_size: The requested tile size, (width, height).
        overlap: The requested overlap.
        feather: "linear" or "cosine".
        prompt: The global prompt (GENERATE: the spec's prompt when the settings have none).
        negative_prompt: The negative prompt (GENERATE: likewise).
        strength: First-pass strength.
        steps: Scheduler steps.
        cfg_scale: Classifier-free guidance scale.
        seed: The job seed (tiles use `derive_seed`).
        scheduler: A `diffusion_pb2.Scheduler` value, never UNSPECIFIED.
        controlnet: ControlNet-tile settings with every field set.
        ip_adapter_image_id: The style image's id; None for no IP-Adapter.
        ip_adapter_scale: The IP-Adapter scale.
        loras: `(name, weight)` pairs in application order.
        seam_fix: Run the seam-fix pass.
        seam_strength: Strength of the seam-fix pass.
        seam_band_width: Width of the band around each seam, in working pixels.
        color_fix: A `gateway_pb2.ColorFixMode` value, never UNSPECIFIED.
        auto_caption: Caption tiles that have no prompt of their own.
        caption_instruction: Captioning instruction; empty for the service's default.
        caption_system_prompt: Captioning system prompt; empty for the service's default.
        caption_use_context: Show the captioning model the whole image.
        caption_max_new_tokens: Most tokens per caption.
        pre_upscaler: "lanczos" or an upscaler name.
        generation_size: Longer side tiles are diffused at; None for the tile's own size.
        batch_size: Tiles per diffusion call.
        keep_intermediates: Keep the intermediate images.
    """

    geometry: Geometry
    grid: Grid
    seam_grid: Grid | None
    tile_size: tuple[int, int]
    overlap: int
    feather: str
    prompt: str
    negative_prompt: str
    strength: float
    steps: int
    cfg_scale: float
    seed: int
    scheduler: int
    controlnet: diffusion_pb2.ControlNetSettings
    ip_adapter_image_id: str | None
    ip_adapter_scale: float
    loras: tuple[tuple[str, float], ...]
    seam_fix: bool
    seam_strength: float
    seam_band_width: int
    color_fix: int
    auto_caption: bool
    caption_instruction: str
    caption_system_prompt: str
    caption_use_context: bool
    caption_max_new_tokens: int
    pre_upscaler: str
    generation_size: int | None
    batch_size: int
    keep_intermediates: bool


@dataclass(frozen=True)
class ResolvedUpscale:
    """An UpscaleSpec resolved.

    Attributes:
        image_id: The input image ("" for GENERATE, whose input is the base image).
        settings: The resolved settings.
        tile_prompts: Own prompts by first-pass tile index, blank entries left out.
        regions: The regions, in spec order.
        redraw_tiles: First-pass tiles to re-draw, ascending: every tile when the spec selects none and
            has no regions, the selected ones when it selects some, none when it has only regions.
    """

    image_id: str
    settings: ResolvedSettings
    tile_prompts: dict[int, str]
    regions: tuple[ResolvedRegion, ...]
    redraw_tiles: tuple[int, ...]


@dataclass(frozen=True)
class ResolvedGenerate:
    """A GenerateSpec resolved: the base image's parameters and the enhancement of it.

    Attributes:
        prompt: Prompt of the base image.
        negative_prompt: Negative prompt of the base image.
        base_size: (width, height) of the base image.
        base_steps: Scheduler steps of the base image.
        base_cfg_scale: CFG of the base image.
        upscale: The enhancement, with the base image as its input (`image_id` "").
    """

    prompt: str
    negative_prompt: str
    base_size: tuple[int, int]
    base_steps: int
    base_cfg_scale: float
    upscale: ResolvedUpscale


# ---------------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------------


def validate_job_spec(
    spec: gateway_pb2.JobSpec, ctx: SpecContext, *, rng: Callable[[], int] | None = None
) -> gateway_pb2.JobSpec:
    """Check a submitted spec and return the copy to store; `spec` itself is left as it is.

    The copy has the job seed written in (UPSCALE and GENERATE in `settings.seed`, TRANSFORM in
    `seed`; drawn with `rng` when unset or -1) and, for UPSCALE and GENERATE, the batch size in
    `settings.batch_size`. REFERENCE keeps its seed as given (the provider picks one when unset).

    Args:
        spec: The spec as submitted.
        ctx: What the checks need to know beyond the spec.
        rng: Draws a random seed in 0..2**32-1. Default: `secrets.randbelow(2**32)`.

    Raises:
        InvalidArgument, NotFound, FailedPrecondition, ImageTooLarge, Unavailable: the first problem
            found (module docstring).
    """
    # 1. One kind, and the label.
    kind = spec.WhichOneof("spec")
    if kind is None:
        raise InvalidArgument("spec", "no job kind set: set one of upscale, generate, transform or reference")
    _check_text("label", spec.label, _MAX_LABEL)

    # 2. The kind's own checks, on the copy that receives the resolved values.
    stored = gateway_pb2.JobSpec()
    stored.CopyFrom(spec)
    draw = rng if rng is not None else _random_seed
    match kind:
        case "upscale" | "generate":
            settings = getattr(stored, kind).settings
            _write_seed(settings, f"{kind}.settings", draw)
            if kind == "upscale":
                resolved = resolve_upscale(stored.upscale, ctx)
            else:
                resolved = resolve_generate(stored.generate, ctx).upscale
            settings.batch_size = resolved.settings.batch_size
        case "transform":
            _write_seed(stored.transform, "transform", draw)
            _check_transform(stored.transform, ctx, "transform")
        case "reference":
            _check_reference(stored.reference, ctx, "reference")
    return stored


def job_kind(spec: gateway_pb2.JobSpec) -> int:
    """The `gateway_pb2.JobKind` of a spec; JOB_KIND_UNSPECIFIED when no kind is set."""
    kind = spec.WhichOneof("spec")
    return gateway_pb2.JOB_KIND_UNSPECIFIED if kind is None else _KINDS[kind]


def resolve_upscale(
    spec: gateway_pb2.UpscaleSpec, ctx: SpecContext, *, field: str = "upscale"
) -> ResolvedUpscale:
    """Check an UpscaleSpec and resolve it.

    Meant for a spec from `validate_job_spec` (its seed resolved): the same spec and context give the
    same values every time.

    Args:
        spec: The spec.
        ctx: What the checks need to know beyond the spec.
        field: The spec's path, prefixed to every error's field.

    Raises:
        InvalidArgument, NotFound, FailedPrecondition, ImageTooLarge, Unavailable: the first problem.
        ValueError: `settings.seed` is unset or -1 (not a spec `validate_job_spec` returned).
    """
    # 1. The input image and the settings.
    info = _image(ctx, f"{field}.image_id", spec.image_id)
    settings = _resolve_settings(spec.settings, ctx, f"{field}.settings", (info.width, info.height))
    tile_count = len(settings.grid.tiles)

    # 2. Tile prompts: blank entries count as none.
    tile_prompts: dict[int, str] = {}
    for index in sorted(spec.tile_prompts):
        text = spec.tile_prompts[index]
        if not text.strip():
            continue
        item = f"{field}.tile_prompts[{index}]"
        _check_tile_index(item, index, tile_count)
        _check_text(item, text, _MAX_PROMPT)
        tile_prompts[index] = text

    # 3. Regions, in input pixels.
    regions = _regions(spec.regions, settings, f"{field}.regions")

    # 4. Selected tiles, and which tiles the first pass re-draws.
    first_seen: dict[int, int] = {}
    for i, index in enumerate(spec.selected_tiles):
        item = f"{field}.selected_tiles[{i}]"
        _check_tile_index(item, index, tile_count)
        if index in first_seen:
            raise InvalidArgument(item, f"tile {index} is already selected_tiles[{first_seen[index]}]")
        first_seen[index] = i
    if spec.selected_tiles:
        redraw_tiles = tuple(sorted(first_seen))
    elif regions:
        redraw_tiles = ()
    else:
        redraw_tiles = tuple(range(tile_count))
    return ResolvedUpscale(
        image_id=spec.image_id,
        settings=settings,
        tile_prompts=tile_prompts,
        regions=regions,
        redraw_tiles=redraw_tiles,
    )


def resolve_generate(spec: gateway_pb2.GenerateSpec, ctx: SpecContext) -> ResolvedGenerate:
    """Check a GenerateSpec and resolve it (errors on `generate.*`).

    The enhancement's input is the base image; its prompt and negative prompt default to the spec's,
    its pre-upscaler to `ctx.default_upscaler`. Every tile is re-drawn. Like `resolve_upscale`, meant
    for a spec with its seed resolved.

    Raises:
        InvalidArgument, NotFound, FailedPrecondition, ImageTooLarge, Unavailable: the first problem.
        ValueError: `settings.seed` is unset or -1.
    """
    # 1. The base image.
    field = "generate"
    _check_text(f"{field}.prompt", spec.prompt, _MAX_PROMPT, required=True)
    _check_text(f"{field}.negative_prompt", spec.negative_prompt, _MAX_PROMPT)
    base_size = _grid_size(spec, "base_size", field, (1024, 1024))
    base_steps = _optional(spec, "base_steps", field, 1, 150, 30)
    base_cfg_scale = _optional(spec, "base_cfg_scale", field, 0.0, 30.0, 7.0)

    # 2. The enhancement of it.
    settings = _resolve_settings(
        spec.settings,
        ctx,
        f"{field}.settings",
        base_size,
        default_prompt=spec.prompt,
        default_negative_prompt=spec.negative_prompt,
        default_pre_upscaler=ctx.default_upscaler,
    )
    upscale = ResolvedUpscale(
        image_id="",
        settings=settings,
        tile_prompts={},
        regions=(),
        redraw_tiles=tuple(range(len(settings.grid.tiles))),
    )
    return ResolvedGenerate(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        base_size=base_size,
        base_steps=base_steps,
        base_cfg_scale=base_cfg_scale,
        upscale=upscale,
    )


def validate_settings(
    settings: gateway_pb2.UpscaleSettings, ctx: SpecContext, *, field: str = "preset.settings"
) -> None:
    """Check UpscaleSettings without an input image (SavePreset): ranges and enum values, the target's
    own values, LoRAs, that the IP-Adapter image exists, the upscaler name. Sizes, the pixel cap and
    tile indices wait for a job.

    Raises:
        InvalidArgument, NotFound, FailedPrecondition, Unavailable: the first problem.
    """
    _check_target(settings, field)
    _optional(settings, "supersampling", field, 1.0, 4.0, 1.0)
    _settings_values(
        settings, ctx, field, default_prompt="", default_negative_prompt="", default_pre_upscaler=""
    )


def geometry(
    settings: gateway_pb2.UpscaleSettings,
    input_size: tuple[int, int],
    *,
    field: str = "upscale.settings",
    max_pixels: int | None = None,
) -> Geometry:
    """The sizes of an upscale of an image of `input_size` with these settings (module docstring).

    Only `target` and `supersampling` matter here.

    Args:
        settings: The settings.
        input_size: (width, height) of the input, each >= 1.
        field: The settings' path, prefixed to every error's field.
        max_pixels: The most pixels the working image may have; None checks only the side limit.
            Callers that plan work pass `SpecContext.max_pixels`.

    Raises:
        InvalidArgument: a target or supersampling value out of range.
        ImageTooLarge: the working image is over `max_pixels`, or over 65535 px on a side; the message
            names `<field>.supersampling` when supersampling is above 1, else `<field>.target`.
    """
    # 1. Check inputs.
    _check_target(settings, field)
    supersampling = Fraction(_optional(settings, "supersampling", field, 1.0, 4.0, 1.0))

    # 2. The output size, and what the input is scaled to on the way.
    target = settings.target
    scaled: tuple[int, int] | None = None
    match target.WhichOneof("target"):
        case None:
            output = _scale(input_size, Fraction(2))
        case "scale":
            output = _scale(input_size, Fraction(target.scale))
        case "preset":
            output = _scale(input_size, Fraction(_PRESET_SIDES[target.preset], max(input_size)))
        case "size":
            size = (target.size.width, target.size.height)
            ratios = (Fraction(size[0], input_size[0]), Fraction(size[1], input_size[1]))
            if target.fit == gateway_pb2.TARGET_FIT_COVER:
                output = size
                scaled = _scale(input_size, max(ratios) * supersampling)
            elif target.fit == gateway_pb2.TARGET_FIT_CONTAIN:
                output = _scale(input_size, min(ratios))
            else:
                output = size
    working = _scale(output, supersampling)
    scaled = scaled or working
    crop = ((scaled[0] - working[0]) // 2, (scaled[1] - working[1]) // 2)

    # 3. The working image within the caps.
    blame = f"{field}.supersampling" if supersampling > 1 else f"{field}.target"
    width, height = working
    if max(working) > _MAX_SIDE:
        raise ImageTooLarge(
            f"{blame}: the working image would be {width}x{height} (output {output[0]}x{output[1]} x "
            f"supersampling {float(supersampling):g}); each side may be at most {_MAX_SIDE} pixels"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{blame}: the working image would be {width}x{height} = {width * height} pixels (output "
            f"{output[0]}x{output[1]} x supersampling {float(supersampling):g}); the cap is {max_pixels} pixels"
        )
    return Geometry(
        input_size=tuple(input_size), scaled_size=scaled, crop=crop, working_size=working, output_size=output
    )


def plan_grids(
    settings: gateway_pb2.UpscaleSettings, geo: Geometry, *, field: str = "upscale.settings"
) -> tuple[Grid, Grid | None]:
    """The first-pass grid over `geo`'s working image and the seam-fix grid (None when seam fix
    is off or the first grid has one tile), as a job with these settings uses them.

    Only `tile_size`, `overlap` and `seam_fix.enabled` matter here.

    Raises:
        InvalidArgument: tile size or overlap out of range.
    """
    tile_size, overlap = _tiling(settings, field)
    return _grids(geo.working_size, tile_size, overlap, settings.seam_fix.enabled)


def tile_prompt(global_prompt: str, own: str) -> str:
    """A tile's or region's prompt: "<global>, <own>", or either alone when the other is empty.

    Both are stripped. The global prompt never appears twice: an own prompt equal to it, or already
    starting with it, is used alone.
    """
    head, tail = global_prompt.strip(), own.strip()
    if not head or tail.startswith(head):
        return tail
    if not tail:
        return head
    return f"{head}, {tail}"


def derive_seed(job_seed: int, pass_name: str, index: int) -> int:
    """The seed of one tile or region: deterministic, in 0..2**63-1, different per pass and index.

    Args:
        job_seed: The job seed, 0..2**63-1.
        pass_name: The pass, e.g. "redraw", "region", "seam_fix".
        index: The tile's index in its pass's grid (or the region's index), >= 0.
    """
    digest = hashlib.blake2b(
        struct.pack("<QQ", job_seed, index) + pass_name.encode(), digest_size=8, person=b"tilesmith-seed"
    ).digest()
    return int.from_bytes(digest, "little") >> 1


# ---------------------------------------------------------------------------------------------------
# Scalars, text, enums, images
# ---------------------------------------------------------------------------------------------------


def _show(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_range(
    field: str, value: float, low: float, high: float, *, low_open: bool = False, note: str = ""
) -> None:
    """Refuse `value` outside low..high (or low < value <= high); NaN fails either way."""
    if low < value <= high if low_open else low <= value <= high:
        return
    allowed = f"> {_show(low)} and <= {_show(high)}" if low_open else f"in {_show(low)}..{_show(high)}"
    raise InvalidArgument(field, f"must be {allowed}{note}, got {_show(value)}")


def _optional(
    message: Message,
    name: str,
    field: str,
    low: float,
    high: float,
    default: Any,
    *,
    low_open: bool = False,
    note: str = "",
) -> Any:
    """An optional scalar field (`<field>.<name>`): checked against its range when set, else `default`."""
    if not message.HasField(name):
        return default
    value = getattr(message, name)
    _check_range(f"{field}.{name}", value, low, high, low_open=low_open, note=note)
    return value


def _check_text(field: str, value: str, limit: int, *, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidArgument(field, f"is required: 1..{limit} characters, not blank")
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")


def _check_enum(field: str, value: int, enum: EnumTypeWrapper) -> None:
    if value not in enum.values():
        raise InvalidArgument(
            field, f"{value} is not a {enum.DESCRIPTOR.name} value; allowed: {', '.join(enum.keys())}"
        )


def _grid_size(message: Message, name: str, field: str, default: tuple[int, int]) -> tuple[int, int]:
    """A Size field whose sides are multiples of 8 in 64..4096 (tile and base sizes)."""
    if not message.HasField(name):
        return default
    size = getattr(message, name)
    for axis in ("width", "height"):
        value = getattr(size, axis)
        if not (64 <= value <= 4096 and value % 8 == 0):
            raise InvalidArgument(
                f"{field}.{name}.{axis}", f"must be a multiple of 8 in 64..4096, got {value}"
            )
    return size.width, size.height


def _image(ctx: SpecContext, field: str, image_id: str) -> ImageInfo:
    if not image_id:
        raise InvalidArgument(field, "is required: the id of an uploaded image (UploadImage)")
    try:
        return ctx.image_info(image_id)
    except NotFound as exc:
        raise NotFound(f"{field}: image {image_id!r} not found") from exc


def _seed(message: Message, field: str) -> int | None:
    """A job seed field (`<field>.seed`): -1 or 0..2**63-1; None when unset or -1 (random)."""
    if not message.HasField("seed") or message.seed == -1:
        return None
    if message.seed < 0:
        raise InvalidArgument(
            f"{field}.seed", f"must be -1 (random) or in 0..{_MAX_SEED}, got {message.seed}"
        )
    return message.seed


def _write_seed(message: Message, field: str, draw: Callable[[], int]) -> None:
    if _seed(message, field) is None:
        message.seed = draw()


def _random_seed() -> int:
    return secrets.randbelow(_RANDOM_SEEDS)


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------


def _check_target(settings: gateway_pb2.UpscaleSettings, field: str) -> None:
    """The target's own values: one kind in range, a defined preset, `fit` only with a size."""
    target, prefix = settings.target, f"{field}.target"
    kind = target.WhichOneof("target")
    _check_enum(f"{prefix}.fit", target.fit, gateway_pb2.TargetFit)
    if target.fit != gateway_pb2.TARGET_FIT_UNSPECIFIED and kind != "size":
        raise InvalidArgument(
            f"{prefix}.fit",
            f"applies only with target.size, got {gateway_pb2.TargetFit.Name(target.fit)} with "
            f"{f'target.{kind}' if kind else 'the default scale'}",
        )
    match kind:
        case "scale":
            _check_range(f"{prefix}.scale", target.scale, 1.0, 16.0)
        case "size":
            _check_range(f"{prefix}.size.width", target.size.width, 1, _MAX_SIDE)
            _check_range(f"{prefix}.size.height", target.size.height, 1, _MAX_SIDE)
        case "preset":
            _check_enum(f"{prefix}.preset", target.preset, gateway_pb2.ResolutionPreset)
            if target.preset not in _PRESET_SIDES:
                raise InvalidArgument(
                    f"{prefix}.preset", "RESOLUTION_PRESET_UNSPECIFIED is not a preset; use 2K, 4K or 8K"
                )


def _scale(size: Sequence[int], factor: Fraction) -> tuple[int, int]:
    """Each side times `factor`, rounded, at least 1."""
    width, height = size
    return max(1, round(width * factor)), max(1, round(height * factor))


def _map_span(start: int, length: int, num: int, den: int, shift: int, limit: int) -> tuple[int, int]:
    """`[start, start + length)` scaled by num/den (start floored, end ceiled), shifted, clipped to
    `[0, limit]`."""
    low = start * num // den + shift
    high = -(-(start + length) * num // den) + shift
    return min(max(low, 0), limit), min(max(high, 0), limit)


def _at_least_one(low: int, high: int, limit: int) -> tuple[int, int]:
    """A clipped span `[low, high)` within `[0, limit)` widened to at least one pixel."""
    low = min(low, limit - 1)
    return low, max(high, low + 1)


# ---------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------


def _tiling(settings: gateway_pb2.UpscaleSettings, field: str) -> tuple[tuple[int, int], int]:
    """Tile size and overlap; the overlap defaults to 128, or half the smaller tile side when less."""
    tile_size = _grid_size(settings, "tile_size", field, (1024, 1024))
    limit = min(tile_size) // 2
    overlap = _optional(
        settings, "overlap", field, 0, limit, min(128, limit), note=" (half the smaller tile side)"
    )
    return tile_size, overlap


def _grids(
    working_size: tuple[int, int], tile_size: tuple[int, int], overlap: int, seam_fix: bool
) -> tuple[Grid, Grid | None]:
    # The requested tile size goes to plan_grid, which shrinks tiles only along a smaller image side;
    # the tiling service plans from the same values, so both sides of the pipeline agree on the grid.
    grid = plan_grid(*working_size, *tile_size, overlap)
    if not seam_fix or len(grid.tiles) == 1:
        return grid, None
    return grid, plan_grid(*working_size, *tile_size, overlap, offset=True)


def _resolve_settings(
    settings: gateway_pb2.UpscaleSettings,
    ctx: SpecContext,
    field: str,
    input_size: tuple[int, int],
    *,
    default_prompt: str = "",
    default_negative_prompt: str = "",
    default_pre_upscaler: str = _LANCZOS,
) -> ResolvedSettings:
    # 1. Sizes.
    geo = geometry(settings, input_size, field=field, max_pixels=ctx.max_pixels)
    # 2. Everything else, then the grids.
    values = _settings_values(
        settings,
        ctx,
        field,
        default_prompt=default_prompt,
        default_negative_prompt=default_negative_prompt,
        default_pre_upscaler=default_pre_upscaler,
    )
    if values["seed"] is None:
        raise ValueError(
            f"{field}.seed is unset or -1: resolve the spec validate_job_spec returned, which has its seed"
        )
    grid, seam_grid = _grids(geo.working_size, values["tile_size"], values["overlap"], values["seam_fix"])
    return ResolvedSettings(geometry=geo, grid=grid, seam_grid=seam_grid, **values)


def _settings_values(
    settings: gateway_pb2.UpscaleSettings,
    ctx: SpecContext,
    field: str,
    *,
    default_prompt: str,
    default_negative_prompt: str,
    default_pre_upscaler: str,
) -> dict[str, Any]:
    """Every ResolvedSettings value but the geometry and grids, by field name (`seed` None: random)."""
    # 1. Tiles.
    tile_size, overlap = _tiling(settings, field)
    _check_enum(f"{field}.feather", settings.feather, tiling_pb2.FeatherMode)

    # 2. Sampling.
    _check_text(f"{field}.prompt", settings.prompt, _MAX_PROMPT)
    _check_text(f"{field}.negative_prompt", settings.negative_prompt, _MAX_PROMPT)
    strength = _optional(settings, "strength", field, 0.0, 1.0, 0.35, low_open=True)
    steps = _optional(settings, "steps", field, 1, 150, 30)
    cfg_scale = _optional(settings, "cfg_scale", field, 0.0, 30.0, 7.0)
    seed = _seed(settings, field)
    scheduler = _scheduler(settings.scheduler, f"{field}.scheduler")
    controlnet = _controlnet(settings.controlnet, f"{field}.controlnet")

    # 3. Style image and LoRAs.
    ip_field = f"{field}.ip_adapter"
    ip_adapter_image_id = settings.ip_adapter.image_id or None
    if ip_adapter_image_id is not None:
        _image(ctx, f"{ip_field}.image_id", ip_adapter_image_id)
    ip_adapter_scale = _optional(settings.ip_adapter, "scale", ip_field, 0.0, 2.0, 0.6)
    loras = _loras(settings.loras, ctx, f"{field}.loras")

    # 4. Seam fix, colour fix, captions.
    seam, seam_field = settings.seam_fix, f"{field}.seam_fix"
    seam_strength = _optional(seam, "strength", seam_field, 0.0, 1.0, strength / 2, low_open=True)
    seam_band_width = _optional(
        seam, "band_width", seam_field, 2, min(tile_size), max(2, overlap), note=" (the smaller tile side)"
    )
    _check_enum(f"{field}.color_fix", settings.color_fix, gateway_pb2.ColorFixMode)
    caption, caption_field = settings.caption, f"{field}.caption"
    _check_text(f"{caption_field}.instruction", caption.instruction, _MAX_CAPTION_TEXT)
    _check_text(f"{caption_field}.system_prompt", caption.system_prompt, _MAX_CAPTION_TEXT)
    caption_max_new_tokens = _optional(caption, "max_new_tokens", caption_field, 1, 512, 96)

    # 5. Pre-upscaler, generation size, batches.
    pre_upscaler = settings.pre_upscaler or default_pre_upscaler
    if pre_upscaler and pre_upscaler != _LANCZOS and pre_upscaler not in ctx.upscalers:
        known = ", ".join([_LANCZOS, *sorted(ctx.upscalers)])
        raise NotFound(f"{field}.pre_upscaler: no upscaler named {pre_upscaler!r}; known: {known}")
    generation_size = _optional(settings, "generation_size", field, 64, 4096, None)
    batch_size = _optional(
        settings, "batch_size", field, 1, ctx.max_batch_size, min(ctx.default_batch_size, ctx.max_batch_size)
    )
    return {
        "tile_size": tile_size,
        "overlap": overlap,
        "feather": _FEATHERS[settings.feather],
        "prompt": settings.prompt or default_prompt,
        "negative_prompt": settings.negative_prompt or default_negative_prompt,
        "strength": strength,
        "steps": steps,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "scheduler": scheduler,
        "controlnet": controlnet,
        "ip_adapter_image_id": ip_adapter_image_id,
        "ip_adapter_scale": ip_adapter_scale,
        "loras": loras,
        "seam_fix": seam.enabled,
        "seam_strength": seam_strength,
        "seam_band_width": seam_band_width,
        "color_fix": settings.color_fix or gateway_pb2.COLOR_FIX_MODE_NONE,
        "auto_caption": caption.auto_caption,
        "caption_instruction": caption.instruction,
        "caption_system_prompt": caption.system_prompt,
        "caption_use_context": caption.use_context if caption.HasField("use_context") else True,
        "caption_max_new_tokens": caption_max_new_tokens,
        "pre_upscaler": pre_upscaler,
        "generation_size": generation_size,
        "batch_size": batch_size,
        "keep_intermediates": settings.keep_intermediates,
    }


def _scheduler(value: int, field: str) -> int:
    _check_enum(field, value, diffusion_pb2.Scheduler)
    return value or diffusion_pb2.SCHEDULER_DPMPP_2M_SDE_KARRAS


def _controlnet(message: diffusion_pb2.ControlNetSettings, field: str) -> diffusion_pb2.ControlNetSettings:
    start = _optional(message, "guidance_start", field, 0.0, 1.0, 0.0)
    end = _optional(message, "guidance_end", field, 0.0, 1.0, 1.0)
    if not start < end:
        # Name the bound the caller set; both or neither set: the start.
        only_end = message.HasField("guidance_end") and not message.HasField("guidance_start")
        blame = "guidance_end" if only_end else "guidance_start"
        raise InvalidArgument(
            f"{field}.{blame}", f"guidance_start must be below guidance_end, got {start:g} and {end:g}"
        )
    return diffusion_pb2.ControlNetSettings(
        enabled=message.enabled if message.HasField("enabled") else True,
        scale=_optional(message, "scale", field, 0.0, 2.0, 0.7),
        guidance_start=start,
        guidance_end=end,
    )


def _loras(refs: Sequence[common_pb2.LoraRef], ctx: SpecContext, field: str) -> tuple[tuple[str, float], ...]:
    """A LoRA stack checked against the library and its stacking rules (diffusion.proto)."""
    if not refs:
        return ()
    if ctx.loras is None:
        raise Unavailable(f"{field}: the diffusion service is needed to check LoRAs")
    rules = ctx.loras.rules
    library = {info.name: info for info in ctx.loras.loras}

    # 1. The count.
    if len(refs) > rules.max_loras:
        raise InvalidArgument(
            field, f"{len(refs)} LoRAs; the stacking rules allow at most {rules.max_loras} (max_loras)"
        )

    # 2. Each entry: a known, compatible LoRA, once, within its library weight range.
    first_seen: dict[str, int] = {}
    for i, ref in enumerate(refs):
        item = f"{field}[{i}]"
        if not ref.name:
            raise InvalidArgument(f"{item}.name", "is required: a LoRA name from ListLoras")
        if ref.name in first_seen:
            raise InvalidArgument(
                f"{item}.name",
                f"{ref.name!r} is already {field}[{first_seen[ref.name]}]; a LoRA may appear once",
            )
        first_seen[ref.name] = i
        info = library.get(ref.name)
        if info is None:
            raise NotFound(f"{item}.name: no LoRA named {ref.name!r} in the library")
        if not info.compatible:
            arch = common_pb2.BaseArchitecture.Name(info.base_architecture).removeprefix("BASE_ARCHITECTURE_")
            raise FailedPrecondition(
                f"{item}.name: LoRA {ref.name!r} is for {arch}, not the loaded checkpoint's architecture"
            )
        metadata = info.metadata
        low = metadata.min_weight if metadata.HasField("min_weight") else _DEFAULT_LORA_WEIGHTS[0]
        high = metadata.max_weight if metadata.HasField("max_weight") else _DEFAULT_LORA_WEIGHTS[1]
        if not low - _WEIGHT_TOLERANCE <= ref.weight <= high + _WEIGHT_TOLERANCE:
            raise InvalidArgument(
                f"{item}.weight",
                f"must be in {low:g}..{high:g} ({ref.name!r}'s library range), got {ref.weight:g}",
            )

    # 3. Per-type limits, then the weight sum.
    for limit in rules.type_limits:
        names = [ref.name for ref in refs if library[ref.name].metadata.type == limit.type]
        if len(names) > limit.max_count:
            type_name = diffusion_pb2.LoraType.Name(limit.type).removeprefix("LORA_TYPE_").lower()
            raise InvalidArgument(
                field,
                f"{len(names)} {type_name} LoRA{'' if len(names) == 1 else 's'} ({', '.join(names)}); "
                f"the stacking rules allow at most {limit.max_count} (max_count of type {type_name})",
            )
    total = math.fsum(abs(ref.weight) for ref in refs)
    if total > rules.max_weight_sum + _WEIGHT_TOLERANCE:
        raise InvalidArgument(
            field,
            f"the sum of |weight| is {total:g}; the stacking rules allow at most {rules.max_weight_sum:g} "
            "(max_weight_sum)",
        )
    return tuple((ref.name, ref.weight) for ref in refs)


# ---------------------------------------------------------------------------------------------------
# UpscaleSpec parts
# ---------------------------------------------------------------------------------------------------


def _check_tile_index(field: str, index: int, tile_count: int) -> None:
    if index >= tile_count:
        raise InvalidArgument(field, f"tile {index} is not in the plan: its tiles are 0..{tile_count - 1}")


def _regions(
    messages: Sequence[gateway_pb2.UpscaleRegion], settings: ResolvedSettings, field: str
) -> tuple[ResolvedRegion, ...]:
    if len(messages) > _MAX_REGIONS:
        raise InvalidArgument(field, f"must hold at most {_MAX_REGIONS} regions, got {len(messages)}")
    geo = settings.geometry
    width, height = geo.input_size
    regions = []
    for i, region in enumerate(messages):
        item = f"{field}[{i}]"
        rect = region.rect
        shown = f"x={rect.x} y={rect.y} {rect.width}x{rect.height}"
        if rect.width < 1 or rect.height < 1:
            raise InvalidArgument(f"{item}.rect", f"must be non-empty, got {shown}")
        if rect.x + rect.width > width or rect.y + rect.height > height:
            raise InvalidArgument(
                f"{item}.rect", f"must lie inside the {width}x{height} input image, got {shown}"
            )
        _, _, working_w, working_h = geo.input_rect_to_working(rect.x, rect.y, rect.width, rect.height)
        if working_w == 0 or working_h == 0:
            raise InvalidArgument(
                f"{item}.rect", f"lies in the part of the input that target fit COVER crops away, got {shown}"
            )
        _check_text(f"{item}.prompt", region.prompt, _MAX_PROMPT)
        padding = _optional(region, "padding", item, 0, 1024, 32)
        feather = _optional(region, "feather", item, 0, padding, min(16, padding), note=" (the padding)")
        strength = _optional(region, "strength", item, 0.0, 1.0, settings.strength, low_open=True)
        regions.append(
            ResolvedRegion(
                index=i,
                rect=(rect.x, rect.y, rect.width, rect.height),
                prompt=region.prompt,
                padding=padding,
                feather=feather,
                strength=strength,
            )
        )
    return tuple(regions)


# ---------------------------------------------------------------------------------------------------
# TRANSFORM and REFERENCE
# ---------------------------------------------------------------------------------------------------


def _check_transform(spec: gateway_pb2.TransformSpec, ctx: SpecContext, field: str) -> None:
    # 1. The input and the mode.
    _image(ctx, f"{field}.image_id", spec.image_id)
    _check_enum(f"{field}.mode", spec.mode, gateway_pb2.TransformMode)
    _optional(spec, "reference_strength", field, 0.0, 1.0, 0.5)
    _check_text(f"{field}.prompt", spec.prompt, _MAX_PROMPT)
    _check_text(f"{field}.negative_prompt", spec.negative_prompt, _MAX_PROMPT)

    # 2. COPY fixes the sampling; MODIFY checks it.
    if spec.mode == gateway_pb2.TRANSFORM_MODE_COPY:
        fixed = [name for name in ("steps", "cfg_scale", "enhance_prompt") if spec.HasField(name)]
        if spec.negative_prompt:
            fixed.insert(0, "negative_prompt")
        if fixed:
            raise InvalidArgument(
                f"{field}.{fixed[0]}",
                "is fixed in COPY mode (empty negative prompt, CFG 1.0, 15 steps, no prompt enhancement): "
                "leave it unset or use MODIFY",
            )
    _optional(spec, "steps", field, 1, 150, 25)
    _optional(spec, "cfg_scale", field, 0.0, 30.0, 7.5)
    _seed(spec, field)
    _scheduler(spec.scheduler, f"{field}.scheduler")

    # 3. LoRAs (internal provider only) and the chain.
    _loras(spec.loras, ctx, f"{field}.loras")
    _check_chain(spec.provider_chain, ctx, f"{field}.provider_chain", internal=True)
    if spec.loras and spec.provider_chain and _INTERNAL not in spec.provider_chain:
        raise InvalidArgument(
            f"{field}.loras",
            f'LoRAs run only on the "internal" provider, and provider_chain has none: {list(spec.provider_chain)}',
        )


def _check_reference(spec: gateway_pb2.ReferenceSpec, ctx: SpecContext, field: str) -> None:
    # 1. The reference, the prompt and its attributes.
    _image(ctx, f"{field}.reference_image_id", spec.reference_image_id)
    _check_text(f"{field}.prompt", spec.prompt, _MAX_REFERENCE_PROMPT, required=True)
    attributes, attributes_field = spec.attributes, f"{field}.attributes"
    for name in ("hair_color", "hair_style", "eye_color", "skin_tone", "body_type", "age"):
        _check_text(f"{attributes_field}.{name}", getattr(attributes, name), _MAX_WORD)
    if len(attributes.extra) > _MAX_ATTRIBUTE_EXTRAS:
        raise InvalidArgument(
            f"{attributes_field}.extra",
            f"must hold at most {_MAX_ATTRIBUTE_EXTRAS} entries, got {len(attributes.extra)}",
        )
    for key in sorted(attributes.extra):
        _check_text(f"{attributes_field}.extra[{key!r}]", key, _MAX_ATTRIBUTE_KEY, required=True)
        _check_text(f"{attributes_field}.extra[{key!r}]", attributes.extra[key], _MAX_WORD)

    # 2. Remote LoRAs.
    if len(spec.loras) > _MAX_REMOTE_LORAS:
        raise InvalidArgument(
            f"{field}.loras", f"must hold at most {_MAX_REMOTE_LORAS} LoRAs, got {len(spec.loras)}"
        )
    for i, lora in enumerate(spec.loras):
        item = f"{field}.loras[{i}]"
        if not lora.url.startswith("https://"):
            raise InvalidArgument(
                f"{item}.url", f"must be an https URL the provider can fetch, got {lora.url!r}"
            )
        _optional(lora, "weight", item, 0.0, 4.0, 1.0)
        if len(lora.trigger_words) > _MAX_TRIGGER_WORDS:
            raise InvalidArgument(
                f"{item}.trigger_words",
                f"must hold at most {_MAX_TRIGGER_WORDS} words, got {len(lora.trigger_words)}",
            )
        for j, word in enumerate(lora.trigger_words):
            _check_text(f"{item}.trigger_words[{j}]", word, _MAX_WORD)

    # 3. Mode, size and sampling.
    _check_enum(f"{field}.mode", spec.mode, bridge_pb2.HostedGenerationMode)
    if spec.mode == bridge_pb2.HOSTED_GENERATION_MODE_TEXT_TO_IMAGE:
        raise InvalidArgument(
            f"{field}.mode", "TEXT_TO_IMAGE takes no reference image: use DEPTH or EDIT (or a GENERATE job)"
        )
    if spec.HasField("size"):
        _check_range(f"{field}.size.width", spec.size.width, 256, 4096)
        _check_range(f"{field}.size.height", spec.size.height, 256, 4096)
    _optional(spec, "steps", field, 1, 50, None)
    _optional(spec, "guidance_scale", field, 0.0, 20.0, None)

    # 4. The chain: hosted providers only.
    _check_chain(spec.provider_chain, ctx, f"{field}.provider_chain", internal=False)


def _check_chain(names: Sequence[str], ctx: SpecContext, field: str, *, internal: bool) -> None:
    """Provider names: known (hosted, or "internal" where `internal`), each once."""
    known = sorted(ctx.hosted_providers) + ([_INTERNAL] if internal else [])
    for i, name in enumerate(names):
        item = f"{field}[{i}]"
        if name == _INTERNAL and not internal:
            raise InvalidArgument(item, '"internal" has no depth or edit model: name hosted providers only')
        if name != _INTERNAL and name not in ctx.hosted_providers:
            raise InvalidArgument(
                item, f"unknown provider {name!r}; known: {', '.join(known) or 'none (no bridge configured)'}"
            )
        if name in names[:i]:
            raise InvalidArgument(item, f"provider {name!r} appears twice")
