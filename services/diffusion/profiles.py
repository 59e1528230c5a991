"""Model profiles: which weights the diffusion (and captioning) services load, and where they live.

Every profile is a layout inside one models folder (`TILESMITH_DIFFUSION_MODELS_DIR`; a shared PVC in
Kubernetes). The `tiny` profile's folder is written by the project's own builder
(`python -m services.diffusion.tiny DIR`): random weights, real architectures, loaded with the same
`from_pretrained` code as production — its pictures are noise; it proves the machinery. The
`production` profile's folder is filled by `make models` (huggingface_hub, on a machine that reaches
the hub).

    <models_dir>/
      <sdxl>/                 a diffusers SDXL pipeline folder (model_index.json, unet/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/)
      <vae>/                  optional separate VAE (production: the fp16-fix SDXL VAE)
      <controlnet_tile>/      a diffusers ControlNetModel folder
      <ip_adapter>/           h94/IP-Adapter layout: sdxl_models/<weight>.safetensors and models/image_encoder/
      <upscalers>/            super-resolution weights (.pth / .safetensors) that spandrel loads
      <loras>/                the LoRA library: *.safetensors and library.json
      <captioner>/            a transformers vision-language model folder (Qwen3-VL)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PRODUCTION", "PROFILES", "TINY", "HubSource", "ModelProfile"]


@dataclass(frozen=True)
class HubSource:
    """Where `make models` fetches one component from (production only)."""

    repo_id: str
    # Files to fetch (glob patterns, huggingface_hub `allow_patterns`); empty = the whole repo.
    allow_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelProfile:
    """Folder and file names of every model, relative to the models folder."""

    name: str
    sdxl: str
    controlnet_tile: str
    ip_adapter: str
    upscaler: str
    captioner: str
    vae: str | None = None
    ip_adapter_subfolder: str = "sdxl_models"
    ip_adapter_weight: str = "ip-adapter_sdxl_vit-h.safetensors"
    ip_adapter_image_encoder: str = "models/image_encoder"
    upscalers: str = "upscalers"
    loras: str = "loras"
    sources: dict[str, HubSource] = field(default_factory=dict)

    def path(self, models_dir: Path, component: str) -> Path:
        """Absolute path of a component (`sdxl`, `vae`, `controlnet_tile`, ...) under `models_dir`."""
        relative = getattr(self, component)
        if relative is None:
            raise KeyError(f"profile {self.name!r} has no separate {component}")
        return models_dir / relative

    def upscaler_path(self, models_dir: Path) -> Path:
        return models_dir / self.upscalers / self.upscaler


TINY = ModelProfile(
    name="tiny",
    sdxl="tiny-sdxl",
    controlnet_tile="tiny-controlnet-tile",
    ip_adapter="tiny-ip-adapter",
    upscaler="tiny-esrgan-x4.safetensors",
    captioner="tiny-qwen3-vl",
)

PRODUCTION = ModelProfile(
    name="production",
    sdxl="illustrious-xl-early-release-v0",
    vae="sdxl-vae-fp16-fix",
    controlnet_tile="controlnet-tile-sdxl-1.0",
    ip_adapter="ip-adapter",
    upscaler="RealESRGAN_x4plus.pth",
    captioner="qwen3-vl-8b-instruct",
    sources={
        # The diffusers folders only: the repo also holds single-file checkpoints the engine never reads.
        "sdxl": HubSource(
            "OnomaAIResearch/Illustrious-xl-early-release-v0",
            ("model_index.json", "*/config.json", "*/*.safetensors", "tokenizer*/*", "scheduler/*"),
        ),
        "vae": HubSource(
            "madebyollin/sdxl-vae-fp16-fix", ("config.json", "diffusion_pytorch_model.safetensors")
        ),
        "controlnet_tile": HubSource(
            "xinsir/controlnet-tile-sdxl-1.0", ("config.json", "diffusion_pytorch_model.safetensors")
        ),
        "ip_adapter": HubSource(
            "h94/IP-Adapter",
            ("sdxl_models/ip-adapter_sdxl_vit-h.safetensors", "models/image_encoder/*"),
        ),
        "upscaler": HubSource("lllyasviel/Annotators", ("RealESRGAN_x4plus.pth",)),
        "captioner": HubSource("Qwen/Qwen3-VL-8B-Instruct"),
    },
)

PROFILES = {profile.name: profile for profile in (TINY, PRODUCTION)}
