"""The tiny profile's models load with the production loaders and run; adapters act and undo exactly.

Also: the builder's cache (stamp, force, version change, concurrent callers, files others put in `loras/`)
and its determinism (two builds, same bytes).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image
from safetensors import safe_open
from spandrel import ModelLoader
from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPTokenizer

from services.diffusion import tiny
from services.diffusion.profiles import TINY
from services.diffusion.tiny import LORA_LIBRARY, STAMP_NAME, build_tiny_models


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning
    barriers made one 4-step img2img call take up to 9 s instead of 0.1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _noise_image(seed: int, size: int = 128) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def img2img(tiny_models_dir: Path) -> StableDiffusionXLImg2ImgPipeline:
    pipeline = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny_models_dir / TINY.sdxl)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _redraw(pipeline: StableDiffusionXLImg2ImgPipeline, seed: int = 7, **kwargs: object) -> np.ndarray:
    result = pipeline(
        prompt="a stone castle, tinystyle",
        image=_noise_image(0),
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kwargs,
    )
    return result.images


# --- SDXL -------------------------------------------------------------------------------------------------


def test_sdxl_folder_has_the_real_layout(tiny_models_dir: Path) -> None:
    folder = tiny_models_dir / TINY.sdxl
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    for tokenizer in ("tokenizer", "tokenizer_2"):
        assert {path.name for path in (folder / tokenizer).iterdir()} == {
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
        }
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text_time"
    assert unet["cross_attention_dim"] == 32 + 64
    assert unet["projection_class_embeddings_input_dim"] == 32 + 6 * unet["addition_time_embed_dim"]


def test_tokenizers_take_long_weighted_prompts(tiny_models_dir: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(tiny_models_dir / TINY.sdxl / "tokenizer")
    prompt = "(masterpiece:1.2), a [blurry] stone castle, Ünïcödé 城, tinystyle, " * 8
    ids = tokenizer(prompt, truncation=False).input_ids
    assert len(ids) > 77
    # The unknown token is <|endoftext|>: it may only close the sequence.
    assert tokenizer.eos_token_id not in ids[:-1]
    assert "".join(tokenizer.tokenize("(tinystyle:1.2)")) == "(</w>tinystyle</w>:</w>1</w>.</w>2</w>)</w>"


def test_img2img_runs_and_is_deterministic(img2img: StableDiffusionXLImg2ImgPipeline) -> None:
    first = _redraw(img2img)
    assert first.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(_redraw(img2img), first)
    assert not np.array_equal(_redraw(img2img, seed=8), first)


def test_txt2img_loads_from_the_same_folder(tiny_models_dir: Path) -> None:
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_models_dir / TINY.sdxl)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline(
        prompt="a castle",
        height=64,
        width=128,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).images
    assert image.shape == (1, 64, 128, 3)
    assert pipeline.vae_scale_factor == 8


# --- Adapters ---------------------------------------------------------------------------------------------


def test_controlnet_tile_follows_the_control_image(
    tiny_models_dir: Path, img2img: StableDiffusionXLImg2ImgPipeline
) -> None:
    controlnet = ControlNetModel.from_pretrained(tiny_models_dir / TINY.controlnet_tile)
    pipeline = StableDiffusionXLControlNetImg2ImgPipeline.from_pipe(img2img, controlnet=controlnet)
    pipeline.set_progress_bar_config(disable=True)

    tile = _redraw(pipeline, control_image=_noise_image(0), controlnet_conditioning_scale=0.7)
    other = _redraw(pipeline, control_image=_noise_image(1), controlnet_conditioning_scale=0.7)
    off = _redraw(pipeline, control_image=_noise_image(1), controlnet_conditioning_scale=0.0)

    assert np.abs(tile - other).max() > 0.05
    np.testing.assert_array_equal(off, _redraw(img2img))


def test_ip_adapter_acts_and_unloads_exactly(
    tiny_models_dir: Path, img2img: StableDiffusionXLImg2ImgPipeline
) -> None:
    base = _redraw(img2img)
    img2img.load_ip_adapter(
        str(tiny_models_dir / TINY.ip_adapter),
        subfolder=TINY.ip_adapter_subfolder,
        weight_name=TINY.ip_adapter_weight,
        image_encoder_folder=TINY.ip_adapter_image_encoder,
    )
    try:
        assert img2img.image_encoder is not None
        assert img2img.feature_extractor is not None  # made by diffusers from the encoder's image size
        style = _noise_image(3, size=48)
        img2img.set_ip_adapter_scale(0.0)
        np.testing.assert_array_equal(_redraw(img2img, ip_adapter_image=style), base)
        img2img.set_ip_adapter_scale(0.6)
        assert np.abs(_redraw(img2img, ip_adapter_image=style) - base).max() > 0.05
    finally:
        img2img.unload_ip_adapter()
    np.testing.assert_array_equal(_redraw(img2img), base)


def test_loras_load_stack_and_undo_exactly(
    tiny_models_dir: Path, img2img: StableDiffusionXLImg2ImgPipeline
) -> None:
    base = _redraw(img2img)
    for name in ("tiny-style", "tiny-detail"):
        img2img.load_lora_weights(
            tiny_models_dir / TINY.loras, weight_name=f"{name}.safetensors", adapter_name=name
        )
    try:
        # The kohya file carries text-encoder layers too.
        assert img2img.get_list_adapters() == {
            "unet": ["tiny-style", "tiny-detail"],
            "text_encoder": ["tiny-detail"],
            "text_encoder_2": ["tiny-detail"],
        }
        img2img.set_adapters(["tiny-style"], [1.0])
        style = _redraw(img2img)
        img2img.set_adapters(["tiny-detail"], [1.0])
        detail = _redraw(img2img)
        img2img.set_adapters(["tiny-style", "tiny-detail"], [0.8, 1.2])
        stacked = _redraw(img2img)
        for changed in (style, detail, stacked):
            assert np.abs(changed - base).max() > 0.05
        assert np.abs(stacked - style).max() > 0.05

        img2img.set_adapters(["tiny-style", "tiny-detail"], [0.0, 0.0])
        np.testing.assert_array_equal(_redraw(img2img), base)
    finally:
        img2img.unload_lora_weights()
    np.testing.assert_array_equal(_redraw(img2img), base)


def _input_widths(path: Path, suffix: str) -> set[int]:
    with safe_open(path, framework="pt") as file:
        names = file.keys()
        return {file.get_slice(name).get_shape()[1] for name in names if name.endswith(suffix)}


def test_lora_files_carry_their_base_architecture_in_their_shapes(tiny_models_dir: Path) -> None:
    loras = tiny_models_dir / TINY.loras
    assert _input_widths(loras / "sd15-style.safetensors", "attn2_to_k.lora_down.weight") == {768}
    # The tiny SDXL's cross-attention width is 96 (2048 in real SDXL).
    assert _input_widths(loras / "tiny-detail.safetensors", "attn2_to_k.lora_down.weight") == {96}
    assert _input_widths(loras / "tiny-style.safetensors", "attn2.to_k.lora.down.weight") == {96}
    with safe_open(loras / "tiny-detail.safetensors", framework="pt") as file:
        names = file.keys()
    assert any(name.startswith("lora_te2_") for name in names)
    assert json.loads((loras / "library.json").read_text()) == LORA_LIBRARY


# --- Upscaler and captioner -------------------------------------------------------------------------------


def test_spandrel_detects_the_esrgan_x4(tiny_models_dir: Path) -> None:
    descriptor = ModelLoader().load_from_file(TINY.upscaler_path(tiny_models_dir))
    assert descriptor.architecture.id == "ESRGAN"
    assert descriptor.scale == 4
    with torch.no_grad():
        upscaled = descriptor.model.eval()(torch.rand(1, 3, 16, 16))
    assert upscaled.shape == (1, 3, 64, 64)


def test_qwen3_vl_captions_deterministically(tiny_models_dir: Path) -> None:
    folder = tiny_models_dir / TINY.captioner
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this tile."}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[prompt], images=[_noise_image(4, size=96)], return_tensors="pt")
    # 96 x 96 pixels: 6 x 6 patches of 16, merged 2 x 2 -> 9 image tokens.
    assert (inputs.input_ids == model.config.image_token_id).sum() == 9

    first = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    second = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert first.shape[1] > inputs.input_ids.shape[1]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert isinstance(processor.batch_decode(first[:, inputs.input_ids.shape[1] :])[0], str)


# --- The builder ------------------------------------------------------------------------------------------


def test_two_builds_write_the_same_bytes(tiny_models_dir: Path, tmp_path: Path) -> None:
    rebuilt = build_tiny_models(tmp_path / "models")

    def digests(root: Path) -> dict[str, str]:
        return {
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != ".tiny-models.lock"
        }

    assert digests(rebuilt) == digests(tiny_models_dir), (
        "a fresh build differs from the cached one: the builder is not deterministic, "
        "or it changed without a BUILDER_VERSION bump"
    )


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the (slow) model builder with one that writes a marker per component folder."""
    builds: list[Path] = []

    def fake_build(root: Path) -> None:
        builds.append(root)
        for folder in (TINY.sdxl, TINY.loras):
            (root / folder).mkdir()
            (root / folder / "built").write_text(str(len(builds)))

    monkeypatch.setattr(tiny, "_build_into", fake_build)
    return builds


def test_builds_once_then_trusts_the_stamp(counted_builds: list[Path], tmp_path: Path) -> None:
    build_tiny_models(tmp_path)
    build_tiny_models(tmp_path)
    assert len(counted_builds) == 1

    build_tiny_models(tmp_path, force=True)
    assert len(counted_builds) == 2

    stamp = tmp_path / STAMP_NAME
    stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "builder_version": 0}))
    build_tiny_models(tmp_path)
    assert len(counted_builds) == 3
    assert (tmp_path / TINY.sdxl / "built").read_text() == "3"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".tiny-build-")]


def test_a_rebuild_keeps_files_others_put_in_the_lora_folder(
    counted_builds: list[Path], tmp_path: Path
) -> None:
    build_tiny_models(tmp_path)
    (tmp_path / TINY.loras / "uploaded.safetensors").write_bytes(b"x")
    (tmp_path / TINY.sdxl / "stale").write_text("old")

    build_tiny_models(tmp_path, force=True)

    assert (tmp_path / TINY.loras / "uploaded.safetensors").exists()
    assert (tmp_path / TINY.loras / "built").read_text() == "2"
    assert not (tmp_path / TINY.sdxl / "stale").exists()


def test_concurrent_callers_build_once(
    counted_builds: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_build = tiny._build_into
    started = threading.Event()

    def build_slowly(root: Path) -> None:
        started.set()
        time.sleep(0.3)
        slow_build(root)

    monkeypatch.setattr(tiny, "_build_into", build_slowly)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(build_tiny_models(tmp_path))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert started.is_set()
    assert results == [tmp_path] * 4
    assert len(counted_builds) == 1
