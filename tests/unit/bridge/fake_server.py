"""A real HTTP server on 127.0.0.1 that speaks the providers' documented APIs, for service and e2e tests.

Paths: /fal/<endpoint> (fal.ai queue), /zai/chat/completions (z.ai), /openrouter/chat/completions,
/replicate/v1/... (Replicate), /files/out.png (result downloads). `failures[name]` makes the next
answers of a provider HTTP 503 (with the key echoed in the body, to check scrubbing).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .conftest import png_bytes

PNG = png_bytes(16, 12, (10, 120, 240))


class FakeProviders:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.failures: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: object = None, raw: bytes | None = None, headers=()) -> None:
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "image/png" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                fake.requests.append((method, self.path, dict(self.headers), body))
                provider = self.path.split("/")[1]
                if fake.failures.get(provider, 0) > 0:
                    fake.failures[provider] -= 1
                    key = self.headers.get("Authorization", "")
                    self._send(503, {"detail": f"overloaded (request had {key})"})
                    return
                fake.route(self, method, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, handler, method: str, body: dict) -> None:
        path = handler.path
        if path == "/files/out.png":
            handler._send(200, raw=PNG)
        elif path.startswith("/fal/") and method == "POST":
            endpoint = path.removeprefix("/fal/")
            root = f"{self.base}/fal/{endpoint}/requests/r1"
            handler._send(200, {"request_id": "r1", "status_url": f"{root}/status", "response_url": root})
        elif path.startswith("/fal/") and path.endswith("/status"):
            handler._send(200, {"status": "COMPLETED"})
        elif path.startswith("/fal/"):
            handler._send(200, {"images": [{"url": f"{self.base}/files/out.png"}], "seed": 99})
        elif path.endswith("/chat/completions") and "modalities" in body:
            uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
            handler._send(
                200, {"choices": [{"message": {"content": "", "images": [{"image_url": {"url": uri}}]}}]}
            )
        elif path.endswith("/chat/completions"):
            answer = "A blue square on nothing.\nPrompt: a blue square, flat colour"
            handler._send(200, {"choices": [{"message": {"content": answer}}]})
        elif path.startswith("/replicate/v1/") and method == "POST":
            get = f"{self.base}/replicate/v1/predictions/p1"
            handler._send(201, {"id": "p1", "status": "starting", "urls": {"get": get}})
        elif path == "/replicate/v1/predictions/p1":
            handler._send(200, {"id": "p1", "status": "succeeded", "output": [f"{self.base}/files/out.png"]})
        else:
            handler._send(404, {"detail": "no such route"})

    def urls(self) -> dict[str, str]:
        return {
            "fal_base_url": f"{self.base}/fal",
            "zai_base_url": f"{self.base}/zai",
            "openrouter_base_url": f"{self.base}/openrouter",
            "replicate_base_url": f"{self.base}/replicate",
        }

    def __enter__(self) -> FakeProviders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
