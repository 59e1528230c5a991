"""Fake LoRA files for the LoRA library's tests: real safetensors, realistic key names, tiny tensors.

Widths: 2048 is SDXL's cross-attention width, 768 SD1.x's, 1024 SD2.x's, 96 the tiny test SDXL's.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
from safetensors.numpy import save

KOHYA_UNET = "lora_unet_input_blocks_4_1_transformer_blocks_0"
PEFT_UNET = "unet.down_blocks.1.attentions.0.transformer_blocks.0"
KOHYA_TE2 = "lora_te2_text_model_encoder_layers_0_self_attn_k_proj"
KOHYA_TE1 = "lora_te1_text_model_encoder_layers_0_self_attn_k_proj"


def kohya(width: int, rank: int = 4, *, te2: bool = False) -> dict[str, np.ndarray]:
    """A kohya-style LoRA: attn1 (self) and attn2 (cross) key/value pairs with alphas."""
    tensors: dict[str, np.ndarray] = {}
    for module, in_features in (("attn1_to_k", 640), ("attn2_to_k", width), ("attn2_to_v", width)):
        key = f"{KOHYA_UNET}_{module}"
        tensors[f"{key}.lora_down.weight"] = np.zeros((rank, in_features), np.float16)
        tensors[f"{key}.lora_up.weight"] = np.zeros((640, rank), np.float16)
        tensors[f"{key}.alpha"] = np.array(rank, np.float32)
    if te2:
        tensors.update(text_encoder_2(rank))
    return tensors


def peft(width: int, rank: int = 4) -> dict[str, np.ndarray]:
    """A peft / diffusers-style LoRA (`lora_A` is the down matrix)."""
    tensors: dict[str, np.ndarray] = {}
    for module, in_features in (("attn1.to_q", 640), ("attn2.to_k", width), ("attn2.to_v", width)):
        tensors[f"{PEFT_UNET}.{module}.lora_A.weight"] = np.zeros((rank, in_features), np.float32)
        tensors[f"{PEFT_UNET}.{module}.lora_B.weight"] = np.zeros((640, rank), np.float32)
    return tensors


def old_diffusers(width: int, rank: int = 4) -> dict[str, np.ndarray]:
    """The attention-processor layout diffusers wrote before peft."""
    key = f"{PEFT_UNET}.attn2.processor.to_k_lora"
    return {
        f"{key}.down.weight": np.zeros((rank, width), np.float32),
        f"{key}.up.weight": np.zeros((640, rank), np.float32),
    }


def text_encoder_2(rank: int = 4) -> dict[str, np.ndarray]:
    return {
        f"{KOHYA_TE2}.lora_down.weight": np.zeros((rank, 1280), np.float16),
        f"{KOHYA_TE2}.lora_up.weight": np.zeros((1280, rank), np.float16),
    }


def text_encoder_1(rank: int = 4) -> dict[str, np.ndarray]:
    return {
        f"{KOHYA_TE1}.lora_down.weight": np.zeros((rank, 768), np.float16),
        f"{KOHYA_TE1}.lora_up.weight": np.zeros((768, rank), np.float16),
    }


def lora_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    return save(tensors, metadata=metadata)


SDXL = lora_bytes(kohya(2048))
SD15 = lora_bytes(kohya(768))
SD2 = lora_bytes(peft(1024))


def raw_safetensors(header: dict, data: bytes = b"") -> bytes:
    """A file with exactly this header and data section, for malformed cases."""
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def pickled() -> bytes:
    """What `torch.save` wrote before its zip format: a bare pickle."""
    return pickle.dumps({"lora_unet_x.lora_down.weight": [[0.0] * 4]}, protocol=4)


def torch_zip() -> bytes:
    """The layout of a current `torch.save` file: a zip holding data.pkl."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": 0}))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
