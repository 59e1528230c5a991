"""The ``tilesmith`` command against the fake gateway of test_client.py.

`main()` runs in a worker thread with its own event loop (as the installed script would), while the
fake serves on the test's loop; output is captured with capsys, so stdout and stderr are not TTYs.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from tests.unit.sdk.test_client import FakeGateway, serving
from tilesmith import UpscaleOptions, cli
from tilesmith.v1 import common_pb2, gateway_pb2


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    async with serving(fake) as address:
        yield fake, address


@pytest.fixture
def fake(gateway: tuple[FakeGateway, str]) -> FakeGateway:
    return gateway[0]


@pytest.fixture
def tilesmith(gateway: tuple[FakeGateway, str]):
    """Run the command against the fake: ``await tilesmith("jobs", "list")`` -> exit code."""

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(cli.main, ["--address", gateway[1], *argv])

    return run


@pytest.fixture
def image(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "sprite.png"
    Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def result(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _succeed_with(fake: FakeGateway, pixels: np.ndarray) -> None:
    fake.on_submit = lambda job_id: fake.finish(job_id, png=_png(pixels))


# --- upscale ----------------------------------------------------------------------------------------


async def test_upscale_sends_the_flags_as_the_spec_and_writes_the_result(
    tilesmith, fake, image, result, capsys
) -> None:
    _succeed_with(fake, result)
    code = await tilesmith(
        "upscale", str(image),
        "--preset", "4k", "--tile-size", "512x768", "--lora", "a:0.5", "--lora", "b", "--seam-fix",
        "--select", "0,2", "--tile-prompt", "1=a door", "--region", "1,2,3,4:a face",
        "--no-controlnet", "--color-fix", "wavelet", "--label", "hero",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    output = image.with_name("sprite_tilesmith.png")
    np.testing.assert_array_equal(np.asarray(Image.open(output)), result)
    assert str(output) in captured.out
    assert "succeeded" in captured.err  # the progress bar's last frame, written without a TTY

    request = fake.submits[-1]
    assert request.spec.label == "hero"
    spec = request.spec.upscale
    assert fake.uploads[spec.image_id] == image.read_bytes()
    assert list(spec.selected_tiles) == [0, 2]
    assert dict(spec.tile_prompts) == {1: "a door"}
    assert spec.regions[0].rect == common_pb2.Rect(x=1, y=2, width=3, height=4)
    assert spec.regions[0].prompt == "a face"
    settings = spec.settings
    assert settings.target.preset == gateway_pb2.RESOLUTION_PRESET_4K
    assert settings.tile_size == common_pb2.Size(width=512, height=768)
    assert [(lora.name, lora.weight) for lora in settings.loras] == [("a", 0.5), ("b", 1.0)]
    assert settings.seam_fix.enabled
    assert not settings.seam_fix.HasField("strength")
    assert settings.controlnet.enabled is False
    assert settings.color_fix == gateway_pb2.COLOR_FIX_MODE_WAVELET
    set_fields = {descriptor.name for descriptor, _ in settings.ListFields()}
    assert set_fields == {"target", "tile_size", "loras", "seam_fix", "controlnet", "color_fix"}


async def test_upscale_json_prints_one_document_and_no_progress(
    tilesmith, fake, image, result, tmp_path, capsys
) -> None:
    _succeed_with(fake, result)
    output = tmp_path / "out.webp"
    code = await tilesmith("upscale", str(image), "-o", str(output), "--json", "--scale", "3")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["output"] == str(output)
    assert document["job"]["id"] == "job-1"
    assert document["job"]["state"] == "JOB_STATE_SUCCEEDED"
    assert document["job"]["spec"]["upscale"]["settings"]["target"] == {"scale": 3.0}
    assert captured.err == ""
    assert fake.result_requests[-1].encoding == common_pb2.IMAGE_ENCODING_WEBP
    assert output.exists()


async def test_upscale_detach_prints_the_job_id_without_waiting(tilesmith, fake, image, capsys) -> None:
    assert await tilesmith("upscale", str(image), "--detach") == 0
    assert capsys.readouterr().out.strip() == "job-1"
    assert fake.calls["WatchJob"] == 0


async def test_settings_preset_is_the_base_and_flags_override_it(tilesmith, fake, image) -> None:
    preset = UpscaleOptions(target=(800, 600), fit="cover", strength=0.2, loras=[("x", 1.0)])
    fake.presets["soft"] = gateway_pb2.Preset(name="soft", settings=preset.to_settings())

    assert (
        await tilesmith("upscale", str(image), "--settings-preset", "soft", "--strength", "0.5", "--detach")
        == 0
    )
    settings = fake.submits[-1].spec.upscale.settings
    assert settings.strength == pytest.approx(0.5)
    assert settings.target.size == common_pb2.Size(width=800, height=600)
    assert settings.target.fit == gateway_pb2.TARGET_FIT_COVER
    assert [lora.name for lora in settings.loras] == ["x"]

    # A new scale drops the preset's fit, which belonged to its exact size.
    assert (
        await tilesmith("upscale", str(image), "--settings-preset", "soft", "--scale", "2", "--detach") == 0
    )
    target = fake.submits[-1].spec.upscale.settings.target
    assert target.scale == 2.0
    assert target.fit == gateway_pb2.TARGET_FIT_UNSPECIFIED


async def test_generate_sends_base_and_enhance_settings(tilesmith, fake, result, tmp_path, capsys) -> None:
    _succeed_with(fake, result)
    output = tmp_path / "castle.png"
    code = await tilesmith(
        "generate", "a castle", "-o", str(output), "--negative-prompt", "blurry", "--base-size", "640x384",
        "--base-steps", "20", "--size", "1280x768", "--fit", "cover", "--seed", "9", "--keep-intermediates",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    spec = fake.submits[-1].spec.generate
    assert spec.prompt == "a castle"
    assert spec.negative_prompt == "blurry"
    assert spec.base_size == common_pb2.Size(width=640, height=384)
    assert spec.base_steps == 20
    assert not spec.HasField("base_cfg_scale")
    assert spec.settings.target.size == common_pb2.Size(width=1280, height=768)
    assert spec.settings.seed == 9
    assert spec.settings.keep_intermediates
    assert Image.open(output).size == (32, 24)


def test_the_progress_bar_shows_the_stage_tiles_and_eta() -> None:
    console = Console(file=io.StringIO(), width=120)
    event = gateway_pb2.JobEvent(
        tile_done=gateway_pb2.JobTileDone(tile_index=0),
        progress=gateway_pb2.JobProgress(
            stage=gateway_pb2.JOB_STAGE_SEAM_FIX, tiles_done=5, tiles_total=12, eta_seconds=65.2, fraction=0.5
        ),
    )
    with cli.JobProgress(console, disable=False) as progress:
        progress.update(event)
    frame = console.file.getvalue()
    assert "seam fix" in frame
    assert "50%" in frame
    assert "5/12 tiles" in frame
    assert "ETA 0:01:05" in frame


# --- Failures and exit codes ------------------------------------------------------------------------


async def test_a_failed_job_exits_1_with_its_message_field_and_request_id(
    tilesmith, fake, image, capsys
) -> None:
    error = gateway_pb2.JobError(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message="upscale.settings.overlap: must be below half the tile, got 600",
        field="upscale.settings.overlap",
        stage=gateway_pb2.JOB_STAGE_PLAN,
        request_id="req-1",
    )
    fake.on_submit = lambda job_id: fake.finish(job_id, error=error)
    assert await tilesmith("upscale", str(image)) == 1
    err = capsys.readouterr().err
    assert "job job-1 failed at plan: must be below half the tile, got 600" in err
    assert "upscale.settings.overlap" in err
    assert "req-1" in err
    assert "Traceback" not in err
    assert not image.with_name("sprite_tilesmith.png").exists()


async def test_invalid_argument_from_the_gateway_exits_2_naming_the_field(
    tilesmith, fake, image, capsys
) -> None:
    fake.refuse_submit = ("upscale.settings.strength", "must be in (0, 1], got 3")
    assert await tilesmith("upscale", str(image), "--strength", "3") == 2
    err = capsys.readouterr().err
    assert "invalid upscale.settings.strength: must be in (0, 1], got 3" in err
    assert "req-2" in err


async def test_an_unreachable_gateway_exits_3_naming_the_address(capsys) -> None:
    code = await asyncio.to_thread(cli.main, ["jobs", "cancel", "j", "--address", "127.0.0.1:1"])
    assert code == 3
    err = capsys.readouterr().err
    assert "cannot reach the gateway at 127.0.0.1:1" in err
    assert len(err.strip().splitlines()) == 1


async def test_not_found_exits_4(tilesmith, capsys) -> None:
    assert await tilesmith("jobs", "show", "nope") == 4
    assert "not found: no job nope" in capsys.readouterr().err
    assert await tilesmith("presets", "delete", "nope") == 4
    assert await tilesmith("models", "lora-delete", "nope") == 4


async def test_ctrl_c_while_waiting_cancels_the_job_then_exits_130(
    tilesmith, fake, image, monkeypatch, capsys
) -> None:
    def interrupt(self, event) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.JobProgress, "update", interrupt)
    assert await tilesmith("upscale", str(image)) == 130
    assert fake.calls["CancelJob"] == 1
    assert fake.jobs["job-1"].state == gateway_pb2.JOB_STATE_CANCELLED
    assert "Cancelling job job-1" in capsys.readouterr().err


async def test_usage_errors_exit_2(tilesmith, fake, image, tmp_path, capsys) -> None:
    assert await tilesmith("upscale", str(image), "--lora", "a:heavy") == 2
    assert "NAME[:WEIGHT]" in capsys.readouterr().err
    assert await tilesmith("upscale", str(image), "--scale", "2", "--preset", "4K") == 2
    assert "not allowed with" in capsys.readouterr().err
    assert await tilesmith("upscale", str(tmp_path / "missing.png")) == 2
    assert "no such file" in capsys.readouterr().err
    assert await tilesmith("upscale", str(image), "-o", str(tmp_path / "out.gif")) == 2
    assert "must end in .png" in capsys.readouterr().err
    assert await tilesmith("upscale", str(image), "--scale", "2", "--fit", "cover") == 2
    assert "--fit applies only with --size" in capsys.readouterr().err
    assert await tilesmith("jobs") == 2
    assert not fake.submits


async def test_help_exits_0() -> None:
    assert await asyncio.to_thread(cli.main, ["--help"]) == 0
    assert await asyncio.to_thread(cli.main, ["upscale", "--help"]) == 0


# --- jobs -------------------------------------------------------------------------------------------


async def test_jobs_list_as_a_table_and_as_json(tilesmith, fake, capsys) -> None:
    for i, state in enumerate([gateway_pb2.JOB_STATE_RUNNING, gateway_pb2.JOB_STATE_FAILED] * 2):
        fake.add_job(f"j{i}", state)
    assert await tilesmith("jobs", "list") == 0
    out = capsys.readouterr().out
    assert all(f"j{i}" in out for i in range(4))
    assert "running" in out

    # Global options may follow the command.
    assert await tilesmith("jobs", "list", "--state", "running", "--limit", "1", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in document["jobs"]] == ["j0"]
    assert list(fake.submits) == []


async def test_jobs_show_prints_the_job(tilesmith, fake, capsys) -> None:
    fake.add_job("j", gateway_pb2.JOB_STATE_RUNNING)
    assert await tilesmith("--json", "jobs", "show", "j") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "JOB_STATE_RUNNING"
    assert await tilesmith("jobs", "show", "j") == 0
    assert "running" in capsys.readouterr().out


async def test_jobs_watch_json_prints_a_line_per_event(tilesmith, fake, capsys) -> None:
    fake.add_job(
        "j", gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JobEvent(succeeded=gateway_pb2.JobSucceeded())
    )
    assert await tilesmith("--json", "jobs", "watch", "j", "--after-seq", "1") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [event["seq"] for event in events] == ["2", "3", "4"]
    assert "succeeded" in events[-1]
    assert fake.watch_after_seqs == [1]


async def test_jobs_watch_of_a_cancelled_job_exits_1(tilesmith, fake, capsys) -> None:
    fake.add_job(
        "j", gateway_pb2.JOB_STATE_CANCELLED, gateway_pb2.JobEvent(cancelled=gateway_pb2.JobCancelled())
    )
    assert await tilesmith("jobs", "watch", "j") == 1
    err = capsys.readouterr().err
    assert "job j was cancelled" in err
    assert "cancelled" in err.splitlines()[0]  # the progress bar's last frame


async def test_jobs_result_cancel_and_delete(tilesmith, fake, result, tmp_path, capsys) -> None:
    fake.add_job("done", gateway_pb2.JOB_STATE_SUCCEEDED)
    fake.results["done"] = _png(result)
    output = tmp_path / "redrawn.png"
    assert await tilesmith("jobs", "result", "done", "--intermediate", "redrawn", "-o", str(output)) == 0
    assert str(output) in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(output)), result)
    assert fake.result_requests[-1].intermediate == "redrawn"
    assert fake.result_requests[-1].encoding == common_pb2.IMAGE_ENCODING_UNSPECIFIED

    fake.add_job("busy", gateway_pb2.JOB_STATE_RUNNING)
    assert await tilesmith("--json", "jobs", "cancel", "busy") == 0
    assert json.loads(capsys.readouterr().out)["job"]["state"] == "JOB_STATE_CANCELLED"
    assert await tilesmith("jobs", "delete", "busy") == 0
    assert "busy" not in fake.jobs


# --- models, presets --------------------------------------------------------------------------------


async def test_lora_upload_list_and_delete(tilesmith, fake, tmp_path, capsys) -> None:
    path = tmp_path / "ink.safetensors"
    path.write_bytes(b"\x00weights" * 100)
    code = await tilesmith("models", "lora-upload", str(path), "--type", "style", "--trigger", "inky", "ink")
    assert code == 0, capsys.readouterr().err
    params, data, _ = fake.lora_uploads[-1]
    assert params.name == "ink"
    assert data == path.read_bytes()
    assert list(params.metadata.trigger_words) == ["inky", "ink"]
    assert "Uploaded LoRA ink" in capsys.readouterr().out

    assert await tilesmith("models", "lora-upload", str(path)) == 1  # the name is taken
    assert "AlreadyExists" in capsys.readouterr().err

    assert await tilesmith("models", "list") == 0
    out = capsys.readouterr().out
    assert "tiny-sdxl" in out
    assert "inky, ink" in out
    assert "internal" in out
    assert await tilesmith("--json", "models", "list") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["models"]["profile"] == "tiny"
    assert document["loras"]["loras"][0]["metadata"]["type"] == "LORA_TYPE_STYLE"
    assert document["providers"]["providers"][0]["name"] == "internal"

    assert await tilesmith("models", "lora-delete", "ink") == 0
    assert not fake.loras


async def test_presets_save_show_list_delete(tilesmith, fake, image, capsys) -> None:
    code = await tilesmith(
        "presets", "save", "soft", "--strength", "0.3", "--lora", "a:0.5", "--style-image", str(image),
        "--description", "gentle",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    stored = fake.presets["soft"]
    assert stored.description == "gentle"
    assert stored.settings.strength == pytest.approx(0.3)
    assert fake.uploads[stored.settings.ip_adapter.image_id] == image.read_bytes()
    capsys.readouterr()

    assert await tilesmith("--json", "presets", "show", "soft") == 0
    assert json.loads(capsys.readouterr().out)["settings"]["loras"] == [{"name": "a", "weight": 0.5}]
    assert await tilesmith("presets", "list") == 0
    assert "a:0.5" in capsys.readouterr().out
    assert await tilesmith("presets", "delete", "soft") == 0
    assert not fake.presets


async def test_the_token_is_sent_and_never_printed(gateway, monkeypatch, capsys) -> None:
    fake, address = gateway
    monkeypatch.setenv("TILESMITH_TOKEN", "hunter2")
    monkeypatch.setenv("TILESMITH_ADDRESS", address)
    fake.add_job("j", gateway_pb2.JOB_STATE_RUNNING)
    assert await asyncio.to_thread(cli.main, ["jobs", "show", "j"]) == 0
    assert await asyncio.to_thread(cli.main, ["jobs", "show", "nope"]) == 4
    assert fake.metadata[-1]["authorization"] == "Bearer hunter2"
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err


# --- serve, demo ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "module"), [("serve", "gateway.stack"), ("demo", "gateway.demo")])
async def test_serve_and_demo_without_the_server_parts_exit_2(command, module, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    assert await asyncio.to_thread(cli.main, [command]) == 2
    assert "pip install 'tilesmith[all]'" in capsys.readouterr().err


async def test_serve_passes_the_options_given(monkeypatch, tmp_path) -> None:
    calls = []
    stack = types.ModuleType("gateway.stack")
    stack.serve = lambda **options: calls.append(options) or 7
    monkeypatch.setitem(sys.modules, "gateway.stack", stack)
    assert await asyncio.to_thread(cli.main, ["serve", "--split", "--port", "6000"]) == 7
    assert calls == [{"profile": None, "split": True, "host": None, "port": 6000, "state_dir": None}]


def test_the_installed_script_runs() -> None:
    script = Path(sys.executable).with_name("tilesmith")
    completed = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "upscale" in completed.stdout
