"""The SDXL engine on the tiny profile (CPU): shapes, determinism, batching, ControlNet, IP-Adapter,
LoRAs, prompts, schedulers, cancellation and bad inputs.

The tiny models' pictures are noise; these tests check the machinery: which inputs change the pixels,
and which must leave them exactly as they were. One engine is loaded for the module; 64x64 tiles and
2-4 steps keep every call well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline

from services.common.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted
from services.diffusion.engine import (
    ControlNetOptions,
    DiffusionEngine,
    EngineConfig,
    Img2ImgBatch,
    Img2ImgTileInput,
    ModelKind,
    Txt2ImgJob,
)
from services.diffusion.loras import BaseArchitecture, LoraType, ResolvedLora
from services.diffusion.profiles import TINY
from services.diffusion.schedulers import SchedulerName

SIZE = 64
LONG_PROMPT = ", ".join(["a highly detailed stone castle on a green hill at sunset"] * 10)  # > 77 tokens


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and far more steadily when other processes share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> DiffusionEngine:
    engine = DiffusionEngine(EngineConfig(TINY, tiny_models_dir, device="cpu"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def plain_engine(tiny_models_dir: Path) -> DiffusionEngine:
    """The same checkpoint without the IP-Adapter, keeping one LoRA loaded at most."""
    engine = DiffusionEngine(
        EngineConfig(TINY, tiny_models_dir, device="cpu", ip_adapter=False, max_loaded_loras=1)
    )
    engine.load()
    return engine


def picture(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A smooth random picture (noise would be too far from anything the VAE reproduces)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


def tile(seed: int, prompt: str = "a stone castle", **kwargs: object) -> Img2ImgTileInput:
    return Img2ImgTileInput(picture(seed), prompt, "blurry", seed, **kwargs)


def batch(*tiles: Img2ImgTileInput, **kwargs: object) -> Img2ImgBatch:
    options: dict[str, object] = {"strength": 0.5, "steps": 4, **kwargs}
    return Img2ImgBatch(list(tiles), **options)


def lora(models_dir: Path, name: str, weight: float) -> ResolvedLora:
    path = models_dir / TINY.loras / f"{name}.safetensors"
    return ResolvedLora(
        name=name,
        path=path,
        weight=weight,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        architecture=BaseArchitecture.SDXL,
        type=LoraType.UNSPECIFIED,
        trigger_words=(),
    )


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------------
# Loading


def test_load_shares_one_set_of_components(engine: DiffusionEngine) -> None:
    assert engine.loaded
    assert engine.device == torch.device("cpu")
    assert engine.dtype == torch.float32
    assert engine.cross_attention_dim == 96
    assert engine.model_name == "tiny-sdxl"
    models = engine._models
    assert models is not None
    pipes = (models.img2img, models.controlnet, models.txt2img)
    for component in ("unet", "vae", "text_encoder", "text_encoder_2", "image_encoder"):
        assert len({id(getattr(pipe, component)) for pipe in pipes}) == 1, component


def test_missing_weights_name_the_path_and_the_command(tmp_path: Path) -> None:
    engine = DiffusionEngine(EngineConfig(TINY, tmp_path, device="cpu"))
    with pytest.raises(FailedPrecondition) as caught:
        engine.load()
    message = caught.value.message
    assert str(tmp_path / "tiny-sdxl" / "model_index.json") in message
    assert str(tmp_path / "tiny-controlnet-tile") in message
    assert f"python -m services.diffusion.tiny {tmp_path}" in message
    assert not engine.loaded
    with pytest.raises(FailedPrecondition, match="not loaded"):
        engine.img2img(batch(tile(1)))


def test_unreadable_weights_are_a_failed_precondition(tiny_models_dir: Path, tmp_path: Path) -> None:
    for name in (TINY.sdxl, TINY.controlnet_tile, TINY.ip_adapter):
        shutil.copytree(tiny_models_dir / name, tmp_path / name)
    (tmp_path / TINY.sdxl / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(FailedPrecondition, match=f"cannot load the weights in {tmp_path / TINY.sdxl}"):
        DiffusionEngine(EngineConfig(TINY, tmp_path, device="cpu")).load()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tiny_models_dir: Path) -> None:
    with pytest.raises(FailedPrecondition, match="no CUDA device"):
        DiffusionEngine(EngineConfig(TINY, tiny_models_dir, device="cuda")).load()


def test_describe_models(engine: DiffusionEngine, plain_engine: DiffusionEngine) -> None:
    models = {model.kind: model for model in engine.describe_models()}
    assert list(models) == [
        ModelKind.CHECKPOINT,
        ModelKind.CONTROLNET,
        ModelKind.IP_ADAPTER,
        ModelKind.IMAGE_ENCODER,
    ]
    assert models[ModelKind.CHECKPOINT].architecture == "UNet2DConditionModel"
    assert models[ModelKind.CONTROLNET].architecture == "ControlNetModel"
    assert models[ModelKind.IMAGE_ENCODER].architecture == "CLIPVisionModelWithProjection"
    assert models[ModelKind.CHECKPOINT].source == "tiny-sdxl"
    assert all(model.loaded and model.size_bytes > 0 for model in models.values())
    without = {model.kind: model.loaded for model in plain_engine.describe_models()}
    assert not without[ModelKind.IP_ADAPTER]
    assert without[ModelKind.CHECKPOINT]


# ------------------------------------------------------------------------------------------------------
# Img2img basics


def test_outputs_match_the_tiles_and_repeat_bit_for_bit(engine: DiffusionEngine) -> None:
    request = batch(tile(1), tile(2))
    first = engine.img2img(request)
    assert [(out.shape, out.dtype) for out in first] == [((SIZE, SIZE, 3), np.uint8)] * 2
    assert same(first, engine.img2img(request))
    assert not np.array_equal(first[0], picture(1))  # it was re-drawn


def test_batched_matches_one_by_one_within_rounding(engine: DiffusionEngine) -> None:
    tiles = [tile(1), tile(2, prompt="a red brick wall"), tile(3)]
    batched = engine.img2img(batch(*tiles))
    for tile_, together in zip(tiles, batched, strict=True):
        (alone,) = engine.img2img(batch(tile_))
        difference = np.abs(alone.astype(int) - together.astype(int))
        assert difference.max() <= 1
        assert np.count_nonzero(difference) <= 0.01 * difference.size


def test_prompts_of_different_lengths_in_one_batch(engine: DiffusionEngine) -> None:
    tiles = [tile(1), tile(2, prompt=LONG_PROMPT), tile(3)]
    steps: list[tuple[int, int]] = []
    batched = engine.img2img(batch(*tiles), on_step=lambda step, total, _s: steps.append((step, total)))
    # Two sub-batches of two steps each, counted as one run.
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for tile_, together in zip(tiles, batched, strict=True):
        (alone,) = engine.img2img(batch(tile_))
        assert np.abs(alone.astype(int) - together.astype(int)).max() <= 1


def test_seeds_prompts_and_weighting_change_the_output(engine: DiffusionEngine) -> None:
    base = Img2ImgTileInput(picture(1), "a (stone:1.0) castle", "", 7)
    outputs = {
        "base": engine.img2img(batch(base)),
        "seed": engine.img2img(batch(replace(base, seed=8))),
        "weighted": engine.img2img(batch(replace(base, prompt="a (stone:1.5) castle"))),
        "long": engine.img2img(batch(replace(base, prompt=LONG_PROMPT))),
        "negative": engine.img2img(batch(replace(base, negative_prompt="blurry"))),
    }
    for name, output in outputs.items():
        if name != "base":
            assert not same(output, outputs["base"]), name


def test_generation_size_and_odd_sizes_keep_the_tile_size(engine: DiffusionEngine) -> None:
    odd = Img2ImgTileInput(picture(1, (44, 36)), "a castle", "", 1)
    (resized,) = engine.img2img(batch(odd, generation_size=96))
    (own_size,) = engine.img2img(batch(odd))
    assert resized.shape == own_size.shape == (36, 44, 3)
    assert not np.array_equal(resized, own_size)


def test_on_step_reports_every_step_in_order(engine: DiffusionEngine) -> None:
    calls: list[tuple[int, int, float]] = []
    engine.img2img(batch(tile(1), strength=0.75, steps=4), on_step=lambda *call: calls.append(call))
    assert [(step, total) for step, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(seconds >= 0 for _, _, seconds in calls)
    # floor(4 * 0.2) is 0: the last step of the schedule still runs.
    calls.clear()
    engine.img2img(batch(tile(1), strength=0.2, steps=4), on_step=lambda *call: calls.append(call))
    assert [(step, total) for step, total, _ in calls] == [(1, 1)]
    # 0.7 as it arrives in a proto float: 0.699999988; floor(10 * 0.7) is still 7.
    calls.clear()
    strength = float(np.float32(0.7))
    engine.img2img(batch(tile(1), strength=strength, steps=10), on_step=lambda *call: calls.append(call))
    assert calls[-1][:2] == (7, 7)


def test_cancel_mid_run_then_the_next_call_works(engine: DiffusionEngine) -> None:
    request = batch(tile(1), strength=1.0, steps=4)
    expected = engine.img2img(request)
    steps: list[int] = []
    with pytest.raises(Cancelled, match="after 1 of 4"):
        engine.img2img(request, on_step=lambda step, *_: steps.append(step), cancelled=lambda: bool(steps))
    assert steps == [1]
    with pytest.raises(Cancelled):
        engine.img2img(request, cancelled=lambda: True)
    assert same(engine.img2img(request), expected)


def test_out_of_memory_is_resource_exhausted(
    engine: DiffusionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    request = batch(tile(1), controlnet=ControlNetOptions(enabled=False))
    expected = engine.img2img(request)
    with monkeypatch.context() as patch:
        patch.setattr(StableDiffusionXLImg2ImgPipeline, "__call__", out_of_memory)
        with pytest.raises(ResourceExhausted, match=r"out of GPU memory diffusing 1 tile\(s\) of 64x64"):
            engine.img2img(request)
    assert same(engine.img2img(request), expected)


# ------------------------------------------------------------------------------------------------------
# ControlNet, IP-Adapter, LoRAs


def test_controlnet_and_its_control_image_change_the_output(engine: DiffusionEngine) -> None:
    on = engine.img2img(batch(tile(1)))
    off = engine.img2img(batch(tile(1), controlnet=ControlNetOptions(enabled=False)))
    other_control = engine.img2img(batch(tile(1, control_image=picture(9))))
    own_control = engine.img2img(batch(tile(1, control_image=picture(1))))
    weaker = engine.img2img(batch(tile(1), controlnet=ControlNetOptions(scale=0.2, guidance_end=0.5)))
    assert not same(on, off)
    assert not same(on, other_control)
    assert same(on, own_control)
    assert not same(on, weaker)


def test_ip_adapter_without_a_style_image_is_exactly_the_checkpoint(
    engine: DiffusionEngine, plain_engine: DiffusionEngine
) -> None:
    request = batch(tile(1), tile(2))
    baseline = plain_engine.img2img(request)
    assert same(engine.img2img(request), baseline)
    styled = engine.img2img(replace(request, ip_adapter_image=picture(5, (40, 30))))
    assert not same(styled, baseline)
    assert same(engine.img2img(replace(request, ip_adapter_image=picture(5), ip_adapter_scale=0.0)), baseline)
    assert same(engine.img2img(request), baseline)  # the scale went back to 0
    with pytest.raises(FailedPrecondition, match="without the IP-Adapter"):
        plain_engine.img2img(replace(request, ip_adapter_image=picture(5)))
    # Without guidance (cfg <= 1) only the positive halves of the image embeddings are used.
    unguided = replace(request, cfg_scale=1.0)
    assert same(engine.img2img(unguided), plain_engine.img2img(unguided))
    assert not same(engine.img2img(replace(unguided, ip_adapter_image=picture(5))), engine.img2img(unguided))


def test_lora_stacks_swap_exactly_and_only_when_they_change(
    engine: DiffusionEngine, tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    original = StableDiffusionXLImg2ImgPipeline.load_lora_weights

    def counting(self: StableDiffusionXLImg2ImgPipeline, *args: object, **kwargs: object) -> None:
        loads.append(str(kwargs["weight_name"]))
        original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLImg2ImgPipeline, "load_lora_weights", counting)
    style, detail = lora(tiny_models_dir, "tiny-style", 1.0), lora(tiny_models_dir, "tiny-detail", 0.8)
    request = batch(tile(1))
    baseline = engine.img2img(request)

    both = engine.img2img(replace(request, loras=[style, detail]))
    assert loads == ["tiny-style.safetensors", "tiny-detail.safetensors"]
    assert not same(both, baseline)
    assert same(engine.img2img(replace(request, loras=[style, detail])), both)
    only_detail = engine.img2img(replace(request, loras=[detail]))
    # tiny-detail patches the text encoders too: no prompt encoding made with it is reused without it.
    assert same(engine.img2img(request), baseline)
    only_style = engine.img2img(replace(request, loras=[style]))
    assert not same(only_detail, both)
    assert not same(only_style, both)
    assert not same(only_style, only_detail)
    assert same(engine.img2img(replace(request, loras=[style, detail])), both)
    assert same(engine.img2img(replace(request, loras=[replace(style, weight=0.0)])), baseline)
    assert same(engine.img2img(request), baseline)
    assert loads == ["tiny-style.safetensors", "tiny-detail.safetensors"]  # never reloaded
    assert engine.lora_loaded("tiny-style", style.sha256)

    # With a style image too: IP-Adapter and LoRA both patch attention, and both apply.
    styled = engine.img2img(replace(request, ip_adapter_image=picture(5)))
    styled_lora = engine.img2img(replace(request, ip_adapter_image=picture(5), loras=[style]))
    assert not same(styled_lora, styled)
    assert not same(styled_lora, only_style)

    # The same name with other contents (an overwrite): the old adapter goes, the new one loads.
    replaced = replace(detail, sha256="0" * 64)
    engine.img2img(replace(request, loras=[replaced]))
    assert loads[-1] == "tiny-detail.safetensors"
    assert len(loads) == 3
    assert engine.lora_loaded("tiny-detail", replaced.sha256)
    assert not engine.lora_loaded("tiny-detail", detail.sha256)
    assert same(engine.img2img(request), baseline)


def test_least_recently_used_loras_are_evicted(plain_engine: DiffusionEngine, tiny_models_dir: Path) -> None:
    style, detail = lora(tiny_models_dir, "tiny-style", 1.0), lora(tiny_models_dir, "tiny-detail", 1.0)
    request = batch(tile(1))
    baseline = plain_engine.img2img(request)
    with_style = plain_engine.img2img(replace(request, loras=[style]))
    plain_engine.img2img(replace(request, loras=[detail]))
    assert plain_engine.lora_loaded("tiny-detail", detail.sha256)
    assert not plain_engine.lora_loaded("tiny-style", style.sha256)  # max_loaded_loras=1
    assert same(plain_engine.img2img(replace(request, loras=[style])), with_style)
    plain_engine.img2img(replace(request, loras=[style, detail]))  # a stack over the limit still runs
    assert same(plain_engine.img2img(request), baseline)


def test_a_lora_that_cannot_be_loaded(engine: DiffusionEngine, tiny_models_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not safetensors at all")
    stack = [replace(lora(tiny_models_dir, "tiny-style", 1.0), name="broken", path=broken, sha256="1" * 64)]
    with pytest.raises(FailedPrecondition, match=r"sampling\.loras\[0\]: LoRA 'broken' cannot be loaded"):
        engine.img2img(batch(tile(1), loras=stack))
    assert not engine.lora_loaded("broken", "1" * 64)
    engine.img2img(batch(tile(1)))


# ------------------------------------------------------------------------------------------------------
# Schedulers


@pytest.mark.parametrize("name", [name.value for name in SchedulerName])
def test_every_scheduler_runs_or_is_refused(engine: DiffusionEngine, name: str) -> None:
    request = batch(tile(1), tile(2), scheduler=name, strength=1.0, steps=3)
    if name == SchedulerName.DPMPP_SDE_KARRAS and importlib.util.find_spec("torchsde") is None:
        with pytest.raises(FailedPrecondition, match="torchsde"):
            engine.img2img(request)
        return
    outputs = engine.img2img(request)
    assert [out.shape for out in outputs] == [(SIZE, SIZE, 3)] * 2
    assert same(engine.img2img(request), outputs)
    # Stochastic samplers draw from each tile's own generator.
    (alone,) = engine.img2img(replace(request, tiles=request.tiles[1:]))
    assert np.abs(alone.astype(int) - outputs[1].astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------------
# Txt2img


def test_txt2img(engine: DiffusionEngine, tiny_models_dir: Path) -> None:
    job = Txt2ImgJob("a stone castle", "", width=128, height=64, seed=3, steps=3)
    image = engine.txt2img(job)
    assert image.shape == (64, 128, 3)
    assert image.dtype == np.uint8
    assert np.array_equal(engine.txt2img(job), image)
    steps: list[int] = []
    engine.txt2img(job, on_step=lambda step, total, _s: steps.append(step))
    assert steps == [1, 2, 3]
    assert not np.array_equal(engine.txt2img(replace(job, seed=4)), image)
    styled = engine.txt2img(
        replace(job, ip_adapter_image=picture(5), loras=[lora(tiny_models_dir, "tiny-style", 1.0)])
    )
    assert styled.shape == image.shape
    assert not np.array_equal(styled, image)


# ------------------------------------------------------------------------------------------------------
# Memory settings


def test_memory_settings_load_and_run(tiny_models_dir: Path, engine: DiffusionEngine) -> None:
    lean = DiffusionEngine(
        EngineConfig(
            TINY,
            tiny_models_dir,
            device="cpu",
            attention_slicing=True,
            vae_tiling=True,
            channels_last=True,
            cpu_offload=True,
        )
    )
    lean.load()
    request = batch(tile(1), ip_adapter_image=picture(5))
    expected = engine.img2img(request)
    (output,) = lean.img2img(request)
    # The same computation in another memory layout and order: equal up to float rounding.
    assert np.abs(output.astype(int) - expected[0].astype(int)).max() <= 2


def test_float16_with_every_feature(tiny_models_dir: Path) -> None:
    """The dtype CUDA runs in (on the CPU here): weighted and long prompts, a LoRA on the text encoders,
    a style image, the VAE's float32 upcast."""
    half = DiffusionEngine(EngineConfig(TINY, tiny_models_dir, device="cpu", dtype="float16"))
    half.load()
    assert half.dtype == torch.float16
    request = batch(
        tile(1, prompt="a (stone:1.3) castle"),
        tile(2, prompt=LONG_PROMPT),
        ip_adapter_image=picture(5),
        loras=[lora(tiny_models_dir, "tiny-detail", 1.0)],
    )
    first = half.img2img(request)
    assert [(out.shape, out.dtype) for out in first] == [((SIZE, SIZE, 3), np.uint8)] * 2
    assert same(half.img2img(request), first)


# ------------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tiles": []}, "tiles"),
        ({"tiles": [tile(1), Img2ImgTileInput(picture(2, (64, 56)), "", "", 2)]}, "tiles[1].image"),
        ({"tiles": [Img2ImgTileInput(np.zeros((64, 64, 4), np.uint8), "", "", 1)]}, "tiles[0].image"),
        ({"tiles": [Img2ImgTileInput(np.zeros((8, 64, 3), np.uint8), "", "", 1)]}, "tiles[0].image"),
        ({"tiles": [Img2ImgTileInput(np.zeros((64, 64, 3), np.float32), "", "", 1)]}, "tiles[0].image"),
        ({"tiles": [tile(1, control_image=picture(2, (32, 32)))]}, "tiles[0].control_image"),
        ({"tiles": [Img2ImgTileInput(picture(1), "x" * 2001, "", 1)]}, "tiles[0].prompt"),
        ({"tiles": [Img2ImgTileInput(picture(1), '("a", "b").blend(1)', "", 1)]}, "tiles[0].prompt"),
        (
            {"tiles": [Img2ImgTileInput(picture(1), "", '("a", "b").blend(x, y)', 1)]},
            "tiles[0].negative_prompt",
        ),
        ({"tiles": [Img2ImgTileInput(picture(1), "", "", -1)]}, "tiles[0].seed"),
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"strength": float("nan")}, "strength"),
        ({"steps": 0}, "sampling.steps"),
        ({"steps": 151}, "sampling.steps"),
        ({"cfg_scale": 31.0}, "sampling.cfg_scale"),
        ({"scheduler": "karras"}, "sampling.scheduler"),
        ({"ip_adapter_scale": 2.5}, "sampling.ip_adapter.scale"),
        ({"ip_adapter_image": np.zeros((8, 8), np.uint8)}, "sampling.ip_adapter.image"),
        ({"controlnet": ControlNetOptions(scale=-0.1)}, "controlnet.scale"),
        (
            {"controlnet": ControlNetOptions(guidance_start=0.6, guidance_end=0.5)},
            "controlnet.guidance_start",
        ),
        ({"controlnet": ControlNetOptions(guidance_end=1.5)}, "controlnet.guidance_end"),
        ({"generation_size": 32}, "generation_size"),
    ],
)
def test_bad_img2img_inputs_name_their_field(
    engine: DiffusionEngine, change: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        engine.img2img(replace(batch(tile(1)), **change))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"width": 100}, "size.width"),
        ({"height": 32}, "size.height"),
        ({"steps": 0}, "sampling.steps"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_txt2img_inputs_name_their_field(
    engine: DiffusionEngine, change: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        engine.txt2img(replace(Txt2ImgJob("a castle", "", 64, 64, 1), **change))
    assert caught.value.field == field


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_in_float16_and_repeats(tiny_models_dir: Path) -> None:
    engine = DiffusionEngine(EngineConfig(TINY, tiny_models_dir))
    engine.load()
    assert engine.device.type == "cuda"
    assert engine.dtype == torch.float16
    request = batch(
        tile(1, prompt="a (stone:1.3) castle"),
        tile(2, prompt=LONG_PROMPT),
        ip_adapter_image=picture(5),
        loras=[lora(tiny_models_dir, "tiny-detail", 1.0)],
    )
    first = engine.img2img(request)
    assert [out.shape for out in first] == [(SIZE, SIZE, 3)] * 2
    assert same(engine.img2img(request), first)
