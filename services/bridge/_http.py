"""One HTTP exchange with a hosted provider: auth header, retries with backoff, sanitised errors.

Every failure leaves this module as an `UpstreamError` carrying the gRPC status code it maps to, the
provider's HTTP status (0 when none came) and a message from which the key and any credentials in URLs
have been cut. Retries (tenacity) cover HTTP 429, 5xx and connection errors; a `Retry-After` header
(seconds or an HTTP date) sets the wait, capped at `max_wait`.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

log = logging.getLogger(__name__)

__all__ = ["Sleep", "UpstreamCall", "UpstreamError", "decode_data_uri", "encode_data_uri", "scrub"]

Sleep = Callable[[float], Awaitable[None]]

_CREDENTIAL_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_CREDENTIAL_QUERY = re.compile(
    r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)\b(bearer|key)\s+[A-Za-z0-9._\-:]{12,}")
_MAX_MESSAGE = 300


def scrub(text: str, *secrets: SecretStr | None) -> str:
    """`text` without the given secrets, credentials in URLs, or bearer tokens; shortened to 300 characters."""
    for secret in secrets:
        if secret is not None and (value := secret.get_secret_value()):
            text = text.replace(value, "***")
    text = _CREDENTIAL_URL.sub(r"\1***@", text)
    text = _CREDENTIAL_QUERY.sub(r"\1***", text)
    text = _BEARER.sub(r"\1 ***", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


class UpstreamError(Exception):
    """A provider call that failed; `status_code` is the grpc.StatusCode it maps to."""

    def __init__(self, status_code: grpc.StatusCode, message: str, http_status: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status
        self.retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return (
            self.http_status == 429
            or self.http_status >= 500
            or (self.http_status == 0 and self.status_code == grpc.StatusCode.UNAVAILABLE)
        )

    @property
    def provider_fault(self) -> bool:
        """True when the failure says something about the provider's health (counts for its breaker)."""
        return self.status_code != grpc.StatusCode.INVALID_ARGUMENT


def status_for_http(http_status: int) -> grpc.StatusCode:
    if http_status == 429:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if http_status >= 500:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INVALID_ARGUMENT


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed is not None else None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if key in body:
                value = body[key]
                if isinstance(value, dict):
                    value = value.get("message", value)
                return str(value)
    return str(body)


@dataclass
class UpstreamCall:
    """The HTTP side of one provider attempt: every request it makes, with retries counted.

    Args:
        client: The shared httpx client (its transport is injected in tests).
        key: The provider's key, sent as `auth_scheme <key>` and cut from every error.
        auth_scheme: "Key" for fal.ai, "Bearer" for the others.
        max_retries: Retries after the first try of each request, on 429, 5xx and connection errors.
        backoff: First wait between tries, doubled each time, capped at `max_wait` (seconds).
        max_wait: Longest wait, also the cap on a provider's Retry-After.
        sleep: How to wait (tests inject one that does not).
        observe: Called with each request's duration in seconds (the upstream latency metric).
    """

    client: httpx.AsyncClient
    key: SecretStr | None
    auth_scheme: str
    max_retries: int
    backoff: float
    max_wait: float
    sleep: Sleep
    observe: Callable[[float], None] = lambda seconds: None
    retries: int = 0
    http_status: int = 0
    waits: list[float] = field(default_factory=list)

    def _headers(self) -> dict[str, str]:
        assert self.key is not None
        return {"Authorization": f"{self.auth_scheme} {self.key.get_secret_value()}"}

    def _fail(self, status_code: grpc.StatusCode, message: str, http_status: int = 0) -> UpstreamError:
        return UpstreamError(status_code, scrub(message, self.key), http_status)

    async def _once(self, method: str, url: str, json: Any | None) -> httpx.Response:
        start = time.perf_counter()
        try:
            response = await self.client.request(method, url, json=json, headers=self._headers())
        except httpx.TimeoutException as exc:
            raise self._fail(grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise self._fail(grpc.StatusCode.UNAVAILABLE, f"connection failed: {exc}") from exc
        finally:
            self.observe(time.perf_counter() - start)
        self.http_status = response.status_code
        if response.is_success:
            return response
        error = self._fail(
            status_for_http(response.status_code),
            f"HTTP {response.status_code}: {_error_text(response)}",
            response.status_code,
        )
        error.retry_after = _retry_after(response)
        raise error

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = min(self.max_wait, self.backoff * 2 ** (state.attempt_number - 1))
        if isinstance(error, UpstreamError) and error.retry_after is not None:
            wait = min(self.max_wait, error.retry_after)
        self.waits.append(wait)
        return wait

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        log.info(
            "retrying provider request",
            extra={"attempt": state.attempt_number, "retry_status": self.http_status},
        )

    async def json(self, method: str, url: str, body: Any | None = None) -> Any:
        """Send a request (retrying as configured) and return its JSON body."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamError) and exc.retryable),
            before_sleep=self._count_retry,
            sleep=self.sleep,
            reraise=True,
        )
        response = await retrying(self._once, method, url, body)
        try:
            return response.json()
        except ValueError as exc:
            raise self._fail(
                grpc.StatusCode.UNAVAILABLE, "the provider answered with malformed JSON", response.status_code
            ) from exc

    async def download(self, url: str, max_bytes: int) -> bytes:
        """The bytes at `url` (a result file; no key is sent), or those of a data URI; at most `max_bytes`."""
        if url.startswith("data:"):
            return decode_data_uri(url, max_bytes)
        if not url.startswith(("https://", "http://")):
            raise self._fail(
                grpc.StatusCode.UNAVAILABLE, f"the provider returned an unusable result URL {url[:60]!r}"
            )
        start = time.perf_counter()
        try:
            async with self.client.stream("GET", url) as response:
                self.http_status = response.status_code
                if not response.is_success:
                    raise self._fail(
                        status_for_http(response.status_code),
                        f"downloading the result failed with HTTP {response.status_code}",
                        response.status_code,
                    )
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise self._fail(
                            grpc.StatusCode.UNAVAILABLE,
                            f"the result is larger than the cap of {max_bytes} bytes",
                        )
                return bytes(data)
        except httpx.TimeoutException as exc:
            raise self._fail(grpc.StatusCode.DEADLINE_EXCEEDED, "timed out downloading the result") from exc
        except httpx.HTTPError as exc:
            raise self._fail(grpc.StatusCode.UNAVAILABLE, f"downloading the result failed: {exc}") from exc
        finally:
            self.observe(time.perf_counter() - start)


def encode_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.endswith(";base64") or len(payload) * 3 // 4 > max_bytes + 3:
        raise UpstreamError(
            grpc.StatusCode.UNAVAILABLE, "the provider returned an unusable or oversized data URI"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise UpstreamError(
            grpc.StatusCode.UNAVAILABLE, "the provider returned a malformed data URI"
        ) from exc
