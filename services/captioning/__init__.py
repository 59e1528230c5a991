"""The captioning service: tile captions from a vision-language model (Qwen3-VL)."""

from services.common.torchvision_compat import ensure_torchvision_importable

# Before transformers' vision processors import torchvision: see the module.
ensure_torchvision_importable()
