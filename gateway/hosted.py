"""TRANSFORM and REFERENCE jobs: one image through a provider chain.

    TRANSFORM   DECODE (alpha split off) -> TRANSFORM: the chain in order -> ENCODE (alpha back on, PNG)
    REFERENCE   DECODE -> REFERENCE: bridge Generate (DEPTH / EDIT) -> ENCODE

Provider chains are explicit. A TRANSFORM chain mixes "internal" — the diffusion service's Img2Img on
the whole image as one tile at its own size, ControlNet off — with hosted names, which go to the bridge's
Img2Img; consecutive hosted names travel as one bridge call, which falls back among them itself. The
chain stops at the first provider that answers. Every attempt (failed, skipped, successful) is logged
as a `provider_attempt` event as soon as it is known and kept in JobResult.attempts; JobResult.provider
and .model say who answered. With LoRAs, hosted providers are SKIPPED_UNSUPPORTED without a call.

Modes (gateway.proto TransformMode): MODIFY denoises 1 - reference_strength (default 0.5) at CFG 7.5 and
25 steps, with prompt enhancement (the configured quality phrases and the LoRAs' trigger words) unless
turned off; COPY denoises min(1 - reference_strength, 0.05) at CFG 1.0 and 15 steps with the prompt as
given and no negative prompt. A denoise of 0 (reference_strength 1.0) keeps the image: "internal"
answers with the input itself, hosted providers get their smallest strength, 0.01.

The chain and the image are settled at submit (`prepare_spec`): an empty chain becomes the configured
default (hosted names only while a bridge is configured and lists them), written into the stored spec;
a chain naming hosted providers without a bridge, and any REFERENCE without one, is UNAVAILABLE; an
image "internal" cannot take (a side outside 16..4096 px) is INVALID_ARGUMENT on `transform.image_id`.
Hosted answers of another size are resized (Lanczos) to the input's size.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from gateway.clients import BridgeClient
from gateway.pipeline import store_result
from gateway.settings import GatewaySettings
from gateway.specs import ImageInfo, SpecContext
from services.common.errors import InvalidArgument, TilesmithError, Unavailable
from services.common.interceptors import status_code_for
from tilesmith.images import decode_bytes, join_alpha, split_alpha, to_proto
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2
from tilesmith.v1 import gateway_pb2 as pb

__all__ = [
    "INTERNAL",
    "TransformParams",
    "default_chains",
    "prepare_spec",
    "refuse_unavailable",
    "run_reference",
    "run_transform",
    "transform_params",
]

INTERNAL = "internal"
_INTERNAL_SIDES = (16, 4096)  # Img2ImgTile
_MIN_HOSTED_STRENGTH = 0.01
_SEED_MODULO = 2**32


def parse_chain(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


# ---------------------------------------------------------------------------------------------------
# At the door
# ---------------------------------------------------------------------------------------------------


def refuse_unavailable(spec: pb.JobSpec, *, bridge: bool) -> None:
    """UNAVAILABLE for a TRANSFORM naming hosted providers, or any REFERENCE, while no bridge is configured.

    Runs before the spec's own checks, which would call such names unknown.
    """
    which = spec.WhichOneof("spec")
    if bridge or which not in ("transform", "reference"):
        return
    if which == "reference":
        raise Unavailable(
            "reference: REFERENCE jobs run on hosted providers and no bridge is configured on this "
            "gateway (TILESMITH_GATEWAY_BRIDGE_ADDR)"
        )
    for i, name in enumerate(spec.transform.provider_chain):
        if name != INTERNAL:
            raise Unavailable(
                f"transform.provider_chain[{i}]: {name!r} is a hosted provider and no bridge is configured "
                "on this gateway (TILESMITH_GATEWAY_BRIDGE_ADDR)"
            )


def _default_transform_chain(settings: GatewaySettings, ctx: SpecContext) -> list[str]:
    return [n for n in parse_chain(settings.transform_chain) if n == INTERNAL or n in ctx.hosted_providers]


def default_chains(settings: GatewaySettings, ctx: SpecContext) -> list[bridge_pb2.ProviderChain]:
    """The chains an empty TRANSFORM / REFERENCE provider_chain gets (ListProviders.default_chains)."""
    chains = [
        bridge_pb2.ProviderChain(
            capability=bridge_pb2.PROVIDER_CAPABILITY_IMAGE_TO_IMAGE,
            providers=_default_transform_chain(settings, ctx),
        )
    ]
    reference = [n for n in parse_chain(settings.reference_chain) if n in ctx.hosted_providers]
    if reference:
        for capability in (
            bridge_pb2.PROVIDER_CAPABILITY_DEPTH_TO_IMAGE,
            bridge_pb2.PROVIDER_CAPABILITY_IMAGE_EDIT,
        ):
            chains.append(bridge_pb2.ProviderChain(capability=capability, providers=reference))
    return chains


def prepare_spec(stored: pb.JobSpec, settings: GatewaySettings, ctx: SpecContext) -> None:
    """Settle a validated TRANSFORM / REFERENCE spec's chain in place, and check its image for "internal"."""
    which = stored.WhichOneof("spec")
    if which == "transform":
        spec = stored.transform
        if not spec.provider_chain:
            chain = _default_transform_chain(settings, ctx)
            if not chain:
                raise Unavailable(
                    f"transform.provider_chain: the default TRANSFORM chain {settings.transform_chain!r} has "
                    "no provider this gateway can reach; name one"
                )
            spec.provider_chain.extend(chain)
        if INTERNAL in spec.provider_chain:
            info: ImageInfo = ctx.image_info(spec.image_id)
            low, high = _INTERNAL_SIDES
            if not (low <= info.width <= high and low <= info.height <= high):
                raise InvalidArgument(
                    "transform.image_id",
                    f'the "internal" provider re-draws the whole image at its own size, {low}..{high} px a '
                    f"side; this image is {info.width}x{info.height} (resize it, or name hosted providers only)",
                )
    elif which == "reference" and not stored.reference.provider_chain:
        chain = [n for n in parse_chain(settings.reference_chain) if n in ctx.hosted_providers]
        stored.reference.provider_chain.extend(chain)  # empty: the bridge's chain for the mode


# ---------------------------------------------------------------------------------------------------
# TRANSFORM parameters
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformParams:
    """What a TRANSFORM spec resolves to (gateway.proto TransformMode).

    Attributes:
        denoise: 0..1; the img2img strength.
        steps: Scheduler steps.
        cfg_scale: Guidance.
        prompt: The prompt sent (enhanced in MODIFY unless turned off).
        negative_prompt: Empty in COPY.
        seed: The job seed (hosted providers get it modulo 2**32).
    """

    denoise: float
    steps: int
    cfg_scale: float
    prompt: str
    negative_prompt: str
    seed: int


def transform_params(
    spec: pb.TransformSpec, settings: GatewaySettings, loras: diffusion_pb2.ListLorasResponse | None
) -> TransformParams:
    """The sampling of a stored (validated, seed written) TRANSFORM spec."""
    keep = spec.reference_strength if spec.HasField("reference_strength") else 0.5
    if spec.mode == pb.TRANSFORM_MODE_COPY:
        return TransformParams(min(1.0 - keep, 0.05), 15, 1.0, spec.prompt.strip(), "", spec.seed)
    parts = [spec.prompt.strip()]
    if not spec.HasField("enhance_prompt") or spec.enhance_prompt:
        library = {info.name: info for info in (loras.loras if loras is not None else [])}
        for ref in spec.loras:
            parts.extend(library[ref.name].trigger_words if ref.name in library else [])
        parts.append(settings.transform_quality_phrases.strip())
    return TransformParams(
        denoise=1.0 - keep,
        steps=spec.steps if spec.HasField("steps") else 25,
        cfg_scale=spec.cfg_scale if spec.HasField("cfg_scale") else 7.5,
        prompt=", ".join(part for part in parts if part),
        negative_prompt=spec.negative_prompt,
        seed=spec.seed,
    )


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def _failed(
    provider: str, exc: TilesmithError, seconds: float, model: str = ""
) -> bridge_pb2.ProviderAttempt:
    return bridge_pb2.ProviderAttempt(
        provider=provider,
        model=model,
        outcome=bridge_pb2.ATTEMPT_OUTCOME_FAILED,
        status_code=status_code_for(exc).value[0],
        message=str(getattr(exc, "message", exc))[:500],
        duration_seconds=seconds,
    )


def _groups(chain: list[str]) -> list[list[str]]:
    """ "internal" alone, consecutive hosted names together (one bridge call falls back among them)."""
    groups: list[list[str]] = []
    for name in chain:
        if name == INTERNAL or not groups or groups[-1] == [INTERNAL]:
            groups.append([name])
        else:
            groups[-1].append(name)
    return groups


class _Attempts:
    """Every provider attempt of a job, logged as events the moment each is known."""

    def __init__(self, ctx) -> None:  # ctx: gateway.pipeline.PipelineContext
        self.ctx = ctx
        self.all: list[bridge_pb2.ProviderAttempt] = []

    async def add(self, attempt: bridge_pb2.ProviderAttempt) -> None:
        self.all.append(attempt)
        await self.ctx.emitter.log(provider_attempt=attempt)

    def summary(self) -> str:
        return "; ".join(
            f"{a.provider}: {bridge_pb2.AttemptOutcome.Name(a.outcome).removeprefix('ATTEMPT_OUTCOME_').lower()}"
            + (f" ({a.message})" if a.message else "")
            for a in self.all
        )


async def _hosted(
    ctx, attempts: _Attempts, names: list[str], call
) -> tuple[np.ndarray, bridge_pb2.HostedImageResult] | None:
    """One bridge call over `names`; None when every provider failed (their attempts are logged)."""
    bridge: BridgeClient | None = ctx.backends.bridge
    streamed: list[bridge_pb2.ProviderAttempt] = []

    async def on_attempt(attempt: bridge_pb2.ProviderAttempt) -> None:
        streamed.append(attempt)
        await attempts.add(attempt)

    started = time.monotonic()
    if bridge is None:
        for name in names:
            await attempts.add(_failed(name, Unavailable("no bridge is configured on this gateway"), 0.0))
        return None
    try:
        pixels, result = await call(bridge, on_attempt)
    except TilesmithError as exc:
        # Providers the bridge did not report (it was unreachable, or refused the call as a whole).
        reported = {a.provider for a in streamed}
        missing = [n for n in names if n not in reported] or ([] if streamed else ["bridge"])
        for name in missing:
            await attempts.add(_failed(name, exc, time.monotonic() - started))
        return None
    for attempt in result.attempts[len(streamed) :]:  # the successful one (and any not streamed)
        await attempts.add(attempt)
    return pixels, result


async def _internal(
    ctx, spec: pb.TransformSpec, rgb: np.ndarray, params: TransformParams
) -> tuple[np.ndarray, str]:
    """The diffusion service's Img2Img on the whole image as one tile, ControlNet off."""
    if params.denoise <= 0.0:
        return rgb, ""
    request = diffusion_pb2.Img2ImgRequest(
        tiles=[
            diffusion_pb2.Img2ImgTile(
                index=0,
                image=to_proto(rgb, "raw"),
                prompt=params.prompt,
                negative_prompt=params.negative_prompt,
                seed=params.seed,
            )
        ],
        strength=params.denoise,
        sampling=diffusion_pb2.SamplingParams(
            steps=params.steps,
            cfg_scale=params.cfg_scale,
            scheduler=spec.scheduler,
            loras=list(spec.loras),
        ),
        controlnet=diffusion_pb2.ControlNetSettings(enabled=False),
    )
    answer = await ctx.backends.diffusion.img2img(
        request, on_step=lambda step, total: ctx.emitter.step(pb.JOB_STAGE_TRANSFORM, step, total, [])
    )
    return answer.tiles[0], answer.model


async def run_transform(ctx, spec: pb.TransformSpec) -> pb.JobResult:
    """A TRANSFORM job from its stored spec (seed and chain written in at submit)."""
    # 1. Decode; alpha is split off and re-attached at the end.
    async with ctx.emitter.stage(pb.JOB_STAGE_DECODE, spec.image_id):
        data = await asyncio.to_thread(ctx.store.read_image, spec.image_id)
        source = await asyncio.to_thread(
            decode_bytes, data, ctx.settings.max_pixels, field="transform.image_id"
        )
        rgb, alpha = split_alpha(np.ascontiguousarray(source))
        rgb = np.ascontiguousarray(rgb)
    params = transform_params(spec, ctx.settings, ctx.spec_context.loras)
    attempts = _Attempts(ctx)
    chain = list(spec.provider_chain)

    # 2. The chain, in order, until a provider answers.
    answer: tuple[np.ndarray, str, str] | None = None
    mode = "copy" if spec.mode == pb.TRANSFORM_MODE_COPY else "modify"
    async with ctx.emitter.stage(
        pb.JOB_STAGE_TRANSFORM, f"{mode}, denoise {params.denoise:g}, {','.join(chain)}"
    ):
        for group in _groups(chain):
            if group == [INTERNAL]:
                started = time.monotonic()
                try:
                    pixels, model = await _internal(ctx, spec, rgb, params)
                except TilesmithError as exc:
                    await attempts.add(_failed(INTERNAL, exc, time.monotonic() - started))
                    continue
                await attempts.add(
                    bridge_pb2.ProviderAttempt(
                        provider=INTERNAL,
                        model=model,
                        outcome=bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
                        duration_seconds=time.monotonic() - started,
                    )
                )
                answer = (pixels, INTERNAL, model)
                break
            if spec.loras:
                for name in group:
                    await attempts.add(
                        bridge_pb2.ProviderAttempt(
                            provider=name,
                            outcome=bridge_pb2.ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED,
                            message="LoRAs run only on the internal provider",
                        )
                    )
                continue
            hosted_params = bridge_pb2.HostedImg2ImgParams(
                prompt=params.prompt or "the same image",
                negative_prompt=params.negative_prompt,
                strength=max(params.denoise, _MIN_HOSTED_STRENGTH),
                seed=params.seed % _SEED_MODULO,
                steps=params.steps,
                guidance_scale=params.cfg_scale,
                output_encoding=common_pb2.IMAGE_ENCODING_PNG,
                provider_chain=group,
            )
            image = await asyncio.to_thread(to_proto, rgb, "png")
            hosted = await _hosted(
                ctx,
                attempts,
                group,
                lambda bridge, on_attempt, p=hosted_params, i=image: bridge.img2img(p, i, on_attempt),
            )
            if hosted is not None:
                pixels, result = hosted
                answer = (np.ascontiguousarray(pixels[..., :3]), result.provider, result.model)
                break
        if answer is None:
            raise Unavailable(f"every provider of the TRANSFORM chain failed: {attempts.summary()}")

    # 3. The input's size, the alpha back on, stored.
    pixels, provider, model = answer
    size = (rgb.shape[1], rgb.shape[0])
    if (pixels.shape[1], pixels.shape[0]) != size:
        pixels = await ctx.backends.tiling.resize(pixels, size)
    final = join_alpha(np.ascontiguousarray(pixels), alpha)
    return await store_result(ctx, final, provider=provider, model=model, attempts=attempts.all)


async def run_reference(ctx, spec: pb.ReferenceSpec) -> pb.JobResult:
    """A REFERENCE job: bridge Generate from the reference image (DEPTH by default, or EDIT)."""
    # 1. The reference, as uploaded (PNG / JPEG / WebP).
    async with ctx.emitter.stage(pb.JOB_STAGE_DECODE, spec.reference_image_id):
        record = await asyncio.to_thread(ctx.store.get_image, spec.reference_image_id)
        data = await asyncio.to_thread(ctx.store.read_image, spec.reference_image_id)
        reference = common_pb2.Image(encoding=record.meta.encoding, data=data)
    mode = spec.mode or bridge_pb2.HOSTED_GENERATION_MODE_DEPTH
    params = bridge_pb2.GenerateParams(
        prompt=spec.prompt,
        mode=mode,
        model=spec.model,
        loras=list(spec.loras),
        output_encoding=common_pb2.IMAGE_ENCODING_PNG,
        provider_chain=list(spec.provider_chain),
    )
    for name in ("attributes", "size", "seed", "steps", "guidance_scale"):
        if spec.HasField(name):
            value = getattr(spec, name)
            if isinstance(value, (int, float)):
                setattr(params, name, value)
            else:
                getattr(params, name).CopyFrom(value)

    # 2. The bridge's chain (or the stored one).
    attempts = _Attempts(ctx)
    chain = ",".join(spec.provider_chain) or "the bridge's default chain"
    detail = f"{bridge_pb2.HostedGenerationMode.Name(mode).removeprefix('HOSTED_GENERATION_MODE_').lower()}, {chain}"
    async with ctx.emitter.stage(pb.JOB_STAGE_REFERENCE, detail):
        hosted = await _hosted(
            ctx,
            attempts,
            list(spec.provider_chain),
            lambda bridge, on_attempt: bridge.generate(params, reference, on_attempt),
        )
        if hosted is None:
            raise Unavailable(f"every provider of the REFERENCE chain failed: {attempts.summary()}")
    pixels, result = hosted
    if not spec.HasField("seed") and result.HasField("seed"):  # the provider picked it: Job.seed reports it
        await asyncio.to_thread(ctx.store.set_seed, ctx.job_id, result.seed)
    return await store_result(
        ctx, np.ascontiguousarray(pixels), provider=result.provider, model=result.model, attempts=attempts.all
    )
