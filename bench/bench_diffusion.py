"""Diffusion benchmark: what the service adds on top of the diffusers pipeline, and GPU efficiency.

CPU (default), tiny profile: the same 256x256 tiles re-drawn (a) by calling the diffusers ControlNet
img2img pipeline directly in-process and (b) through a real diffusion server in its own process
(`python -m services.diffusion`, Img2Img over gRPC on loopback, one tile per call). Same models, same
scheduler, steps, strength, CFG, ControlNet settings and thread count. Prints seconds per tile and the
overhead ratio (goal: <= 1.05).

--gpu, on a CUDA machine: the full-size SDXL UNet and ControlNet architectures with random weights (no
download), 1024x1024 tiles, 30 steps at strength 0.35, CFG 7, ControlNet on, bf16. Prompt embeddings are
random tensors of SDXL's shapes (text encoding is a negligible share of the work). Prints seconds per
tile and the efficiency against the compute floor: about 231 TFLOP per tile over the GPU's measured bf16
matmul rate (goal: >= 0.45).

Both write JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import services.diffusion  # noqa: F401  (the torchvision shim, before diffusers imports it)

ROOT = Path(__file__).resolve().parent.parent
TFLOP_PER_TILE = 231e12


def _write(out: Path, payload: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


# --- CPU: service overhead ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_service(models_dir: Path, threads: int):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = _free_port()
    env = {
        **os.environ,
        "TILESMITH_DIFFUSION_HOST": "127.0.0.1",
        "TILESMITH_DIFFUSION_PORT": str(port),
        "TILESMITH_DIFFUSION_METRICS_PORT": "0",
        "TILESMITH_DIFFUSION_PROFILE": "tiny",
        "TILESMITH_DIFFUSION_MODELS_DIR": str(models_dir),
        "TILESMITH_DIFFUSION_DEVICE": "cpu",
        "TILESMITH_DIFFUSION_TORCH_THREADS": str(threads),
        "TILESMITH_DIFFUSION_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.diffusion"], env=env, cwd=ROOT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return process, address
            except grpc.RpcError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the diffusion service did not become ready")
            time.sleep(0.2)


def bench_cpu(args: argparse.Namespace) -> None:
    import grpc
    import torch
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetImg2ImgPipeline
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from services.common.server import channel_options
    from services.diffusion.profiles import TINY
    from services.diffusion.tiny import build_tiny_models, default_cache_dir
    from tilesmith import images
    from tilesmith.v1 import diffusion_pb2, diffusion_pb2_grpc

    torch.set_num_threads(args.threads)
    models = build_tiny_models(default_cache_dir())
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, size=(args.tile, args.tile, 3), dtype=np.uint8) for _ in range(args.tiles)]
    prompt, negative = "a stone castle on a hill, detailed, (sharp:1.1)", "blurry"

    # (a) the diffusers pipeline, directly.
    controlnet = ControlNetModel.from_pretrained(TINY.path(models, "controlnet_tile"))
    pipe = StableDiffusionXLControlNetImg2ImgPipeline.from_pretrained(
        TINY.path(models, "sdxl"), controlnet=controlnet
    )
    pipe.set_progress_bar_config(disable=True)

    def direct(pixels: np.ndarray, seed: int) -> None:
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        image = Image.fromarray(pixels)
        pipe(
            prompt=prompt,
            negative_prompt=negative,
            image=image,
            control_image=image,
            strength=args.strength,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            controlnet_conditioning_scale=0.7,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        )

    # (b) the service, over gRPC on loopback.
    process, address = _start_service(models, args.threads)
    try:
        with grpc.insecure_channel(address, options=channel_options(64 * 1024 * 1024)) as channel:
            stub = diffusion_pb2_grpc.DiffusionStub(channel)

            def service(pixels: np.ndarray, seed: int) -> None:
                request = diffusion_pb2.Img2ImgRequest(
                    tiles=[
                        diffusion_pb2.Img2ImgTile(
                            index=0,
                            image=images.to_proto(pixels),
                            prompt=prompt,
                            negative_prompt=negative,
                            seed=seed,
                        )
                    ],
                    strength=args.strength,
                    sampling=diffusion_pb2.SamplingParams(
                        steps=args.steps, cfg_scale=7.0, scheduler=diffusion_pb2.SCHEDULER_EULER
                    ),
                    controlnet=diffusion_pb2.ControlNetSettings(enabled=True, scale=0.7),
                )
                replies = list(stub.Img2Img(request))
                assert replies[-1].WhichOneof("part") == "stats"

            # Warm up both (first calls allocate and pick kernels), then interleave the measurements so
            # machine noise hits both alike.
            direct(tiles[0], 0)
            service(tiles[0], 0)
            times: dict[str, list[float]] = {
                "diffusers pipeline, in-process": [],
                "Tilesmith service, gRPC": [],
            }
            for repeat in range(args.repeat):
                for i, pixels in enumerate(tiles):
                    for name, run in (
                        ("diffusers pipeline, in-process", direct),
                        ("Tilesmith service, gRPC", service),
                    ):
                        start = time.perf_counter()
                        run(pixels, repeat * 1000 + i)
                        times[name].append(time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=60)

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["Tilesmith service, gRPC"] / medians["diffusers pipeline, in-process"]
    table = Table(
        title=f"img2img per tile, tiny SDXL + ControlNet, {args.tile}x{args.tile}, {args.steps} steps, "
        f"strength {args.strength}, {args.threads} thread(s), CPU"
    )
    for column in ("path", "median s/tile", "min", "max", "ratio"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, values in times.items():
        table.add_row(
            name,
            f"{medians[name]:.3f}",
            f"{min(values):.3f}",
            f"{max(values):.3f}",
            f"{medians[name] / medians['diffusers pipeline, in-process']:.3f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"service overhead ratio: {ratio:.3f} (goal <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})"
    )
    _write(
        args.out or ROOT / "bench" / "results" / "bench_diffusion_cpu.json",
        {
            "benchmark": "diffusion service overhead (CPU, tiny profile)",
            "tile": args.tile,
            "steps": args.steps,
            "strength": args.strength,
            "threads": args.threads,
            "tiles": args.tiles,
            "repeat": args.repeat,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "seconds_per_tile": {
                name: {"median": medians[name], "all": values} for name, values in times.items()
            },
            "overhead_ratio": ratio,
        },
    )


# --- GPU: efficiency against the compute floor -------------------------------------------------------

SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}


def _matmul_tflops(torch, dtype) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * runs / (time.perf_counter() - start) / 1e12


def bench_gpu(args: argparse.Namespace) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DPMSolverMultistepScheduler,
        StableDiffusionXLControlNetImg2ImgPipeline,
        UNet2DConditionModel,
    )

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SDXL_UNET).to("cuda", dtype)
    controlnet = ControlNetModel.from_unet(unet).to("cuda", dtype)
    vae = AutoencoderKL(**SDXL_VAE).to("cuda", dtype)
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="sde-dpmsolver++",
        use_karras_sigmas=True,
    )
    pipe = StableDiffusionXLControlNetImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    size = args.gpu_tile
    image = torch.rand(1, 3, size, size, device="cuda", dtype=dtype)
    embeds = torch.randn(1, 77, 2048, device="cuda", dtype=dtype)
    pooled = torch.randn(1, 1280, device="cuda", dtype=dtype)

    def tile(seed: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=torch.zeros_like(embeds),
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=torch.zeros_like(pooled),
            image=image,
            control_image=image,
            strength=0.35,
            num_inference_steps=30,
            guidance_scale=7.0,
            controlnet_conditioning_scale=0.7,
            generator=torch.Generator("cuda").manual_seed(seed),
            output_type="pt",
        )
        torch.cuda.synchronize()
        return time.perf_counter() - start

    tile(0)  # warm-up
    seconds = statistics.median(tile(i) for i in range(1, args.repeat + 2))
    rate = _matmul_tflops(torch, dtype)
    floor = TFLOP_PER_TILE / (rate * 1e12)
    efficiency = floor / seconds
    print(f"GPU: {torch.cuda.get_device_name()}  bf16 matmul {rate:.0f} TFLOP/s")
    print(f"{size}x{size} tile, 30 steps at strength 0.35, CFG 7, ControlNet: {seconds:.3f} s/tile")
    print(
        f"compute floor {floor:.3f} s/tile -> efficiency {efficiency:.2f} (goal >= 0.45: {'met' if efficiency >= 0.45 else 'NOT met'})"
    )
    _write(
        args.out or ROOT / "bench" / "results" / "bench_diffusion_gpu.json",
        {
            "benchmark": "diffusion GPU efficiency (full-size SDXL + ControlNet, random weights, bf16)",
            "gpu": torch.cuda.get_device_name(),
            "tile": size,
            "seconds_per_tile": seconds,
            "bf16_matmul_tflops": rate,
            "tflop_per_tile": TFLOP_PER_TILE / 1e12,
            "floor_seconds": floor,
            "efficiency": efficiency,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpu", action="store_true", help="full-size SDXL on CUDA: efficiency vs the compute floor"
    )
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gpu-tile", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.gpu:
        bench_gpu(args)
    else:
        bench_cpu(args)


if __name__ == "__main__":
    main()
