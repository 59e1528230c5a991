"""The diffusion service: SDXL img2img / txt2img, ControlNet-tile, IP-Adapter, LoRAs, ESRGAN upscalers."""

from services.common.torchvision_compat import ensure_torchvision_importable

# Before anything imports torchvision (spandrel, transformers' vision processors): see the module.
ensure_torchvision_importable()
