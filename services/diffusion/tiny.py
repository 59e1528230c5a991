"""The tiny profile's models: random weights, real architectures, built here in seconds.

Every model of the `tiny` profile (`profiles.TINY`) is the real class at a tiny size with seeded random
weights, saved with `save_pretrained` (or in the file format its loader reads), so the services load them
with exactly the code they use for production weights. **The pictures and captions these models make are
noise: they prove the machinery (loading, pipelines, adapters, LoRA stacking, batching, determinism),
never quality.**

    <models_dir>/
      tiny-profile.json             stamp: builder version and library versions of the build
      tiny-sdxl/                    diffusers SDXL pipeline folder: UNet (text_time addition embedding,
                                    cross-attention width 96), 8x VAE, CLIP text encoders of 32 and 64
                                    (with projection), CLIP tokenizers as vocab.json + merges.txt, Euler
                                    scheduler with SDXL's schedule
      tiny-controlnet-tile/         ControlNetModel.from_unet(that UNet), zero layers randomised
      tiny-ip-adapter/              h94/IP-Adapter layout
        sdxl_models/ip-adapter_sdxl_vit-h.safetensors
        models/image_encoder/       CLIPVisionModelWithProjection
      loras/
        tiny-style.safetensors      peft LoRA on the UNet's attention, saved with save_lora_weights
        tiny-detail.safetensors     kohya format (lora_unet_* / lora_te1_* / lora_te2_*)
        sd15-style.safetensors      kohya keys with SD1.5's shapes (attn2 to_k/to_v input width 768)
        library.json                types, weight ranges and trigger words of the two SDXL LoRAs
      upscalers/tiny-esrgan-x4.safetensors   ESRGAN (RRDBNet) x4 state dict, spandrel's own class
      tiny-qwen3-vl/                Qwen3-VL for AutoProcessor + AutoModelForImageTextToText

`build_tiny_models(dir)` builds the folder once and then only checks the stamp: it rebuilds when the stamp
is missing or names another builder version or other library versions. Concurrent callers (parallel test
processes) are safe: the build holds an exclusive `fcntl` lock on `<dir>/.tiny-models.lock`, is written into
a staging folder inside `<dir>` and moved into place with renames, and the stamp is written last, so a
caller that sees a current stamp sees complete models. A rebuild replaces only the entries above.

Builds are deterministic: every component seeds its own generator, and the tokenizers' merges come from a
small BPE learner here whose ties break alphabetically (`tokenizers`' BpeTrainer breaks ties in hash
order, so its merges differ from run to run). Two builds give the same bytes with the same library versions.

`default_cache_dir()` is where tests and `make` targets share one build: `$TILESMITH_TINY_CACHE`, else
`<repo>/.cache/tiny-models` (git-ignored). Treat it as read-only; a test that writes into the models folder
(LoRA uploads, library edits) copies it first.

    python -m services.diffusion.tiny [DIR] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

from services.common.logging import configure_logging
from services.diffusion.profiles import TINY

__all__ = [
    "BUILDER_VERSION",
    "LORA_LIBRARY",
    "STAMP_NAME",
    "build_controlnet",
    "build_esrgan",
    "build_ip_adapter",
    "build_loras",
    "build_qwen3_vl",
    "build_sdxl",
    "build_tiny_models",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

BUILDER_VERSION = 2
"""Bump on any change to what the builder writes: cached folders with another version are rebuilt."""

STAMP_NAME = "tiny-profile.json"
_LOCK_NAME = ".tiny-models.lock"
_STAGING_PREFIX = ".tiny-build-"
_STAMPED_LIBRARIES = ("torch", "diffusers", "transformers", "peft", "safetensors", "spandrel", "tokenizers")

STYLE_LORA = "tiny-style"
DETAIL_LORA = "tiny-detail"
SD15_LORA = "sd15-style"
LORA_LIBRARY = {
    "loras": {
        STYLE_LORA: {"type": "style", "min_weight": 0.0, "max_weight": 1.5, "trigger_words": ["tinystyle"]},
        DETAIL_LORA: {
            "type": "detail",
            "min_weight": -1.0,
            "max_weight": 2.0,
            "trigger_words": ["tinydetail"],
        },
    }
}
"""What `loras/library.json` holds (the SD1.5-shaped LoRA has no entry)."""

# Text the tokenizers' merges are learned from: prompt and caption words, so common words are one token.
_CORPUS = """
masterpiece, best quality, highly detailed illustration of a stone castle on a green hill at sunset,
a photo of a cat sitting on a wooden table, game asset, sprite sheet, pixel art, seamless texture,
watercolor painting of a forest with tall trees and a river, oil painting, sharp focus, soft light,
character portrait, fantasy armor, blue sky with white clouds, red brick wall, grass and flowers,
low quality, blurry, jpeg artifacts, worst quality, lowres, text, watermark, signature, ugly,
tinystyle, tinydetail, anime style, concept art, digital painting, trending, cinematic lighting,
describe this image. the picture shows a tile with a pattern of stones and moss in the shade.
"""

# SDXL's UNet conditioning: the text_time embedding takes the pooled text embedding of text_encoder_2
# (its projection width) and 6 time ids (original size, crop top-left, target size).
_TEXT_WIDTHS = (32, 64)  # text_encoder, text_encoder_2 hidden sizes: concatenated = cross-attention width
_POOLED_WIDTH = 32  # text_encoder_2 projection_dim
_TIME_EMBED_WIDTH = 8  # addition_time_embed_dim

_CLIP_BOS, _CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
_QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen3-VL's message format for text, image and video content (a subset of the real template: no tools).
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_cache_dir() -> Path:
    """Where tests share one build: `$TILESMITH_TINY_CACHE`, else `<repo>/.cache/tiny-models`."""
    configured = os.environ.get("TILESMITH_TINY_CACHE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".cache" / "tiny-models"


def build_tiny_models(models_dir: Path, *, force: bool = False) -> Path:
    """Build the tiny profile's models under `models_dir` unless its stamp is current; return `models_dir`.

    Args:
        models_dir: The models folder (created if missing). Entries other than the tiny profile's are
            left alone.
        force: Rebuild even when the stamp is current.
    """
    # 1. Fast path: a current stamp means a complete build (the stamp is written last).
    models_dir = Path(models_dir)
    if not force and _stamp_is_current(models_dir):
        return models_dir

    # 2. One builder at a time; whoever waited finds the stamp written and returns.
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(models_dir / _LOCK_NAME):
        if not force and _stamp_is_current(models_dir):
            return models_dir
        (models_dir / STAMP_NAME).unlink(missing_ok=True)
        for leftover in models_dir.glob(f"{_STAGING_PREFIX}*"):  # from a build that was killed
            shutil.rmtree(leftover)

        # 3. Build everything into a staging folder on the same filesystem, then move it into place.
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=models_dir))
        try:
            started = time.perf_counter()
            _build_into(staging)
            _install(staging, models_dir)
            _write_atomically(models_dir / STAMP_NAME, json.dumps(_stamp(), indent=2, sort_keys=True) + "\n")
            log.info("built the tiny models in %s in %.1f s", models_dir, time.perf_counter() - started)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return models_dir


def _build_into(root: Path) -> None:
    """Write every component of the tiny profile under `root` (the adapters read the SDXL folder)."""
    sdxl = root / TINY.sdxl
    build_sdxl(sdxl)
    build_controlnet(sdxl, root / TINY.controlnet_tile)
    build_ip_adapter(
        sdxl,
        root / TINY.ip_adapter / TINY.ip_adapter_subfolder / TINY.ip_adapter_weight,
        root / TINY.ip_adapter / TINY.ip_adapter_image_encoder,
    )
    build_loras(sdxl, root / TINY.loras)
    build_esrgan(TINY.upscaler_path(root))
    build_qwen3_vl(root / TINY.captioner)


# --------------------------------------------------------------------------------------------------------
# Components


def build_sdxl(out: Path) -> None:
    """An SDXL pipeline folder: UNet (32, 64) with text_time conditioning, 8x VAE, two CLIP text encoders.

    The tokenizer folders hold `vocab.json` + `merges.txt` + `tokenizer_config.json` like the real SDXL
    repositories (no `tokenizer.json`), so loading them exercises the same path as production.
    """
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    # 1. Tokenizers: byte-level BPE in CLIP's format (256 byte symbols, the same with `</w>`, merges).
    vocab, merges = _clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!")

    with _seeded(1):
        # 2. Text encoders: hidden 32 and 64, the second with a projection; penultimate layers feed the UNet.
        text_config = {
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "bos_token_id": vocab[_CLIP_BOS],
            "eos_token_id": vocab[_CLIP_EOS],
            "pad_token_id": vocab[_CLIP_EOS],
        }
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=_TEXT_WIDTHS[0],
                intermediate_size=4 * _TEXT_WIDTHS[0],
                hidden_act="quick_gelu",
                **text_config,
            )
        )
        text_encoder_2 = CLIPTextModelWithProjection(
            CLIPTextConfig(
                hidden_size=_TEXT_WIDTHS[1],
                intermediate_size=4 * _TEXT_WIDTHS[1],
                projection_dim=_POOLED_WIDTH,
                hidden_act="gelu",
                **text_config,
            )
        )

        # 3. UNet: SDXL's structure at two levels (plain down block, then cross-attention with two
        #    transformer layers), linear projections, text_time addition embedding.
        unet = UNet2DConditionModel(
            sample_size=128,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=2,
            transformer_layers_per_block=(1, 2),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            cross_attention_dim=sum(_TEXT_WIDTHS),
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED_WIDTH,
            projection_class_embeddings_input_dim=_POOLED_WIDTH + 6 * _TIME_EMBED_WIDTH,
        )

        # 4. VAE: four levels, so latents are 1/8 of the image like SDXL's (ControlNet's conditioning
        #    embedding downsamples 8x too); SDXL's scaling factor.
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=1024,
            scaling_factor=0.13025,
            force_upcast=True,
        )

    # 5. Scheduler: SDXL base's EulerDiscreteScheduler configuration.
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
        timestep_spacing="leading",
        steps_offset=1,
    )

    # 6. Save the pipeline, then write the tokenizers as the real repositories ship them.
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipeline.save_pretrained(out)
    for folder, pad_token in (("tokenizer", _CLIP_EOS), ("tokenizer_2", "!")):
        shutil.rmtree(out / folder)
        _write_clip_tokenizer(out / folder, vocab, merges, pad_token)


def build_controlnet(sdxl: Path, out: Path) -> None:
    """A ControlNet-tile: `ControlNetModel.from_unet` of the tiny UNet, its zero-initialised layers randomised.

    `from_unet` zero-initialises the conditioning embedding's last conv and every residual output conv,
    which makes a new ControlNet a no-op. Here the output convs get their default (Kaiming-uniform) init and
    the whole conditioning embedding a variance-preserving Kaiming-normal init, so the control image
    changes the result clearly (with the default init everywhere, the control signal fades over the
    embedding's 8 convs and two control images give pictures about 1e-4 apart).
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    # 1. The ControlNet copies the UNet's encoder.
    unet = UNet2DConditionModel.from_pretrained(sdxl, subfolder="unet")
    with _seeded(2), torch.no_grad():
        controlnet = ControlNetModel.from_unet(unet)

        # 2. Randomise the zero layers.
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.reset_parameters()
        for conv in controlnet.controlnet_cond_embedding.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight)
                torch.nn.init.zeros_(conv.bias)

    # 3. Save.
    controlnet.save_pretrained(out)


def build_ip_adapter(sdxl: Path, weights: Path, image_encoder: Path) -> None:
    """An IP-Adapter for the tiny UNet in h94's file layout, and its CLIP vision encoder.

    Keys are the ones diffusers' `load_ip_adapter` reads from h94's `ip-adapter_sdxl*.safetensors`:
    `image_proj.proj.*` (image embedding -> 4 tokens of cross-attention width), `image_proj.norm.*`, and
    `ip_adapter.{1,3,5,...}.to_k_ip.weight` / `.to_v_ip.weight`, one odd number per cross-attention layer
    in the order of `unet.attn_processors` (h94 numbers all attention layers; the even ones, self-attention,
    carry no weights).
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(sdxl, subfolder="unet")
    width = unet.config.cross_attention_dim
    image_embed_width = 32
    with _seeded(3):
        # 1. The image encoder: a ViT whose projected embedding feeds the adapter.
        encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
                projection_dim=image_embed_width,
                hidden_act="gelu",
            )
        )

        # 2. The image projection: one linear layer to 4 tokens and a LayerNorm.
        projection = torch.nn.Linear(image_embed_width, 4 * width)
        state = {
            "image_proj.proj.weight": projection.weight,
            "image_proj.proj.bias": projection.bias,
            "image_proj.norm.weight": torch.ones(width),
            "image_proj.norm.bias": torch.zeros(width),
        }

        # 3. The key and value projections of every cross-attention layer.
        cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
        for index, name in enumerate(cross_attention):
            attention = unet.get_submodule(name.removesuffix(".processor"))
            for projection_name in ("to_k_ip", "to_v_ip"):
                layer = torch.nn.Linear(width, attention.to_k.out_features, bias=False)
                state[f"ip_adapter.{2 * index + 1}.{projection_name}.weight"] = layer.weight

    # 4. Save in the h94 layout.
    encoder.save_pretrained(image_encoder)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().contiguous() for key, value in state.items()}, weights)


def build_loras(sdxl: Path, out: Path) -> None:
    """Two SDXL LoRAs (peft and kohya formats), an SD1.5-shaped one, and `library.json`."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig

    out.mkdir(parents=True, exist_ok=True)

    # 1. The kohya LoRA's targets, read from the UNet before peft wraps its layers.
    unet = UNet2DConditionModel.from_pretrained(sdxl, subfolder="unet")
    widths = {
        f"lora_unet_{name.replace('.', '_')}": (module.in_features, module.out_features)
        for name, module in unet.named_modules()
        if name.endswith(("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"))
    }
    for prefix, folder in (("lora_te1", "text_encoder"), ("lora_te2", "text_encoder_2")):
        config = CLIPTextConfig.from_pretrained(sdxl, subfolder=folder)
        for layer in range(config.num_hidden_layers):
            for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
                name = f"{prefix}_text_model_encoder_layers_{layer}_self_attn_{projection}"
                widths[name] = (config.hidden_size, config.hidden_size)

    # 2. tiny-style: a peft adapter on every attention projection, saved the way diffusers' training
    #    scripts save. peft's default init zeroes B (a no-op); init_lora_weights=False keeps it random.
    with _seeded(4):
        unet.add_adapter(
            LoraConfig(
                r=4,
                lora_alpha=4,
                init_lora_weights=False,
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            )
        )
    StableDiffusionXLPipeline.save_lora_weights(
        out,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        weight_name=f"{STYLE_LORA}.safetensors",
    )

    # 3. tiny-detail: kohya's format (module paths with `_` for `.`, lora_down / lora_up / alpha) on the
    #    UNet's cross-attention and both text encoders' self-attention.
    generator = torch.Generator().manual_seed(5)
    _save_kohya_lora(out / f"{DETAIL_LORA}.safetensors", widths, generator)

    # 4. sd15-style: what an SD1.5 kohya LoRA looks like (cross-attention input 768, UNet widths 320-1280).
    sd15_widths = {}
    for name, width in (
        ("down_blocks_0_attentions_0_transformer_blocks_0", 320),
        ("mid_block_attentions_0_transformer_blocks_0", 1280),
    ):
        sd15_widths[f"lora_unet_{name}_attn2_to_k"] = (768, width)
        sd15_widths[f"lora_unet_{name}_attn2_to_v"] = (768, width)
    sd15_widths["lora_te_text_model_encoder_layers_0_self_attn_q_proj"] = (768, 768)
    _save_kohya_lora(out / f"{SD15_LORA}.safetensors", sd15_widths, generator)

    # 5. The library file.
    (out / "library.json").write_text(json.dumps(LORA_LIBRARY, indent=2) + "\n")


def build_esrgan(out: Path) -> None:
    """An ESRGAN x4 (RRDBNet, 1 block, 16 features) state dict, built with spandrel's own class."""
    from spandrel.architectures.ESRGAN import ESRGAN

    with _seeded(6):
        model = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, out)


def build_qwen3_vl(out: Path) -> None:
    """A Qwen3-VL for `AutoProcessor` + `AutoModelForImageTextToText`, with its own byte-level tokenizer.

    Real Qwen3-VL patching (16-pixel patches, 2x2 merge, temporal patch 2); images are resized to at most
    256x256 pixels, so a tile becomes at most 64 image tokens. The generation config copies the real one
    (sampling on): pass `do_sample=False` for deterministic output.
    """
    from transformers import GenerationConfig, Qwen2Tokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # 1. Tokenizer: Qwen2's byte-level BPE with merges learned here, the Qwen special tokens at the end.
    probe = Qwen2Tokenizer()
    words = [word for word, _ in probe.backend_tokenizer.pre_tokenizer.pre_tokenize_str(_CORPUS)]
    merges = _learn_merges([list(word) for word in words], count=200)
    vocab = _vocab_in_order([*_byte_alphabet(), *("".join(pair) for pair in merges), *_QWEN_SPECIAL_TOKENS])
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(_QWEN_SPECIAL_TOKENS[1:]),
        model_max_length=4096,
    )

    # 2. Processor: image and video processors with the real patching, and the chat template.
    patching = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    normalisation = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": 32 * 32, "longest_edge": 256 * 256}, **patching, **normalisation
        ),
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": 32 * 32, "longest_edge": 4 * 256 * 256}, **patching, **normalisation
        ),
        tokenizer=tokenizer,
        chat_template=_QWEN_CHAT_TEMPLATE,
    )

    # 3. Model: text 64 wide (head_dim 16, so mrope_section sums to 8), vision 32 wide and 2 deep with
    #    deepstack taps at both layers.
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
            "bos_token_id": vocab["<|endoftext|>"],
            "eos_token_id": vocab["<|im_end|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
            "patch_size": patching["patch_size"],
            "temporal_patch_size": patching["temporal_patch_size"],
            "spatial_merge_size": patching["merge_size"],
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with _seeded(7):
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=[vocab["<|im_end|>"], vocab["<|endoftext|>"]],
        pad_token_id=vocab["<|endoftext|>"],
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.8,
    )

    # 4. Save.
    model.save_pretrained(out)
    processor.save_pretrained(out)


# --------------------------------------------------------------------------------------------------------
# Tokenizer vocabularies


def _byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE maps bytes to, in a fixed order."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _learn_merges(words: Iterable[list[str]], count: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned from `words` (symbol lists); ties go to the alphabetically first pair."""
    corpus = Counter(tuple(word) for word in words)
    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, frequency in corpus.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += frequency
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, frequency in corpus.items():
            merged[_merge_pair(word, best)] += frequency
        corpus = merged
    return merges


def _merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    symbols: list[str] = []
    index = 0
    while index < len(word):
        if word[index : index + 2] == pair:
            symbols.append(word[index] + word[index + 1])
            index += 2
        else:
            symbols.append(word[index])
            index += 1
    return tuple(symbols)


def _vocab_in_order(tokens: Iterable[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary layout: bytes, bytes + `</w>`, merges, then the two special tokens.

    Every byte has a token, so any prompt tokenizes (no unknown tokens) whatever its language or markup.
    """
    from transformers import CLIPTokenizer

    probe = CLIPTokenizer().backend_tokenizer
    text = probe.normalizer.normalize_str(_CORPUS)
    words = [list(word) for word, _ in probe.pre_tokenizer.pre_tokenize_str(text)]
    for word in words:
        word[-1] += "</w>"
    merges = _learn_merges(words, count=200)
    alphabet = _byte_alphabet()
    tokens = [*alphabet, *(f"{char}</w>" for char in alphabet), *("".join(pair) for pair in merges)]
    return _vocab_in_order([*tokens, _CLIP_BOS, _CLIP_EOS]), merges


def _write_clip_tokenizer(
    folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]], pad: str
) -> None:
    """A CLIP tokenizer folder as SDXL repositories have it: vocab.json, merges.txt, tokenizer_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8"
    )
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": _CLIP_BOS,
        "eos_token": _CLIP_EOS,
        "unk_token": _CLIP_EOS,
        "pad_token": pad,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _save_kohya_lora(path: Path, widths: dict[str, tuple[int, int]], generator: torch.Generator) -> None:
    """Kohya LoRA tensors (`lora_down` rank x in, `lora_up` out x rank, `alpha`) for `name -> (in, out)`."""
    rank, alpha = 4, 2.0
    state = {}
    for name, (in_features, out_features) in widths.items():
        state[f"{name}.lora_down.weight"] = (
            torch.randn(rank, in_features, generator=generator) / in_features**0.5
        )
        state[f"{name}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) / rank**0.5
        state[f"{name}.alpha"] = torch.tensor(alpha)
    save_file(state, path)


# --------------------------------------------------------------------------------------------------------
# Cache plumbing


def _stamp() -> dict[str, object]:
    return {
        "builder_version": BUILDER_VERSION,
        "profile": TINY.name,
        "libraries": {name: version(name) for name in _STAMPED_LIBRARIES},
    }


def _stamp_is_current(models_dir: Path) -> bool:
    try:
        return json.loads((models_dir / STAMP_NAME).read_text()) == _stamp()
    except (FileNotFoundError, json.JSONDecodeError):
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for a block, leaving the caller's generator state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _install(staging: Path, models_dir: Path) -> None:
    """Move the staged build into `models_dir`.

    Whole-model folders are swapped with renames (the old one first moved aside into the staging folder,
    which is deleted afterwards); the shared folders (`loras/`, `upscalers/`) get their files replaced one by
    one, so files others put there stay.
    """
    shared = {TINY.loras, TINY.upscalers}
    for entry in sorted(staging.iterdir()):
        target = models_dir / entry.name
        if entry.name in shared:
            target.mkdir(exist_ok=True)
            for file in sorted(entry.iterdir()):
                os.replace(file, target / file.name)
            continue
        if target.exists():
            target.rename(staging / f"replaced-{entry.name}")
        entry.rename(target)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    parser = argparse.ArgumentParser(
        prog="python -m services.diffusion.tiny",
        description="Build the tiny profile's random-weight models (noise pictures; for tests and CI).",
    )
    parser.add_argument(
        "models_dir",
        nargs="?",
        type=Path,
        default=None,
        help="models folder to write (default: $TILESMITH_TINY_CACHE or <repo>/.cache/tiny-models)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp is current")
    args = parser.parse_args(argv)
    configure_logging(json=False)
    transformers_logging.disable_progress_bar()  # one "Writing model shards" bar per model otherwise
    print(build_tiny_models(args.models_dir or default_cache_dir(), force=args.force))


if __name__ == "__main__":
    main()
