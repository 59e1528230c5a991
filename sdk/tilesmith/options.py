"""Typed job options: dataclasses that mirror gateway.proto's specs and build them.

Every option defaults to "unset" (``None``, an empty string or an empty collection), and an unset
option leaves its proto field unset, so the gateway applies the default documented in gateway.proto
(quoted in each docstring). Values are range-checked by the gateway at SubmitJob, not here: the
client only checks what it has to translate (enum names, target shapes).

Images inside options (`UpscaleOptions.ip_adapter_image`, the jobs' inputs) are uploaded image ids
by the time a spec is built; `tilesmith.client` uploads pixels and files first.

    UpscaleOptions   -> UpscaleSettings (`to_settings`) / UpscaleSpec (`to_spec`); back: `from_settings`
    Region           -> UpscaleRegion
    GenerateOptions  -> GenerateSpec
    TransformOptions -> TransformSpec
    ReferenceOptions -> ReferenceSpec
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from tilesmith.errors import InvalidArgument
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, tiling_pb2

__all__ = ["GenerateOptions", "ReferenceOptions", "Region", "TransformOptions", "UpscaleOptions"]

_PRESETS = {
    "2K": gateway_pb2.RESOLUTION_PRESET_2K,
    "4K": gateway_pb2.RESOLUTION_PRESET_4K,
    "8K": gateway_pb2.RESOLUTION_PRESET_8K,
}


@dataclass(frozen=True)
class Region:
    """A rectangle re-drawn with its own prompt (UpscaleRegion).

    Args:
        rect: ``(x, y, width, height)`` in input-image pixels.
        prompt: Put after the global prompt. Default (empty): the global prompt alone.
        padding: Context around the rect, input pixels. Default (None): 32.
        feather: Soft edge outside the rect, input pixels. Default (None): min(16, padding).
        strength: Default (None): the job's strength.
    """

    rect: tuple[int, int, int, int]
    prompt: str = ""
    padding: int | None = None
    feather: int | None = None
    strength: float | None = None

    def to_proto(self) -> gateway_pb2.UpscaleRegion:
        x, y, width, height = self.rect
        return gateway_pb2.UpscaleRegion(
            rect=common_pb2.Rect(x=x, y=y, width=width, height=height),
            prompt=self.prompt,
            padding=self.padding,
            feather=self.feather,
            strength=self.strength,
        )


@dataclass(frozen=True)
class UpscaleOptions:
    """Options of an UPSCALE job (and the enhancement of a GENERATE job).

    Args:
        target: A scale factor (``2.0``), an exact ``(width, height)``, or a preset ``"2K"``,
            ``"4K"``, ``"8K"`` (longer side, aspect kept). Default (None): scale 2.0.
        fit: With an exact size: ``"stretch"``, ``"cover"`` or ``"contain"``. Default: stretch.
        supersampling: Working size = target x this; 1.0..4.0. Default (None): 1.0.
        tile_size: Tile side, or ``(width, height)``, in working pixels. Default (None): 1024.
        overlap: Tile overlap in working pixels. Default (None): 128.
        feather: ``"linear"`` or ``"cosine"`` weighting in overlaps. Default: cosine.
        prompt: Global prompt, before every tile's own. Default: none.
        negative_prompt: Default: none.
        tile_prompts: Prompt per first-pass tile index (UpscaleSpec only).
        regions: Rectangles re-drawn with their own prompts (UpscaleSpec only).
        selected_tiles: Only these first-pass tiles are re-drawn (UpscaleSpec only). Default: all.
        strength: How far each tile is re-drawn; 0 < s <= 1. Default (None): 0.35.
        steps: Scheduler steps; 1..150. Default (None): 30.
        cfg: Guidance scale; 0..30. Default (None): 7.0.
        seed: -1 or 0..2**63-1. Default (None): random, reported in Job.seed.
        scheduler: A `Scheduler` name without prefix, e.g. ``"euler"``. Default: DPM++ 2M SDE Karras.
        controlnet: ControlNet-tile on or off. Default (None): on.
        controlnet_scale: 0..2. Default (None): 0.7.
        ip_adapter_image: Style image: an uploaded image id (the client uploads pixels or a file
            given here first). Default (None): no IP-Adapter.
        ip_adapter_scale: 0..2. Default (None): 0.6.
        loras: ``[(name, weight), ...]`` from the LoRA library. Default: none.
        seam_fix: Run the seam-fix pass. Default: off.
        seam_fix_strength: Default (None): half of `strength`.
        seam_fix_band: Band width in working pixels. Default (None): the overlap.
        color_fix: ``"none"``, ``"wavelet"`` or ``"adain"``. Default: none.
        auto_caption: Caption tiles without a tile prompt. Default: off.
        caption_instruction: Instruction for the captioning model. Default: the service's.
        preupscaler: ``"lanczos"`` or an upscaler from ListModels. Default: lanczos (GENERATE: the
            profile's upscaler).
        generation_size: Longer side each tile is diffused at. Default (None): the tile's size.
        batch_size: Tiles per diffusion call. Default (None): the gateway's setting.
        keep_intermediates: Keep intermediate images for `result(name)`. Default: off.
    """

    target: float | tuple[int, int] | str | None = None
    fit: str | None = None
    supersampling: float | None = None
    tile_size: int | tuple[int, int] | None = None
    overlap: int | None = None
    feather: str | None = None
    prompt: str = ""
    negative_prompt: str = ""
    tile_prompts: Mapping[int, str] = field(default_factory=dict)
    regions: Sequence[Region] = ()
    selected_tiles: Sequence[int] = ()
    strength: float | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    scheduler: str | None = None
    controlnet: bool | None = None
    controlnet_scale: float | None = None
    ip_adapter_image: object = None
    ip_adapter_scale: float | None = None
    loras: Sequence[tuple[str, float]] = ()
    seam_fix: bool = False
    seam_fix_strength: float | None = None
    seam_fix_band: int | None = None
    color_fix: str | None = None
    auto_caption: bool = False
    caption_instruction: str = ""
    preupscaler: str = ""
    generation_size: int | None = None
    batch_size: int | None = None
    keep_intermediates: bool = False

    def to_settings(self) -> gateway_pb2.UpscaleSettings:
        """The UpscaleSettings these options stand for; unset options stay unset."""
        if self.ip_adapter_image is not None and not isinstance(self.ip_adapter_image, str):
            raise InvalidArgument(
                "ip_adapter_image", "must be an uploaded image id here; the client uploads pixels first"
            )
        settings = gateway_pb2.UpscaleSettings(
            supersampling=self.supersampling,
            overlap=self.overlap,
            feather=_enum(tiling_pb2.FeatherMode, "FEATHER_MODE_", self.feather, "feather"),
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            strength=self.strength,
            steps=self.steps,
            cfg_scale=self.cfg,
            seed=self.seed,
            scheduler=_enum(diffusion_pb2.Scheduler, "SCHEDULER_", self.scheduler, "scheduler"),
            loras=[common_pb2.LoraRef(name=name, weight=weight) for name, weight in self.loras],
            color_fix=_enum(gateway_pb2.ColorFixMode, "COLOR_FIX_MODE_", self.color_fix, "color_fix"),
            pre_upscaler=self.preupscaler,
            generation_size=self.generation_size,
            batch_size=self.batch_size,
            keep_intermediates=self.keep_intermediates,
        )
        if self.target is not None or self.fit is not None:
            settings.target.CopyFrom(self._target())
        if self.tile_size is not None:
            width, height = _pair(self.tile_size)
            settings.tile_size.CopyFrom(common_pb2.Size(width=width, height=height))
        if self.controlnet is not None or self.controlnet_scale is not None:
            settings.controlnet.CopyFrom(
                diffusion_pb2.ControlNetSettings(enabled=self.controlnet, scale=self.controlnet_scale)
            )
        if self.ip_adapter_image is not None:
            settings.ip_adapter.CopyFrom(
                gateway_pb2.IpAdapterSettings(image_id=self.ip_adapter_image, scale=self.ip_adapter_scale)
            )
        if self.seam_fix or self.seam_fix_strength is not None or self.seam_fix_band is not None:
            settings.seam_fix.CopyFrom(
                gateway_pb2.SeamFixSettings(
                    enabled=self.seam_fix, strength=self.seam_fix_strength, band_width=self.seam_fix_band
                )
            )
        if self.auto_caption or self.caption_instruction:
            settings.caption.CopyFrom(
                gateway_pb2.CaptionSettings(
                    auto_caption=self.auto_caption, instruction=self.caption_instruction
                )
            )
        return settings

    @classmethod
    def from_settings(cls, settings: gateway_pb2.UpscaleSettings) -> UpscaleOptions:
        """The options a stored UpscaleSettings stands for (a preset's, a job's): `to_settings` reversed,
        so ``replace(UpscaleOptions.from_settings(preset.settings), strength=0.5)`` tweaks a preset.

        Fields these options do not carry are dropped: ControlNet guidance start and end, and the
        caption system prompt, context switch and token limit.
        """
        target: float | tuple[int, int] | str | None = None
        match settings.target.WhichOneof("target"):
            case "scale":
                target = settings.target.scale
            case "size":
                target = (settings.target.size.width, settings.target.size.height)
            case "preset":
                target = gateway_pb2.ResolutionPreset.Name(settings.target.preset).removeprefix(
                    "RESOLUTION_PRESET_"
                )
        tile_size = settings.tile_size
        return cls(
            target=target,
            fit=_enum_name(gateway_pb2.TargetFit, "TARGET_FIT_", settings.target.fit),
            supersampling=_set_or_none(settings, "supersampling"),
            tile_size=(tile_size.width, tile_size.height) if settings.HasField("tile_size") else None,
            overlap=_set_or_none(settings, "overlap"),
            feather=_enum_name(tiling_pb2.FeatherMode, "FEATHER_MODE_", settings.feather),
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt,
            strength=_set_or_none(settings, "strength"),
            steps=_set_or_none(settings, "steps"),
            cfg=_set_or_none(settings, "cfg_scale"),
            seed=_set_or_none(settings, "seed"),
            scheduler=_enum_name(diffusion_pb2.Scheduler, "SCHEDULER_", settings.scheduler),
            controlnet=_set_or_none(settings.controlnet, "enabled"),
            controlnet_scale=_set_or_none(settings.controlnet, "scale"),
            ip_adapter_image=settings.ip_adapter.image_id or None,
            ip_adapter_scale=_set_or_none(settings.ip_adapter, "scale"),
            loras=tuple((lora.name, lora.weight) for lora in settings.loras),
            seam_fix=settings.seam_fix.enabled,
            seam_fix_strength=_set_or_none(settings.seam_fix, "strength"),
            seam_fix_band=_set_or_none(settings.seam_fix, "band_width"),
            color_fix=_enum_name(gateway_pb2.ColorFixMode, "COLOR_FIX_MODE_", settings.color_fix),
            auto_caption=settings.caption.auto_caption,
            caption_instruction=settings.caption.instruction,
            preupscaler=settings.pre_upscaler,
            generation_size=_set_or_none(settings, "generation_size"),
            batch_size=_set_or_none(settings, "batch_size"),
            keep_intermediates=settings.keep_intermediates,
        )

    def to_spec(self, image_id: str) -> gateway_pb2.UpscaleSpec:
        """The UpscaleSpec of an upscale of the uploaded image `image_id`."""
        return gateway_pb2.UpscaleSpec(
            image_id=image_id,
            settings=self.to_settings(),
            tile_prompts=dict(self.tile_prompts),
            regions=[region.to_proto() for region in self.regions],
            selected_tiles=list(self.selected_tiles),
        )

    def _target(self) -> gateway_pb2.UpscaleTarget:
        target = gateway_pb2.UpscaleTarget(fit=_enum(gateway_pb2.TargetFit, "TARGET_FIT_", self.fit, "fit"))
        match self.target:
            case None:
                pass
            case str() as preset if preset.upper() in _PRESETS:
                target.preset = _PRESETS[preset.upper()]
            case int() | float() as scale if not isinstance(scale, bool):
                target.scale = scale
            case (int() as width, int() as height):
                target.size.CopyFrom(common_pb2.Size(width=width, height=height))
            case other:
                raise InvalidArgument(
                    "target",
                    f"must be a scale factor, a (width, height) pair or one of {', '.join(_PRESETS)}; "
                    f"got {other!r}",
                )
        return target


@dataclass(frozen=True)
class GenerateOptions:
    """Options of a GENERATE job (text-to-image, then the tile pipeline).

    Args:
        negative_prompt: For the base image. Default: none.
        base_size: ``(width, height)`` of the base image. Default (None): 1024x1024.
        base_steps: Default (None): 30.
        base_cfg: Default (None): 7.0.
        enhance: The enhancement; its prompts default to the base prompts, its pre-upscaler to the
            profile's x4 upscaler. Its tile_prompts, regions and selected_tiles are not used.
    """

    negative_prompt: str = ""
    base_size: tuple[int, int] | None = None
    base_steps: int | None = None
    base_cfg: float | None = None
    enhance: UpscaleOptions = field(default_factory=UpscaleOptions)

    def to_spec(self, prompt: str) -> gateway_pb2.GenerateSpec:
        """The GenerateSpec for `prompt`."""
        spec = gateway_pb2.GenerateSpec(
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            base_steps=self.base_steps,
            base_cfg_scale=self.base_cfg,
            settings=self.enhance.to_settings(),
        )
        if self.base_size is not None:
            width, height = self.base_size
            spec.base_size.CopyFrom(common_pb2.Size(width=width, height=height))
        return spec


@dataclass(frozen=True)
class TransformOptions:
    """Options of a TRANSFORM job (one image through img2img, internally or hosted).

    Args:
        mode: ``"modify"`` or ``"copy"``. Default: modify.
        reference_strength: How much of the input is kept; 0..1. Default (None): 0.5.
        prompt, negative_prompt: Default: none (negative prompt: MODIFY only).
        steps: Default (None): 25. cfg: Default (None): 7.5 (both MODIFY only).
        enhance_prompt: Add quality phrases and trigger words. Default (None): true.
        seed: Default (None): random.
        scheduler: Internal provider only, as in `UpscaleOptions`.
        loras: ``[(name, weight), ...]``; internal provider only.
        provider_chain: Providers to try in order. Default: the gateway's chain.
    """

    mode: str | None = None
    reference_strength: float | None = None
    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    cfg: float | None = None
    enhance_prompt: bool | None = None
    seed: int | None = None
    scheduler: str | None = None
    loras: Sequence[tuple[str, float]] = ()
    provider_chain: Sequence[str] = ()

    def to_spec(self, image_id: str) -> gateway_pb2.TransformSpec:
        """The TransformSpec of a transform of the uploaded image `image_id`."""
        return gateway_pb2.TransformSpec(
            image_id=image_id,
            mode=_enum(gateway_pb2.TransformMode, "TRANSFORM_MODE_", self.mode, "mode"),
            reference_strength=self.reference_strength,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            cfg_scale=self.cfg,
            enhance_prompt=self.enhance_prompt,
            seed=self.seed,
            scheduler=_enum(diffusion_pb2.Scheduler, "SCHEDULER_", self.scheduler, "scheduler"),
            loras=[common_pb2.LoraRef(name=name, weight=weight) for name, weight in self.loras],
            provider_chain=list(self.provider_chain),
        )


@dataclass(frozen=True)
class ReferenceOptions:
    """Options of a REFERENCE job (hosted generation controlled by a reference image).

    Args:
        mode: ``"depth"`` or ``"edit"``. Default: depth.
        attributes: Physical attributes of the subject. Default (None): none.
        loras: LoRAs by URL, as `RemoteLora` messages. Default: none.
        model: Endpoint override. Default: each provider's.
        size: ``(width, height)``. Default (None): the reference's size fitted to 2048x2048.
        seed, steps, guidance_scale: Default (None): the provider's / endpoint's.
        provider_chain: Hosted providers to try in order. Default: the configured chain.
    """

    mode: str | None = None
    attributes: bridge_pb2.PhysicalAttributes | None = None
    loras: Sequence[bridge_pb2.RemoteLora] = ()
    model: str = ""
    size: tuple[int, int] | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    provider_chain: Sequence[str] = ()

    def to_spec(self, reference_image_id: str, prompt: str) -> gateway_pb2.ReferenceSpec:
        """The ReferenceSpec for `prompt` with the uploaded reference image."""
        spec = gateway_pb2.ReferenceSpec(
            reference_image_id=reference_image_id,
            prompt=prompt,
            attributes=self.attributes,
            loras=list(self.loras),
            mode=_enum(bridge_pb2.HostedGenerationMode, "HOSTED_GENERATION_MODE_", self.mode, "mode"),
            model=self.model,
            seed=self.seed,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            provider_chain=list(self.provider_chain),
        )
        if self.size is not None:
            width, height = self.size
            spec.size.CopyFrom(common_pb2.Size(width=width, height=height))
        return spec


def _enum(wrapper: EnumTypeWrapper, prefix: str, name: str | None, field_name: str) -> int:
    """The enum value named `prefix + NAME`; 0 (UNSPECIFIED, the server's default) for None."""
    if name is None:
        return 0
    try:
        return wrapper.Value(prefix + name.upper())
    except ValueError:
        allowed = [
            key.removeprefix(prefix).lower()
            for key in wrapper.DESCRIPTOR.values_by_name
            if not key.endswith("UNSPECIFIED")
        ]
        raise InvalidArgument(field_name, f"must be one of {', '.join(allowed)}; got {name!r}") from None


def _set_or_none(message: Message, name: str) -> Any:
    """The value of an optional (or message) field; None when unset."""
    return getattr(message, name) if message.HasField(name) else None


def _enum_name(wrapper: EnumTypeWrapper, prefix: str, value: int) -> str | None:
    """`_enum` reversed: the lower-case name without `prefix`; None for 0 (UNSPECIFIED)."""
    return wrapper.Name(value).removeprefix(prefix).lower() if value else None


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value
