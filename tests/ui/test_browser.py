"""The Upscale page in a real headless Chromium, driven through the DevTools protocol: `streamlit run`
as a subprocess against the in-process gateway, upload an image, Upscale All, wait for the result.
Screenshots land in tests/artifacts/ui/. No browser: skipped locally, a failure when CI is set."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from gateway.stack import free_port
from tests.ui.conftest import APP, png

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1100",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium); CI must run the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def wait_until(predicate, within: float, what: str, every: float = 0.25):
    end = time.monotonic() + within
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {within} s waiting for {what}")


class DevTools:
    """A minimal DevTools protocol client: one page target, commands answered by id."""

    def __init__(self, url: str) -> None:
        self._ws = connect(url, max_size=64 * 1024 * 1024, open_timeout=30)
        self._ids = itertools.count(1)

    def send(self, method: str, **params):
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()


@pytest.fixture
def streamlit_url(ui_stack, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "TILESMITH_ADDRESS": ui_stack.address,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("TILESMITH_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            APP,
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        env=env,
        stdout=(tmp_path / "streamlit.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None  # ends the wait; asserted below

    wait_until(healthy, 60, "streamlit to start")
    assert process.poll() is None, (tmp_path / "streamlit.log").read_text()
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def browser(tmp_path):
    executable = chromium()
    profile = tmp_path / "chromium"
    process = subprocess.Popen(
        [
            executable,
            *CHROMIUM_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    wait_until(port_file.exists, 30, "chromium's DevTools port")
    port = int(port_file.read_text().split()[0])
    targets = wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/json/list").json(), 10, "a page target")
    page = next(target for target in targets if target["type"] == "page")
    tools = DevTools(page["webSocketDebuggerUrl"])
    yield tools
    tools.close()
    process.terminate()
    process.wait(10)


def test_upscale_all_in_a_real_browser(streamlit_url, browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = tmp_path / "sprite.png"
    image.write_bytes(png(48, 40, channels=4, seed=11))
    browser.send("Page.enable")
    browser.send("Page.navigate", url=streamlit_url)
    wait_until(
        lambda: browser.evaluate("!!document.querySelector('input[type=file]')"), 60, "the upload control"
    )

    # 1. Upload through the real file input
    root = browser.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
    node = browser.send("DOM.querySelector", nodeId=root, selector="input[type=file]")["nodeId"]
    browser.send("DOM.setFileInputFiles", nodeId=node, files=[str(image)])
    wait_until(lambda: browser.evaluate("document.body.innerText.includes('tiles of')"), 60, "the tile grid")
    time.sleep(1.0)  # let the grid image paint

    # 2. Click the grid's only tile: it becomes selected and its detail opens
    box = wait_until(
        lambda: browser.evaluate(
            "(() => { const img = [...document.querySelectorAll('*')].map(e => e.shadowRoot &&"
            " e.shadowRoot.querySelector('img.tile-grid')).find(Boolean);"
            " if (!img || !img.complete) return null; const r = img.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        ),
        20,
        "the clickable grid",
    )
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
    wait_until(lambda: browser.evaluate("document.body.innerText.includes('Tile 0')"), 30, "the tile detail")
    time.sleep(1.0)
    browser.screenshot(ARTIFACTS / "upscale_before.png")

    # 3. Upscale All, then wait for the before/after images
    clicked = browser.evaluate(
        "(() => { const b = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Upscale All'));"
        " if (!b || b.disabled) return false; b.click(); return true; })()"
    )
    assert clicked, "Upscale All is on the page and enabled"
    wait_until(
        lambda: browser.evaluate("document.body.innerText.includes('After · 96x80')"), 90, "the result"
    )
    loaded = wait_until(
        lambda: browser.evaluate(
            "[...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length"
        ),
        20,
        "the result images to load",
    )
    assert loaded >= 2  # before and after (and the tile detail)
    wait_until(
        lambda: browser.evaluate("document.body.innerText.includes('Download PNG')"), 20, "the download"
    )
    assert not browser.evaluate("document.body.innerText.includes('Traceback')")
    time.sleep(0.5)
    browser.screenshot(ARTIFACTS / "upscale_after.png")
    browser.evaluate(
        "[...document.querySelectorAll('h3')].find(h => h.innerText.includes('Result')).scrollIntoView()"
    )
    time.sleep(0.5)
    browser.screenshot(ARTIFACTS / "upscale_result.png")
    assert (ARTIFACTS / "upscale_result.png").stat().st_size > 10_000
