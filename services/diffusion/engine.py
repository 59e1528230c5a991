"""The SDXL engine: re-draws tiles (img2img with ControlNet-tile, an IP-Adapter style reference and a LoRA
stack) and generates images from text. Plain domain code: the Diffusion servicer converts its messages to
these dataclasses and calls `DiffusionEngine.img2img` / `txt2img` from ONE worker thread at a time (the
GPU runs one batch at a time). `describe_models` and `lora_loaded` may be called from any thread.

Components. One set of weights is in memory: the SDXL checkpoint (UNet, VAE — the profile's separate VAE
when it has one, the fp16-fix VAE in production —, both text encoders), the ControlNet-tile and the
IP-Adapter with its image encoder. Three pipelines share them (`from_pipe`): StableDiffusionXLImg2Img
(ControlNet off), StableDiffusionXLControlNetImg2Img (ControlNet on) and StableDiffusionXL (txt2img).
The IP-Adapter's attention processors and the LoRA adapters live in the shared UNet and text encoders,
so every pipeline sees them.

A call, step by step (`img2img`):

1. Check the batch (errors name the diffusion.proto field: `tiles[2].image`, `strength`,
   `sampling.steps`, ...).
2. Resize the tiles (and control images) to the diffusion size, Lanczos:
   - `generation_size` set: the longer side becomes `generation_size`, the aspect is kept, and each
     side is rounded to the nearest multiple of 8 (as Ultimate SD Upscale does with its tile size);
   - unset: the tile's own size, with sides that are not multiples of 8 rounded UP to the next one
     (the VAE works on 8x8 blocks).
   The output is resized back to the tile's size, so every output has its input's size.
3. Make the LoRA stack active (see LoRAs), set the IP-Adapter scale.
4. Encode each tile's prompts with compel (`prompts.py`; recent prompt pairs are cached): longer than
   77 tokens, `(word:1.2)`.
   The engine never adds LoRA trigger words: clients build prompts (see `loras.trigger_words`).
5. Denoise. One pipeline call for the batch, each tile with its own `torch.Generator` (CPU, seeded with
   the tile's seed: the same noise on every device and GPU model), so a tile's pixels depend on its
   neighbours only through float rounding (at most 1 level in 255 on the tiny model) and the same batch
   is bit-identical. Tiles whose prompts encode to different lengths (a prompt over 75 tokens beside a
   short one) run as consecutive sub-batches, one call each, because padding a prompt to another's length
   changes its picture; progress then counts the steps of all the calls.
6. Decode, convert to uint8 (round half up, as diffusers' `numpy_to_pil`), resize back.

Steps. The scheduler is set to `steps` steps and img2img runs the last floor(steps * strength) of them —
at least 1: when steps * strength < 1 it runs the last step of the schedule (the floor tolerates
float32 rounding: 10 steps at strength 0.7 run 7 even when 0.7 arrives as 0.69999999). `on_step(step, total,
seconds)` is called after every denoising step with the steps done so far, the steps of the whole call
and the seconds that step took (from the first ControlNet / UNet forward of the step to its end; on CUDA
the device is synchronised first, so the figure is GPU time, not queueing): the servicer's
`DenoiseProgress` and `diffusion_denoise_step_duration_seconds`. `total` is known from the first
step on. Order-2 schedulers (`dpmpp_sde_karras`) count each UNet evaluation as a step.

Cancellation. `cancelled()` is asked before denoising and after every step; when it says so, diffusers'
interrupt flag makes the pipeline skip the remaining steps (it still decodes the latents once) and the
call raises Cancelled with no output. The engine is ready for the next call right away.

IP-Adapter. Loaded once (`load`). Without a style image the adapter runs at scale 0, which diffusers
skips exactly: the output is bit-identical to the same checkpoint without the adapter (a test holds it).
A style image is encoded once per call and shared by the batch.

LoRAs. `ResolvedLora`s from `LoraLibrary.validate_stack`. An adapter stays loaded in the shared UNet and
text encoders between calls, keyed by (name, sha256): a LoRA replaced under the same name is deleted and
loaded again. The active stack is only changed (`set_adapters`) when a call's stack differs from the
last one; an empty stack disables every adapter. At most `max_loaded_loras` adapters stay loaded (least
recently used ones are deleted first, never one of the running stack). Weight 0 and the empty stack give
exactly the base checkpoint's pixels. Adapters are never fused into the weights: fusing and unfusing
would round the weights, and a few low-rank matmuls per layer cost little.

Memory and speed (`EngineConfig`, applied by `load`): dtype ("auto": float16 on CUDA, float32 on CPU);
attention slicing (of the self-attention layers: the cross-attention layers keep the IP-Adapter's
processors); VAE tiling; model CPU offload (accelerate moves one model at a time to the
device; the pipelines are then never moved with `.to()`); `torch.compile` of the UNet's and the
ControlNet's transformer blocks (regional compilation: quick to compile; each new LoRA stack or weight
recompiles them, and past torch's recompile limit those blocks run uncompiled);
channels-last memory format for the UNet, ControlNet and VAE.

Errors (`services.common.errors`):

    InvalidArgument     a bad batch or job; the field is named as in diffusion.proto
    FailedPrecondition  weights missing or unreadable (naming the path and the command that fetches
                        them); CUDA asked for but absent; a style image with the IP-Adapter not loaded;
                        a LoRA that cannot be loaded; `dpmpp_sde_karras` without torchsde; a call
                        before `load`
    ResourceExhausted   out of GPU memory (the cache is emptied first; retrying with fewer tiles or a
                        smaller generation size may fit)
    Cancelled           `cancelled()` said so
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from services.common.devices import resolve_device
from services.common.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted
from services.diffusion.loras import BaseArchitecture, ResolvedLora
from services.diffusion.profiles import PROFILES, TINY, ModelProfile
from services.diffusion.prompts import Conditioning, PromptEncoder, PromptPair
from services.diffusion.schedulers import DEFAULT_SCHEDULER, SchedulerName, make_scheduler, parse_scheduler

if TYPE_CHECKING:
    from services.diffusion.settings import DiffusionSettings

__all__ = [
    "ControlNetOptions",
    "DiffusionEngine",
    "EngineConfig",
    "Img2ImgBatch",
    "Img2ImgTileInput",
    "ModelDescription",
    "ModelKind",
    "StepCallback",
    "Txt2ImgJob",
]

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, float], None]
"""`on_step(step, total, seconds)`: steps done so far (1..total), steps of the whole call, and the
seconds the step just finished took."""

# Limits, as diffusion.proto documents them.
MIN_TILE_SIDE = 16
MAX_SIDE = 4096
MIN_GENERATION_SIDE = 64
MAX_PROMPT_CHARS = 2000
MAX_STEPS = 150
MAX_CFG_SCALE = 30.0
MAX_ADAPTER_SCALE = 2.0  # IP-Adapter scale and ControlNet conditioning scale
MAX_SEED = 2**64 - 1

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ModelKind(StrEnum):
    """What a model is for. Member names are the proto's `tilesmith.v1.ModelKind` without its prefix."""

    CHECKPOINT = "checkpoint"
    VAE = "vae"
    CONTROLNET = "controlnet"
    IP_ADAPTER = "ip_adapter"
    IMAGE_ENCODER = "image_encoder"


@dataclass(frozen=True)
class ModelDescription:
    """One model of the profile, for ListModels. Each is the only (so the default) one of its kind."""

    name: str
    kind: ModelKind
    # Absolute path (for logs; never sent to clients — `source` is).
    path: Path
    # The Hugging Face repo id `make models` fetches it from, or its path inside the models folder.
    source: str
    # The diffusers / transformers class ("UNet2DConditionModel", "ControlNetModel", ...); "" when its
    # config cannot be read.
    architecture: str
    # SDXL for the diffusion models; UNSPECIFIED for the image encoder.
    base_architecture: BaseArchitecture
    # Bytes of its weights and configs on disk (0 when missing).
    size_bytes: int
    loaded: bool


@dataclass(frozen=True)
class EngineConfig:
    """What `DiffusionEngine.load` loads and how (see the module docstring, Memory and speed)."""

    profile: ModelProfile
    # The models folder (profiles.py documents its layout).
    models_dir: Path
    # "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    # "auto" (float16 on CUDA, float32 on CPU), "float16", "bfloat16" or "float32".
    dtype: str = "auto"
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    torch_compile: bool = False
    channels_last: bool = False
    # Load the IP-Adapter and its image encoder (ViT-H: about 2.5 GB in float16). Without it a request
    # with a style image is refused (FailedPrecondition).
    ip_adapter: bool = True
    # Most LoRA adapters kept loaded between calls.
    max_loaded_loras: int = 8

    @classmethod
    def from_settings(cls, settings: DiffusionSettings) -> EngineConfig:
        """The engine configuration a service's settings ask for."""
        return cls(
            profile=PROFILES[settings.profile],
            models_dir=settings.models_dir,
            device=settings.device,
            dtype=settings.dtype,
            attention_slicing=settings.attention_slicing,
            vae_tiling=settings.vae_tiling,
            cpu_offload=settings.cpu_offload,
            torch_compile=settings.torch_compile,
            channels_last=settings.channels_last,
        )


@dataclass(frozen=True)
class ControlNetOptions:
    """ControlNet-tile (ControlNetSettings in diffusion.proto)."""

    enabled: bool = True
    # controlnet_conditioning_scale, 0..2.
    scale: float = 0.7
    # Fractions of the denoising steps between which the ControlNet acts; 0 <= start < end <= 1.
    guidance_start: float = 0.0
    guidance_end: float = 1.0


@dataclass(frozen=True)
class Img2ImgTileInput:
    """One tile of a batch (Img2ImgTile in diffusion.proto)."""

    # H x W x 3 uint8 (RGB; split alpha off first), 16..4096 px per side.
    image: np.ndarray
    # compel syntax, at most 2000 characters each; "" is an unconditioned re-draw / no negative prompt.
    prompt: str
    negative_prompt: str
    # The tile's generator seed, 0..2**64-1.
    seed: int
    # ControlNet-tile's control image, same shape as `image`; None: `image` itself.
    control_image: np.ndarray | None = None


@dataclass(frozen=True)
class Img2ImgBatch:
    """Tiles re-drawn together with shared parameters (Img2ImgRequest in diffusion.proto)."""

    # One or more tiles, all of the same size. The servicer enforces its max batch size.
    tiles: Sequence[Img2ImgTileInput]
    # How far each tile is re-drawn: 0 < strength <= 1.
    strength: float = 0.35
    # Scheduler steps, 1..150 (img2img runs the last floor(steps * strength), at least 1).
    steps: int = 30
    # Classifier-free guidance, 0..30 (<= 1: no guidance, the negative prompt is unused).
    cfg_scale: float = 7.0
    # A `schedulers.SchedulerName` value.
    scheduler: str = DEFAULT_SCHEDULER
    # From `LoraLibrary.validate_stack`; empty: no LoRA.
    loras: Sequence[ResolvedLora] = ()
    # Style reference: H x W x 3 or 4 uint8 (alpha ignored); None: no IP-Adapter.
    ip_adapter_image: np.ndarray | None = None
    # 0..2 (0 = no effect).
    ip_adapter_scale: float = 0.6
    controlnet: ControlNetOptions = field(default_factory=ControlNetOptions)
    # Longer side, in pixels, tiles are diffused at (64..4096); None: the tile's own size.
    generation_size: int | None = None


@dataclass(frozen=True)
class Txt2ImgJob:
    """One image generated from text (Txt2ImgRequest in diffusion.proto)."""

    # compel syntax; 1..2000 characters.
    prompt: str
    # compel syntax; at most 2000 characters; "" for none.
    negative_prompt: str
    # Output size: each side 64..4096 and a multiple of 8.
    width: int
    height: int
    seed: int
    steps: int = 30
    cfg_scale: float = 7.0
    scheduler: str = DEFAULT_SCHEDULER
    loras: Sequence[ResolvedLora] = ()
    ip_adapter_image: np.ndarray | None = None
    ip_adapter_scale: float = 0.6


class DiffusionEngine:
    """SDXL img2img / txt2img over one set of components; see the module docstring.

    Not thread-safe: one `img2img` / `txt2img` at a time. `load` first.
    """

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._device = resolve_device(config.device)
        self._dtype = _resolve_dtype(config.dtype, self._device)
        self._models: _Models | None = None

    # ------------------------------------------------------------------------------------------------
    # State

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def device(self) -> torch.device:
        """Where the models run ("cuda:0", "cpu"); with CPU offload, the device they are moved to."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def loaded(self) -> bool:
        return self._models is not None

    @property
    def model_name(self) -> str:
        """The checkpoint's name (GenerationStats.model, ListModels)."""
        return _component_name(self._config.profile, "sdxl")

    @property
    def cross_attention_dim(self) -> int:
        """The UNet's cross-attention width: 2048 for SDXL (96 for the tiny model); the LoRA library
        compares LoRAs against it."""
        return self._require().img2img.unet.config.cross_attention_dim

    def lora_loaded(self, name: str, sha256: str) -> bool:
        """Whether the LoRA `name` with contents `sha256` is loaded now (LoraInfo.loaded)."""
        return self._models is not None and self._models.loras.is_loaded(name, sha256)

    # ------------------------------------------------------------------------------------------------
    # Loading

    def load(self) -> None:
        """Load every model of the profile and apply the memory and speed settings; idempotent.

        Raises:
            FailedPrecondition: weights missing (every missing path is named, with the command that
                fetches them) or unreadable; CUDA asked for but not available.
        """
        if self.loaded:
            return
        config, profile = self._config, self._config.profile
        started = time.perf_counter()

        # 1. Check the device and that every file is there, before loading anything.
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise FailedPrecondition(
                f"device {config.device!r} asks for CUDA, but no CUDA device is available"
            )
        self._check_weights_present()

        # 2. Load the components on the CPU.
        sdxl = profile.path(config.models_dir, "sdxl")
        extra: dict[str, Any] = {}
        if profile.vae is not None:
            vae_path = profile.path(config.models_dir, "vae")
            extra["vae"] = _load(
                vae_path, lambda: AutoencoderKL.from_pretrained(vae_path, **self._load_args())
            )
        controlnet_path = profile.path(config.models_dir, "controlnet_tile")
        controlnet = _load(
            controlnet_path, lambda: ControlNetModel.from_pretrained(controlnet_path, **self._load_args())
        )
        base = _load(
            sdxl, lambda: StableDiffusionXLImg2ImgPipeline.from_pretrained(sdxl, **self._load_args(), **extra)
        )

        # 3. The IP-Adapter, at scale 0 until a call brings a style image.
        if config.ip_adapter:
            folder = profile.path(config.models_dir, "ip_adapter")
            _load(
                folder,
                lambda: base.load_ip_adapter(
                    str(folder),
                    subfolder=profile.ip_adapter_subfolder,
                    weight_name=profile.ip_adapter_weight,
                    image_encoder_folder=profile.ip_adapter_image_encoder,
                ),
            )
            base.set_ip_adapter_scale(0.0)

        # 4. Memory layout, attention slicing (after the IP-Adapter: see _slice_self_attention), VAE tiling.
        if config.channels_last:
            for model in (base.unet, controlnet, base.vae):
                model.to(memory_format=torch.channels_last)
        if config.attention_slicing:
            for model in (base.unet, controlnet):
                _slice_self_attention(model)
        if config.vae_tiling:
            base.vae.enable_tiling()

        # 5. The other pipelines share every component.
        controlnet_pipe = StableDiffusionXLControlNetImg2ImgPipeline.from_pipe(base, controlnet=controlnet)
        txt2img_pipe = StableDiffusionXLPipeline.from_pipe(base)
        pipes = (base, controlnet_pipe, txt2img_pipe)

        # 6. Compile, then place on the device (or let accelerate move one model at a time).
        if config.torch_compile:
            for model in (base.unet, controlnet):
                _compile_transformer_blocks(model)
        for pipe in pipes:
            pipe.set_progress_bar_config(disable=True)
            if config.cpu_offload:
                pipe.enable_model_cpu_offload(device=self._device)
        if not config.cpu_offload:
            base.to(self._device)
            controlnet.to(self._device)

        # 7. Per-call state.
        blank_style_embeds = None
        if config.ip_adapter:
            blank = Image.new("RGB", (224, 224))
            blank_style_embeds = base.prepare_ip_adapter_image_embeds(blank, None, self._device, 1, True)
        self._models = _Models(
            img2img=base,
            controlnet=controlnet_pipe,
            txt2img=txt2img_pipe,
            scheduler_config=base.scheduler.config,
            loras=_LoraAdapters(base, config.max_loaded_loras),
            prompts=PromptEncoder(base, self._device),
            blank_style_embeds=blank_style_embeds,
        )
        log.info(
            "loaded the %s profile (%s) on %s in %s in %.1f s",
            profile.name,
            self.model_name,
            self._device,
            str(self._dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )

    def _load_args(self) -> dict[str, Any]:
        # safetensors only: nothing in the models folder is ever unpickled.
        return {"dtype": self._dtype, "use_safetensors": True}

    def _check_weights_present(self) -> None:
        config, profile = self._config, self._config.profile
        required = [profile.path(config.models_dir, "sdxl") / "model_index.json"]
        if profile.vae is not None:
            required.append(profile.path(config.models_dir, "vae") / "config.json")
        required.append(profile.path(config.models_dir, "controlnet_tile") / "config.json")
        if config.ip_adapter:
            folder = profile.path(config.models_dir, "ip_adapter")
            required.append(folder / profile.ip_adapter_subfolder / profile.ip_adapter_weight)
            required.append(folder / profile.ip_adapter_image_encoder / "config.json")
        missing = [str(path) for path in required if not path.is_file()]
        if missing:
            raise FailedPrecondition(
                f"the {profile.name} profile's weights are missing: {', '.join(missing)}; "
                + _fetch_hint(profile, config.models_dir)
            )

    # ------------------------------------------------------------------------------------------------
    # Img2img

    def img2img(
        self,
        batch: Img2ImgBatch,
        *,
        on_step: StepCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Re-draw a batch of tiles; one H x W x 3 uint8 output per tile, in order, each the size of its
        input tile.

        Args:
            batch: The tiles and their shared parameters.
            on_step: Called after each denoising step (see the module docstring, Steps).
            cancelled: Asked before denoising and after each step; True stops the call.

        Raises:
            InvalidArgument, FailedPrecondition, ResourceExhausted, Cancelled: see the module docstring.
        """
        # 1. Check inputs.
        models = self._require()
        width, height = _check_tiles(batch.tiles)
        _check_fraction(batch.strength, "strength", "0 < strength <= 1", low_open=True)
        scheduler = _check_sampling(
            batch.steps, batch.cfg_scale, batch.scheduler, batch.ip_adapter_image, batch.ip_adapter_scale
        )
        _check_controlnet(batch.controlnet)
        if batch.generation_size is not None and not (
            MIN_GENERATION_SIDE <= batch.generation_size <= MAX_SIDE
        ):
            raise InvalidArgument(
                "generation_size",
                f"{batch.generation_size} is out of range; {MIN_GENERATION_SIDE}..{MAX_SIDE}, or unset",
            )
        self._check_style_available(batch.ip_adapter_image)

        # 2. The diffusion size, and the tiles at that size.
        size = _diffusion_size(width, height, batch.generation_size)
        images = [_to_pil(tile.image, size) for tile in batch.tiles]
        use_controlnet = batch.controlnet.enabled
        pipe = models.controlnet if use_controlnet else models.img2img
        seeds = [tile.seed for tile in batch.tiles]

        with self._out_of_memory_as_resource_exhausted(f"{len(images)} tile(s) of {size[0]}x{size[1]}"):
            # 3. LoRAs, IP-Adapter.
            style = self._activate(
                models, batch.loras, batch.ip_adapter_image, batch.ip_adapter_scale, batch.cfg_scale
            )

            # 4. Prompts, each tile on its own; tiles with equal conditioning lengths run together.
            conditionings = models.prompts.encode(
                [
                    PromptPair(
                        tile.prompt, tile.negative_prompt, f"tiles[{i}].prompt", f"tiles[{i}].negative_prompt"
                    )
                    for i, tile in enumerate(batch.tiles)
                ],
                text_encoders=models.loras.active,
            )
            groups = _group_by_length(conditionings)

            # 5. Denoise and decode, one call per group.
            runner = _PipelineRunner(pipe, on_step, cancelled, calls=len(groups), device=self._device)
            outputs: dict[int, np.ndarray] = {}
            for group in groups:
                arguments: dict[str, Any] = {
                    "image": [images[i] for i in group],
                    "strength": _runnable_strength(batch.strength, batch.steps),
                }
                if use_controlnet:
                    arguments |= {
                        "control_image": [
                            images[i]
                            if batch.tiles[i].control_image is None
                            else _to_pil(batch.tiles[i].control_image, size)
                            for i in group
                        ],
                        "controlnet_conditioning_scale": batch.controlnet.scale,
                        "control_guidance_start": batch.controlnet.guidance_start,
                        "control_guidance_end": batch.controlnet.guidance_end,
                    }
                group_seeds = [seeds[i] for i in group]
                results = runner.run(
                    **arguments,
                    **_conditioning_arguments(Conditioning.concat([conditionings[i] for i in group])),
                    scheduler=make_scheduler(scheduler, models.scheduler_config, group_seeds),
                    generator=_generators(group_seeds),
                    num_inference_steps=batch.steps,
                    guidance_scale=batch.cfg_scale,
                    ip_adapter_image_embeds=style,
                )
                outputs.update(zip(group, results, strict=True))

        # 6. Back to the tiles' size.
        return [_resize(outputs[i], (width, height)) for i in range(len(batch.tiles))]

    # ------------------------------------------------------------------------------------------------
    # Txt2img

    def txt2img(
        self,
        job: Txt2ImgJob,
        *,
        on_step: StepCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Generate one image: height x width x 3 uint8.

        Args and errors as `img2img`.
        """
        # 1. Check inputs.
        models = self._require()
        if not job.prompt:
            raise InvalidArgument("prompt", "is required: 1..2000 characters")
        _check_prompt(job.prompt, "prompt")
        _check_prompt(job.negative_prompt, "negative_prompt")
        for side, value in (("size.width", job.width), ("size.height", job.height)):
            if not (MIN_GENERATION_SIDE <= value <= MAX_SIDE) or value % 8:
                raise InvalidArgument(
                    side, f"{value} is not allowed; {MIN_GENERATION_SIDE}..{MAX_SIDE} and a multiple of 8"
                )
        _check_seed(job.seed, "seed")
        scheduler = _check_sampling(
            job.steps, job.cfg_scale, job.scheduler, job.ip_adapter_image, job.ip_adapter_scale
        )
        self._check_style_available(job.ip_adapter_image)
        pipe = models.txt2img

        with self._out_of_memory_as_resource_exhausted(f"a {job.width}x{job.height} image"):
            # 2. LoRAs, IP-Adapter, prompts.
            style = self._activate(
                models, job.loras, job.ip_adapter_image, job.ip_adapter_scale, job.cfg_scale
            )
            (conditioning,) = models.prompts.encode(
                [PromptPair(job.prompt, job.negative_prompt)], text_encoders=models.loras.active
            )

            # 3. Denoise and decode.
            runner = _PipelineRunner(pipe, on_step, cancelled, calls=1, device=self._device)
            (image,) = runner.run(
                **_conditioning_arguments(conditioning),
                width=job.width,
                height=job.height,
                scheduler=make_scheduler(scheduler, models.scheduler_config, [job.seed]),
                generator=_generators([job.seed]),
                num_inference_steps=job.steps,
                guidance_scale=job.cfg_scale,
                ip_adapter_image_embeds=style,
            )
        return image

    # ------------------------------------------------------------------------------------------------
    # Models

    def describe_models(self) -> list[ModelDescription]:
        """Every model of the profile, checkpoint first (ListModels); works before `load` too."""
        config, profile = self._config, self._config.profile
        loaded = self.loaded
        sdxl = profile.path(config.models_dir, "sdxl")
        models = [
            ModelDescription(
                name=self.model_name,
                kind=ModelKind.CHECKPOINT,
                path=sdxl,
                source=_source(profile, "sdxl", sdxl, config.models_dir),
                architecture=_class_name(sdxl / "unet" / "config.json"),
                base_architecture=BaseArchitecture.SDXL,
                size_bytes=_pipeline_size(sdxl),
                loaded=loaded,
            )
        ]
        if profile.vae is not None:
            vae = profile.path(config.models_dir, "vae")
            models.append(
                ModelDescription(
                    name=_component_name(profile, "vae"),
                    kind=ModelKind.VAE,
                    path=vae,
                    source=_source(profile, "vae", vae, config.models_dir),
                    architecture=_class_name(vae / "config.json"),
                    base_architecture=BaseArchitecture.SDXL,
                    size_bytes=_size(vae),
                    loaded=loaded,
                )
            )
        controlnet = profile.path(config.models_dir, "controlnet_tile")
        models.append(
            ModelDescription(
                name=_component_name(profile, "controlnet_tile"),
                kind=ModelKind.CONTROLNET,
                path=controlnet,
                source=_source(profile, "controlnet_tile", controlnet, config.models_dir),
                architecture=_class_name(controlnet / "config.json"),
                base_architecture=BaseArchitecture.SDXL,
                size_bytes=_size(controlnet),
                loaded=loaded,
            )
        )
        folder = profile.path(config.models_dir, "ip_adapter")
        weights = folder / profile.ip_adapter_subfolder / profile.ip_adapter_weight
        encoder = folder / profile.ip_adapter_image_encoder
        ip_source = _source(profile, "ip_adapter", folder, config.models_dir)
        ip_loaded = loaded and config.ip_adapter
        models += [
            ModelDescription(
                name=Path(profile.ip_adapter_weight).stem,
                kind=ModelKind.IP_ADAPTER,
                path=weights,
                source=ip_source,
                architecture="IPAdapter",
                base_architecture=BaseArchitecture.SDXL,
                size_bytes=_size(weights),
                loaded=ip_loaded,
            ),
            ModelDescription(
                name=f"{Path(profile.ip_adapter_weight).stem}/image_encoder",
                kind=ModelKind.IMAGE_ENCODER,
                path=encoder,
                source=ip_source,
                architecture=_class_name(encoder / "config.json"),
                base_architecture=BaseArchitecture.UNSPECIFIED,
                size_bytes=_size(encoder),
                loaded=ip_loaded,
            ),
        ]
        return models

    # ------------------------------------------------------------------------------------------------
    # Helpers

    def _require(self) -> _Models:
        if self._models is None:
            raise FailedPrecondition("the diffusion models are not loaded yet")
        return self._models

    def _check_style_available(self, image: np.ndarray | None) -> None:
        if image is not None and not self._config.ip_adapter:
            raise FailedPrecondition(
                "sampling.ip_adapter: this replica runs without the IP-Adapter; send no style image"
            )

    def _activate(
        self,
        models: _Models,
        loras: Sequence[ResolvedLora],
        style: np.ndarray | None,
        style_scale: float,
        cfg_scale: float,
    ) -> list[torch.Tensor] | None:
        """Make the LoRA stack active and set the IP-Adapter's scale; returns the IP-Adapter image
        embeddings for the pipeline's `ip_adapter_image_embeds` (None without the adapter): the style
        image's, or the blank ones that scale 0 ignores."""
        models.loras.apply(loras)
        if models.blank_style_embeds is None:
            return None
        models.img2img.set_ip_adapter_scale(style_scale if style is not None else 0.0)
        if style is None:
            embeds = models.blank_style_embeds
        else:
            picture = Image.fromarray(np.ascontiguousarray(style[..., :3]))
            embeds = models.img2img.prepare_ip_adapter_image_embeds(picture, None, self._device, 1, True)
        # Prepared for guidance: negative and positive halves. Without guidance, the positive only.
        return embeds if cfg_scale > 1 else [embed.chunk(2)[1] for embed in embeds]

    @contextlib.contextmanager
    def _out_of_memory_as_resource_exhausted(self, what: str) -> Iterator[None]:
        try:
            yield
        except torch.OutOfMemoryError as exc:
            if self._device.type == "cuda":
                torch.cuda.empty_cache()
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ResourceExhausted(
                f"out of GPU memory diffusing {what} ({first_line}); retry with fewer tiles or a smaller "
                "generation size"
            ) from exc


@dataclass(frozen=True)
class _Models:
    """What `load` made: three pipelines over one set of components, and the state calls share."""

    img2img: StableDiffusionXLImg2ImgPipeline
    controlnet: StableDiffusionXLControlNetImg2ImgPipeline
    txt2img: StableDiffusionXLPipeline
    # The checkpoint's own scheduler config, which every call's scheduler is made from.
    scheduler_config: Any
    loras: _LoraAdapters
    prompts: PromptEncoder
    # IP-Adapter embeddings of "no style image" (negative and positive halves), used at scale 0;
    # None without the IP-Adapter.
    blank_style_embeds: list[torch.Tensor] | None


# ----------------------------------------------------------------------------------------------------
# Running a pipeline


class _PipelineRunner:
    """Runs one or more pipeline calls of a request: progress across them, step timing, cancellation."""

    def __init__(
        self,
        pipe: (
            StableDiffusionXLPipeline
            | StableDiffusionXLImg2ImgPipeline
            | StableDiffusionXLControlNetImg2ImgPipeline
        ),
        on_step: StepCallback | None,
        cancelled: Callable[[], bool] | None,
        *,
        calls: int,
        device: torch.device,
    ) -> None:
        self._pipe = pipe
        self._on_step = on_step
        self._cancelled = cancelled
        self._calls = calls
        self._steps_done = 0
        self._synchronize = on_step is not None and device.type == "cuda"
        self._device = device

    def run(self, scheduler: SchedulerMixin, **arguments: Any) -> list[np.ndarray]:
        """One pipeline call with a fresh `scheduler`; its images as H x W x 3 uint8. Raises Cancelled."""
        pipe = self._pipe
        if self._cancelled is not None and self._cancelled():
            raise Cancelled(f"cancelled after {self._steps_done} denoising steps")
        pipe.scheduler = scheduler
        step_started: float | None = None
        steps_seen = 0

        def step_starts(_module: torch.nn.Module, _args: Any) -> None:
            nonlocal step_started
            if step_started is None:
                step_started = self._now()

        def step_ends(pipeline: Any, index: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal step_started, steps_seen
            steps_seen = index + 1
            if self._on_step is not None:
                now = self._now()
                total = pipeline.num_timesteps * self._calls
                self._on_step(self._steps_done + index + 1, total, now - (step_started or now))
                step_started = now
            if self._cancelled is not None and self._cancelled():
                pipeline._interrupt = True  # diffusers' interrupt: the remaining steps are skipped
            return tensors

        # The first model a denoising step runs: its first forward starts the first step's clock.
        denoiser = (
            pipe.controlnet if isinstance(pipe, StableDiffusionXLControlNetImg2ImgPipeline) else pipe.unet
        )
        hook = denoiser.register_forward_pre_hook(step_starts) if self._on_step is not None else None
        try:
            images = pipe(**arguments, output_type="np", callback_on_step_end=step_ends).images
        finally:
            if hook is not None:
                hook.remove()
        if pipe.interrupt:
            raise Cancelled(
                f"cancelled after {self._steps_done + steps_seen} of {pipe.num_timesteps * self._calls} "
                "denoising steps"
            )
        self._steps_done += pipe.num_timesteps
        return [_to_uint8(image) for image in images]

    def _now(self) -> float:
        if self._synchronize:
            torch.cuda.synchronize(self._device)
        return time.perf_counter()


def _conditioning_arguments(conditioning: Conditioning) -> dict[str, torch.Tensor]:
    return {
        "prompt_embeds": conditioning.prompt_embeds,
        "pooled_prompt_embeds": conditioning.pooled_prompt_embeds,
        "negative_prompt_embeds": conditioning.negative_prompt_embeds,
        "negative_pooled_prompt_embeds": conditioning.negative_pooled_prompt_embeds,
    }


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    # CPU generators: the same noise whatever the device (diffusers moves it there).
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def _group_by_length(conditionings: Sequence[Conditioning]) -> list[list[int]]:
    """Tile indices grouped by conditioning length, groups in order of their first tile."""
    groups: dict[int, list[int]] = {}
    for index, conditioning in enumerate(conditionings):
        groups.setdefault(conditioning.tokens, []).append(index)
    return list(groups.values())


def _runnable_strength(strength: float, steps: int) -> float:
    """The strength to pass so that the pipeline runs max(1, floor(steps * strength)) steps.

    diffusers runs int(steps * strength) steps (strength is used for nothing else) and fails on 0; the
    proto promises at least one: the last step of the `steps`-step schedule. The floor allows 1e-6 of
    slack, because strengths travel as float32: 0.7 arrives as 0.69999999, and 10 steps at 0.7 are 7.
    """
    count = min(steps, max(1, int(steps * strength + 1e-6)))
    return min(1.0, (count + 0.5) / steps)


# ----------------------------------------------------------------------------------------------------
# LoRA adapters


class _LoraAdapters:
    """The LoRA adapters loaded into the shared UNet and text encoders, and the active stack."""

    def __init__(self, pipe: StableDiffusionXLImg2ImgPipeline, max_loaded: int) -> None:
        self._pipe = pipe
        self._max_loaded = max_loaded
        # (name, sha256) -> adapter name, least recently used first.
        self._adapters: OrderedDict[tuple[str, str], str] = OrderedDict()
        # The stack set_adapters last made active; None when unknown (a swap failed half-way).
        self._active: tuple[tuple[str, str, float], ...] | None = ()

    @property
    def active(self) -> tuple[tuple[str, str, float], ...] | None:
        """The active stack as (name, sha256, weight) tuples; None while unknown."""
        return self._active

    def is_loaded(self, name: str, sha256: str) -> bool:
        return (name, sha256) in self._adapters

    def apply(self, stack: Sequence[ResolvedLora]) -> None:
        """Make `stack` the active stack, loading and evicting adapters as needed.

        Raises:
            FailedPrecondition: on `sampling.loras[i]`, a LoRA that cannot be loaded.
        """
        wanted = tuple((lora.name, lora.sha256, float(lora.weight)) for lora in stack)
        if wanted == self._active:
            return
        self._active = None
        keys = [(lora.name, lora.sha256) for lora in stack]
        # 1. A LoRA replaced under the same name: drop the old adapter.
        names = {lora.name for lora in stack}
        for key in [key for key in self._adapters if key[0] in names and key not in keys]:
            self._delete(key)
        # 2. Make room, least recently used first, never for one of this stack.
        missing = [(i, lora) for i, lora in enumerate(stack) if keys[i] not in self._adapters]
        excess = len(self._adapters) + len(missing) - self._max_loaded
        for key in [key for key in self._adapters if key not in keys][: max(0, excess)]:
            self._delete(key)
        # 3. Load what is missing; the stack becomes the most recently used.
        for i, lora in missing:
            self._load(i, lora)
        for key in keys:
            self._adapters.move_to_end(key)
        # 4. Activate.
        if stack:
            self._pipe.enable_lora()
            self._pipe.set_adapters([self._adapters[key] for key in keys], [lora.weight for lora in stack])
        elif self._adapters:
            self._pipe.disable_lora()
        self._active = wanted

    def _load(self, index: int, lora: ResolvedLora) -> None:
        adapter = f"lora_{re.sub(r'[^A-Za-z0-9_]', '_', lora.name)}_{lora.sha256[:12]}"
        started = time.perf_counter()
        try:
            self._pipe.load_lora_weights(
                str(lora.path.parent), weight_name=lora.path.name, adapter_name=adapter
            )
        except torch.OutOfMemoryError:
            self._forget_partial(adapter)
            raise
        except Exception as exc:  # diffusers and peft raise many kinds for a file they cannot apply
            self._forget_partial(adapter)
            raise FailedPrecondition(
                f"sampling.loras[{index}]: LoRA {lora.name!r} cannot be loaded: {exc}"
            ) from exc
        self._adapters[(lora.name, lora.sha256)] = adapter
        log.info("loaded LoRA %s (%s) in %.2f s", lora.name, lora.sha256[:12], time.perf_counter() - started)

    def _forget_partial(self, adapter: str) -> None:
        """Remove what a failed load left in some components."""
        if any(adapter in names for names in self._pipe.get_list_adapters().values()):
            self._pipe.delete_adapters(adapter)

    def _delete(self, key: tuple[str, str]) -> None:
        self._pipe.delete_adapters(self._adapters.pop(key))
        log.info("unloaded LoRA %s (%s)", key[0], key[1][:12])


# ----------------------------------------------------------------------------------------------------
# Checks


def _check_tiles(tiles: Sequence[Img2ImgTileInput]) -> tuple[int, int]:
    """Check every tile; returns the batch's (width, height)."""
    if not tiles:
        raise InvalidArgument("tiles", "is empty; send at least one tile")
    width, height = _check_image(tiles[0].image, "tiles[0].image")
    for i, tile in enumerate(tiles):
        field_ = f"tiles[{i}]"
        tile_size = _check_image(tile.image, f"{field_}.image")
        if tile_size != (width, height):
            raise InvalidArgument(
                f"{field_}.image",
                f"is {tile_size[0]}x{tile_size[1]} but tiles[0] is {width}x{height}; every tile of a batch "
                "must have the same size",
            )
        if tile.control_image is not None:
            control_size = _check_image(tile.control_image, f"{field_}.control_image")
            if control_size != (width, height):
                raise InvalidArgument(
                    f"{field_}.control_image",
                    f"is {control_size[0]}x{control_size[1]}; it must have its tile's size, {width}x{height}",
                )
        _check_prompt(tile.prompt, f"{field_}.prompt")
        _check_prompt(tile.negative_prompt, f"{field_}.negative_prompt")
        _check_seed(tile.seed, f"{field_}.seed")
    return width, height


def _check_image(image: np.ndarray, field_: str) -> tuple[int, int]:
    """An RGB tile: H x W x 3 uint8, 16..4096 px per side; returns (width, height)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidArgument(field_, f"must be an H x W x 3 uint8 array, not {_describe_array(image)}")
    if image.shape[2] != 3:
        raise InvalidArgument(
            field_, f"has {image.shape[2]} channels; RGB only (alpha is not diffused: split it off first)"
        )
    height, width = image.shape[:2]
    if not (MIN_TILE_SIDE <= width <= MAX_SIDE and MIN_TILE_SIDE <= height <= MAX_SIDE):
        raise InvalidArgument(
            field_, f"is {width}x{height}; each side must be {MIN_TILE_SIDE}..{MAX_SIDE} pixels"
        )
    return width, height


def _describe_array(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _check_prompt(prompt: str, field_: str) -> None:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(field_, f"is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")


def _check_seed(seed: int, field_: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(field_, f"{seed} is out of range; 0..2**64-1")


def _check_fraction(value: float, field_: str, rule: str, *, low_open: bool = False) -> None:
    allowed = 0 < value <= 1 if low_open else 0 <= value <= 1
    if not allowed:  # NaN fails both comparisons
        raise InvalidArgument(field_, f"{value} is out of range; {rule}")


def _check_sampling(
    steps: int, cfg_scale: float, scheduler: str, style: np.ndarray | None, style_scale: float
) -> SchedulerName:
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidArgument("sampling.steps", f"{steps} is out of range; 1..{MAX_STEPS}")
    if not 0 <= cfg_scale <= MAX_CFG_SCALE:
        raise InvalidArgument("sampling.cfg_scale", f"{cfg_scale} is out of range; 0..{MAX_CFG_SCALE:g}")
    if not 0 <= style_scale <= MAX_ADAPTER_SCALE:
        raise InvalidArgument(
            "sampling.ip_adapter.scale", f"{style_scale} is out of range; 0..{MAX_ADAPTER_SCALE:g}"
        )
    if style is not None and (
        not isinstance(style, np.ndarray)
        or style.dtype != np.uint8
        or style.ndim != 3
        or style.shape[2] not in (3, 4)
        or 0 in style.shape
    ):
        raise InvalidArgument(
            "sampling.ip_adapter.image",
            f"must be an H x W x 3 or 4 uint8 array, not {_describe_array(style)}",
        )
    return parse_scheduler(scheduler)


def _check_controlnet(options: ControlNetOptions) -> None:
    if not 0 <= options.scale <= MAX_ADAPTER_SCALE:
        raise InvalidArgument(
            "controlnet.scale", f"{options.scale} is out of range; 0..{MAX_ADAPTER_SCALE:g}"
        )
    _check_fraction(options.guidance_start, "controlnet.guidance_start", "0..1, below guidance_end")
    _check_fraction(options.guidance_end, "controlnet.guidance_end", "0..1, above guidance_start")
    if options.guidance_start >= options.guidance_end:
        raise InvalidArgument(
            "controlnet.guidance_start",
            f"{options.guidance_start} must be below guidance_end ({options.guidance_end})",
        )


# ----------------------------------------------------------------------------------------------------
# Images


def _diffusion_size(width: int, height: int, generation_size: int | None) -> tuple[int, int]:
    """(width, height) the tiles are diffused at; see the module docstring, step 2."""
    if generation_size is None:
        return -(-width // 8) * 8, -(-height // 8) * 8
    scale = generation_size / max(width, height)
    return _nearest_multiple_of_8(width * scale), _nearest_multiple_of_8(height * scale)


def _nearest_multiple_of_8(value: float) -> int:
    return max(8, int(value / 8 + 0.5) * 8)


def _to_pil(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(image))
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    # As diffusers' numpy_to_pil: the pipeline's output is already clamped to 0..1.
    return (image * 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Loading


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


def _load(path: Path, load: Callable[[], Any]) -> Any:
    """Run a loader, turning "these files are not loadable weights" into FailedPrecondition."""
    try:
        return load()
    except torch.OutOfMemoryError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise FailedPrecondition(f"cannot load the weights in {path}: {exc}") from exc


def _slice_self_attention(model: torch.nn.Module) -> None:
    """Attention slicing on the self-attention layers, half the heads at a time (diffusers' "auto").

    Not `enable_attention_slicing`: it replaces every processor, the IP-Adapter's on the cross-attention
    layers included, and the IP-Adapter loader cannot start from sliced processors. Self-attention is
    where the memory goes (tokens x tokens per head); cross-attention attends to 77 x k text tokens.
    """
    for module in model.modules():
        if isinstance(module, Attention) and not module.is_cross_attention:
            module.set_attention_slice(max(1, module.sliceable_head_dim // 2))


def _compile_transformer_blocks(model: torch.nn.Module) -> None:
    """Regional compilation: torch.compile each transformer block (they repeat, so it compiles once)."""
    for module in model.modules():
        if isinstance(module, BasicTransformerBlock):
            module.compile()


def _fetch_hint(profile: ModelProfile, models_dir: Path) -> str:
    if profile.name == TINY.name:
        return f"`python -m services.diffusion.tiny {models_dir}` builds the tiny models"
    return f"`make models` fetches the production weights into {models_dir}"


def _component_name(profile: ModelProfile, component: str) -> str:
    source = profile.sources.get(component)
    return source.repo_id.rsplit("/", 1)[-1] if source is not None else Path(getattr(profile, component)).name


def _source(profile: ModelProfile, component: str, path: Path, models_dir: Path) -> str:
    source = profile.sources.get(component)
    return source.repo_id if source is not None else str(path.relative_to(models_dir))


def _class_name(config: Path) -> str:
    """The class a diffusers (`_class_name`) or transformers (`architectures`) config names."""
    try:
        document = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    return document.get("_class_name") or (document.get("architectures") or [""])[0]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _pipeline_size(folder: Path) -> int:
    """Bytes of a pipeline folder's components: the folders model_index.json names (a hub repo may also
    hold single-file checkpoints and documents that the pipeline never reads)."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    components = [name for name, value in index.items() if isinstance(value, list) and value[0] is not None]
    return (folder / "model_index.json").stat().st_size + sum(
        _size(folder / name) for name in components if (folder / name).exists()
    )
