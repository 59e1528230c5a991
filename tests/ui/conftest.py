"""One embedded stack (tiny profile) for the UI tests, run in a thread of its own: AppTest and a
`streamlit run` subprocess call it synchronously, so its event loop must keep running between tests."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from gateway.stack import EmbeddedStack
from services.diffusion.tiny import build_tiny_models, default_cache_dir
from tests.gateway.conftest import noise, stack_config

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
FAST = {"up_tile": 64, "up_overlap": 16, "up_steps": 4, "up_strength": 0.5, "up_seed": 1234}


class StackThread:
    def __init__(self, config) -> None:
        self.config = config
        self.address = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ui-stack", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with EmbeddedStack(self.config) as stack:
                self.address = stack.address
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> StackThread:
        self._thread.start()
        self._ready.wait(180)
        if self._error is not None or not self.address:
            raise RuntimeError("the embedded stack did not start") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def private_models(root: Path) -> Path:
    """The shared tiny models, linked, with a private copy of the LoRA folder (the Models page uploads
    and deletes LoRAs; other test sessions share the cache)."""
    cache = build_tiny_models(default_cache_dir())
    models = root / "models"
    models.mkdir()
    for entry in cache.iterdir():
        if entry.name == "loras":
            shutil.copytree(entry, models / "loras")
        else:
            (models / entry.name).symlink_to(entry)
    return models


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-gateway")
    with StackThread(stack_config(root, models_dir=private_models(root))) as running:
        yield running


@pytest.fixture
def gateway_env(ui_stack, monkeypatch):
    monkeypatch.setenv("TILESMITH_ADDRESS", ui_stack.address)
    monkeypatch.delenv("TILESMITH_TOKEN", raising=False)
    return ui_stack.address


def png(width: int = 48, height: int = 40, channels: int = 3, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(noise(width, height, channels, seed)).save(buffer, format="PNG")
    return buffer.getvalue()
