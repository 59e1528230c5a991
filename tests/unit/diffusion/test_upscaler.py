"""The upscaler, with tiny ESRGAN (RRDBNet) files built here from spandrel's own architecture class
(16 features, 1 block, growth 32, x4) and saved with safetensors.

Two kinds of weights. `identity` weights make the net exactly a nearest-neighbour x4 upscale (the trunk's
convolutions pass their first channels through, the residual body adds zero, LeakyReLU keeps [0, 1]),
so a test can check every pixel of the channel, alpha and tiling plumbing. `noisy` weights add seeded
Gaussian noise to those, so the net mixes neighbours over its receptive field as a trained one does and
tiles have seams to blend away (a plain random initialisation saturates the output to black).

Images run whole at 16x16 or in 32 px tiles throughout: on CPU the first run of each new
input shape pays for creating its convolution kernels, which costs more here than the runs themselves.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from services.common.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted
from services.diffusion.upscaler import Upscaler, load_upscaler

# spandrel is imported inside the helpers, after `services.diffusion` (imported above) has run the
# torchvision shim: a module-level import would be sorted before it.


def _esrgan_file(path: Path, *, channels: int = 3, noise: float = 0.0, seed: int = 0) -> Path:
    from spandrel.architectures.ESRGAN import ESRGAN

    net = ESRGAN(in_nc=channels, out_nc=channels, num_filters=16, num_blocks=1, scale=4)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        tensor = torch.zeros_like(value)
        if key.endswith("weight") and ".sub." not in key:  # a trunk conv: identity on its first channels
            n = min(value.shape[:2])
            tensor[range(n), range(n), 1, 1] = 1
        if noise:
            fan_in = value[0].numel() if value.ndim > 1 else 1
            tensor += noise / fan_in**0.5 * torch.randn(value.shape, generator=generator)
        state[key] = tensor
    save_file(state, path)
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upscalers")


@pytest.fixture(scope="module")
def noisy(models_dir: Path) -> Upscaler:
    return load_upscaler(_esrgan_file(models_dir / "noisy-esrgan-x4.safetensors", noise=0.2))


@pytest.fixture(scope="module")
def identity(models_dir: Path) -> Upscaler:
    return load_upscaler(_esrgan_file(models_dir / "identity-esrgan-x4.safetensors"))


def _image(rng: np.random.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _nearest(image: np.ndarray, scale: int = 4) -> np.ndarray:
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# --- loading -----------------------------------------------------------------------------------------


def test_spandrel_detects_the_tiny_esrgan(noisy: Upscaler) -> None:
    assert noisy.name == "noisy-esrgan-x4"
    assert noisy.architecture == "ESRGAN"
    assert noisy.scale == 4
    assert (noisy.input_channels, noisy.output_channels) == (3, 3)
    assert noisy.supports_half
    assert noisy.supports_bfloat16
    assert (noisy.device, noisy.dtype) == (torch.device("cpu"), torch.float32)


def test_a_supported_dtype_is_used_as_asked(models_dir: Path, rng: np.random.Generator) -> None:
    upscaler = load_upscaler(models_dir / "noisy-esrgan-x4.safetensors", dtype=torch.bfloat16)
    assert upscaler.dtype == torch.bfloat16
    assert upscaler.upscale(_image(rng, 16, 16)).shape == (64, 64, 3)


def test_an_unsupported_dtype_falls_back_to_float32_with_a_warning(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import spandrel

    load = spandrel.ModelLoader.load_from_file

    def load_without_half(self: spandrel.ModelLoader, path: Path) -> spandrel.ModelDescriptor:
        model = load(self, path)
        model.supports_half = False
        return model

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", load_without_half)
    upscaler = load_upscaler(models_dir / "noisy-esrgan-x4.safetensors", dtype=torch.float16)
    assert upscaler.dtype == torch.float32
    assert "does not support torch.float16" in caplog.text


def test_a_file_that_is_not_weights_is_an_invalid_path(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    with pytest.raises(InvalidArgument) as caught:
        load_upscaler(path)
    assert caught.value.field == "path"
    assert ".safetensors" in caught.value.message


def test_missing_weights_name_the_path_and_the_command(tmp_path: Path) -> None:
    path = tmp_path / "RealESRGAN_x4plus.pth"
    with pytest.raises(FailedPrecondition) as caught:
        load_upscaler(path)
    assert str(path) in caught.value.message
    assert "make models" in caught.value.message


def _unknown_tensors(path: Path) -> None:
    save_file({"encoder.weight": torch.zeros(4, 4)}, path)


@pytest.mark.parametrize(
    ("name", "write", "says"),
    [
        ("text.pth", lambda p: p.write_text("not a model"), "cannot be read as model weights"),
        ("junk.safetensors", lambda p: p.write_bytes(b"\0" * 64), "cannot be read as model weights"),
        ("empty.ckpt", lambda p: p.write_bytes(b""), "cannot be read as model weights"),
        ("unknown.safetensors", _unknown_tensors, "not a model architecture spandrel"),
    ],
)
def test_a_file_that_is_not_a_model_is_a_clear_error(
    tmp_path: Path, name: str, write: Callable[[Path], object], says: str
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(FailedPrecondition) as caught:
        load_upscaler(path)
    assert name in caught.value.message
    assert says in caught.value.message


class _MakesADirectory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"model.0.weight": _MakesADirectory(marker)}))
    with pytest.raises(FailedPrecondition, match=r"evil\.pth cannot be read"):
        load_upscaler(path)
    assert not marker.exists()


@pytest.mark.parametrize(("kind", "says"), [("Inpainting", "takes a mask"), ("FaceSR", "aligned face")])
def test_models_that_are_not_upscalers_are_refused(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, kind: str, says: str
) -> None:
    import spandrel

    def load_other(self: spandrel.ModelLoader, path: Path) -> spandrel.ModelDescriptor:
        net = torch.nn.Conv2d(3, 3, 1)
        if kind == "Inpainting":
            return spandrel.MaskedImageModelDescriptor(
                net,
                net.state_dict(),
                architecture=spandrel.MAIN_REGISTRY["LaMa"].architecture,
                purpose="Inpainting",
                tags=[],
                supports_half=False,
                supports_bfloat16=True,
                input_channels=3,
                output_channels=3,
            )
        return spandrel.ImageModelDescriptor(
            net,
            net.state_dict(),
            architecture=spandrel.MAIN_REGISTRY["GFPGAN"].architecture,
            purpose="FaceSR",
            tags=[],
            supports_half=False,
            supports_bfloat16=True,
            scale=1,
            input_channels=3,
            output_channels=3,
        )

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", load_other)
    with pytest.raises(FailedPrecondition, match=says):
        load_upscaler(models_dir / "noisy-esrgan-x4.safetensors")


def test_the_module_imports_in_a_fresh_interpreter() -> None:
    # spandrel imports torchvision, which needs the shim on a CPU-only torch (see torchvision_compat).
    code = "import services.diffusion.upscaler as u, spandrel; print('ok', spandrel.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")


# --- upscaling -----------------------------------------------------------------------------------------


def test_16_to_64(noisy: Upscaler, rng: np.random.Generator) -> None:
    out = noisy.upscale(_image(rng, 16, 16))
    assert out.shape == (64, 64, 3)
    assert out.dtype == np.uint8
    assert out.std() > 10  # not saturated: the noisy weights give a picture to compare


@pytest.mark.parametrize(("tile_size", "tile_overlap"), [(0, 0), (512, 32), (32, 8), (32, 0)])
def test_identity_weights_give_nearest_neighbour_exactly(
    identity: Upscaler, rng: np.random.Generator, tile_size: int, tile_overlap: int
) -> None:
    image = _image(rng, 64, 64)
    out = identity.upscale(image, tile_size=tile_size, tile_overlap=tile_overlap)
    np.testing.assert_array_equal(out, _nearest(image))


def test_rgba_keeps_transparent_and_opaque_regions(identity: Upscaler, rng: np.random.Generator) -> None:
    image = _image(rng, 64, 64, 4)
    image[:, :24, 3] = 0
    image[:, 24:48, 3] = 255  # and noise in the last quarter
    out = identity.upscale(image, tile_size=32, tile_overlap=8)
    assert out.shape == (256, 256, 4)
    assert (out[:, : 24 * 4, 3] == 0).all()
    assert (out[:, 24 * 4 : 48 * 4, 3] == 255).all()
    np.testing.assert_array_equal(out, _nearest(image))


def test_alpha_runs_through_the_model_as_a_grey_image(noisy: Upscaler, rng: np.random.Generator) -> None:
    image = _image(rng, 16, 16, 4)
    out = noisy.upscale(image)
    # The colour is the RGB image's upscale; the alpha is the upscale of the alpha as grey RGB, taken
    # back to one channel by its luma (here rounded per channel first, so within 1 level).
    np.testing.assert_array_equal(out[..., :3], noisy.upscale(np.ascontiguousarray(image[..., :3])))
    grey = noisy.upscale(np.repeat(image[..., 3:], 3, axis=2)).astype(np.float64)
    luma = np.rint(grey @ np.array([0.299, 0.587, 0.114]))
    assert _diff(out[..., 3], luma).max() <= 1


def test_a_uniform_alpha_skips_the_model_and_stays_exact(noisy: Upscaler, rng: np.random.Generator) -> None:
    image = _image(rng, 16, 16, 4)
    image[..., 3] = 200
    calls: list[tuple[int, int]] = []
    out = noisy.upscale(image, progress=lambda done, total: calls.append((done, total)))
    assert (out[..., 3] == 200).all()
    assert calls == [(1, 1)]


def test_tiled_is_close_to_untiled(noisy: Upscaler, rng: np.random.Generator) -> None:
    image = _image(rng, 64, 64)
    whole = noisy.upscale(image, tile_size=0)
    # 3x3 tiles of 32 px overlapping by 16 px. The net sees past the overlap, so the seams are not
    # exact: measured (several seeds) at most 5 levels, mean 0.065; 96x96 in 48 px tiles: 4, 0.03.
    diff = _diff(noisy.upscale(image, tile_size=32, tile_overlap=8), whole)
    assert diff.max() <= 8
    assert diff.mean() < 0.15
    # 2x2 tiles that only abut (no overlap to feather) leave visible seams: measured 87..94 levels.
    assert _diff(noisy.upscale(image, tile_size=32, tile_overlap=0), whole).max() > 30


def test_progress_counts_every_tile_of_every_pass(identity: Upscaler, rng: np.random.Generator) -> None:
    calls: list[tuple[int, int]] = []
    identity.upscale(
        _image(rng, 56, 56, 4), tile_size=32, tile_overlap=8, progress=lambda d, t: calls.append((d, t))
    )
    # 56 px in 32 px tiles with >= 8 px overlap: 2 tiles a side, 4 per pass, RGB and alpha passes.
    assert calls == [(done, 8) for done in range(1, 9)]


def test_cancel_is_checked_between_tiles(identity: Upscaler, rng: np.random.Generator) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(Cancelled, match="after 2 of 9 tiles"):
        identity.upscale(
            _image(rng, 64, 64),
            tile_size=32,
            tile_overlap=8,
            progress=lambda d, t: calls.append((d, t)),
            cancelled=lambda: len(calls) == 2,
        )
    assert calls == [(1, 9), (2, 9)]


def test_the_same_input_gives_the_same_bytes(
    noisy: Upscaler, models_dir: Path, rng: np.random.Generator
) -> None:
    image = _image(rng, 48, 48, 4)
    first = noisy.upscale(image, tile_size=32, tile_overlap=8)
    assert first.tobytes() == noisy.upscale(image, tile_size=32, tile_overlap=8).tobytes()
    reloaded = load_upscaler(models_dir / "noisy-esrgan-x4.safetensors")
    assert first.tobytes() == reloaded.upscale(image, tile_size=32, tile_overlap=8).tobytes()


def test_a_greyscale_model_takes_colour_images(models_dir: Path, rng: np.random.Generator) -> None:
    grey = load_upscaler(_esrgan_file(models_dir / "grey-x4.safetensors", channels=1))
    assert grey.input_channels == 1
    image = _image(rng, 16, 16, 4)
    out = grey.upscale(image)
    assert out.shape == (64, 64, 4)
    luma = np.rint(image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert (out[..., 0] == out[..., 1]).all()
    assert (out[..., 1] == out[..., 2]).all()
    assert _diff(out[..., 0], _nearest(luma)).max() <= 1
    np.testing.assert_array_equal(out[..., 3], _nearest(image[..., 3]))


def test_an_rgba_model_takes_rgba_whole_and_rgb_with_an_opaque_alpha(
    models_dir: Path, rng: np.random.Generator
) -> None:
    rgba = load_upscaler(_esrgan_file(models_dir / "rgba-x4.safetensors", channels=4))
    assert rgba.input_channels == 4
    image = _image(rng, 16, 16, 4)
    calls: list[tuple[int, int]] = []
    out = rgba.upscale(image, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(out, _nearest(image))
    assert calls == [(1, 1)]  # one pass: the model takes the alpha with the colour
    colour = np.ascontiguousarray(image[..., :3])
    np.testing.assert_array_equal(rgba.upscale(colour), _nearest(colour))


@pytest.mark.parametrize(
    ("image", "options", "field"),
    [
        (np.zeros((16, 16, 3), np.float32), {}, "image"),
        (np.zeros((16, 16), np.uint8), {}, "image"),
        (np.zeros((16, 16, 2), np.uint8), {}, "image"),
        (np.zeros((0, 16, 3), np.uint8), {}, "image"),
        ([[[0, 0, 0]]], {}, "image"),
        (np.zeros((16, 16, 3), np.uint8), {"tile_size": 16}, "tile_size"),
        (np.zeros((16, 16, 3), np.uint8), {"tile_size": 4097}, "tile_size"),
        (np.zeros((16, 16, 3), np.uint8), {"tile_size": -1}, "tile_size"),
        (np.zeros((16, 16, 3), np.uint8), {"tile_size": 48, "tile_overlap": 13}, "tile_overlap"),
        (np.zeros((16, 16, 3), np.uint8), {"tile_overlap": -1}, "tile_overlap"),
    ],
)
def test_bad_inputs_name_the_field(identity: Upscaler, image: np.ndarray, options: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        identity.upscale(image, **options)
    assert caught.value.field == field


def test_out_of_memory_asks_for_a_smaller_tile(
    identity: Upscaler, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    import spandrel

    def out_of_memory(self: spandrel.ImageModelDescriptor, image: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", out_of_memory)
    with pytest.raises(ResourceExhausted, match=r"smaller tile_size \(this request: 64"):
        identity.upscale(_image(rng, 16, 16), tile_size=64, tile_overlap=16)


def test_other_runtime_errors_are_not_out_of_memory(
    identity: Upscaler, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    import spandrel

    def broken(self: spandrel.ImageModelDescriptor, image: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("expected all tensors to be on the same device")

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", broken)
    with pytest.raises(RuntimeError, match="same device"):
        identity.upscale(_image(rng, 16, 16))
