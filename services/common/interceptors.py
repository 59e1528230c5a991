"""Server interceptors: request ids and error mapping, metrics, bearer-token auth.

Each interceptor wraps a method's behaviour in an async context manager (`around`), so one piece of
code serves unary and streaming methods alike. Order on a server (outermost first):

    MetricsInterceptor -> ErrorInterceptor -> AuthInterceptor -> servicer

so metrics see the final status code of every call (auth failures included) and every log line of a
call, the auth refusal's included, carries the call's request id.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc

from services.common.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TilesmithError,
    Unauthenticated,
    Unavailable,
)
from services.common.logging import request_id_var
from services.common.metrics import ServerMetrics

__all__ = [
    "REQUEST_ID_KEY",
    "AuthInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "status_code_for",
]

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
ERROR_CLASS_KEY = "tilesmith-error"
ERROR_FIELD_KEY = "tilesmith-field"

# Most specific first: the first matching class decides the code.
_STATUS_CODES: tuple[tuple[type[TilesmithError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Cancelled, grpc.StatusCode.CANCELLED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Internal, grpc.StatusCode.INTERNAL),
)

Hook = Callable[[grpc.aio.ServicerContext, str], AbstractAsyncContextManager[None]]


def status_code_for(exc: TilesmithError) -> grpc.StatusCode:
    """The gRPC status code a domain error is reported with."""
    for cls, code in _STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _wrap_handler(handler: grpc.RpcMethodHandler, method: str, hook: Hook) -> grpc.RpcMethodHandler:
    """Rebuild `handler` with its behaviour running inside `hook(context, method)`."""
    if handler.response_streaming:
        behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with hook(context, method):
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write() and returns nothing
                    await result

        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        wrapped = streaming
    else:
        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with hook(context, method):
                return await behavior(request, context)

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        wrapped = unary
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _AroundInterceptor(grpc.aio.ServerInterceptor):
    """Runs every method of every service inside `self.around(context, method)`."""

    def around(self, context: grpc.aio.ServicerContext, method: str) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    def wants(self, method: str) -> bool:
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.wants(method):
            return handler
        return _wrap_handler(handler, method, self.around)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


class ErrorInterceptor(_AroundInterceptor):
    """Gives every call a request id and maps the domain exception tree to status codes.

    The request id comes from the caller's `x-request-id` metadata or is made up; it is set in the
    logging context and returned in trailing metadata. A domain error becomes its status code with
    its own message (and, in trailing metadata, its class and field, so the SDK can raise the same
    class). Anything else becomes INTERNAL with a generic message naming the request id; the
    traceback goes to the log under that id.
    """

    @asynccontextmanager
    async def around(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        request_id = _metadata(context).get(REQUEST_ID_KEY) or uuid.uuid4().hex[:16]
        request_id_var.set(request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        try:
            yield
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except TilesmithError as exc:
            code = status_code_for(exc)
            log.info("%s failed: %s %s", method, code.name, exc.message, extra={"request_id": request_id})
            trailing = [(REQUEST_ID_KEY, request_id), (ERROR_CLASS_KEY, type(exc).__name__)]
            if isinstance(exc, InvalidArgument):
                trailing.append((ERROR_FIELD_KEY, exc.field))
            await context.abort(code, str(exc), trailing_metadata=tuple(trailing))
        except NotImplementedError:  # generated servicer bases raise it for methods a service lacks
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method} is not implemented by this server",
                trailing_metadata=((REQUEST_ID_KEY, request_id),),
            )
        except Exception:
            log.exception("%s failed with an unexpected error", method, extra={"request_id": request_id})
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error; the server log has the detail under request id {request_id}",
                trailing_metadata=((REQUEST_ID_KEY, request_id), (ERROR_CLASS_KEY, "Internal")),
            )


class AuthInterceptor(_AroundInterceptor):
    """Refuses calls without `authorization: Bearer <token>` (UNAUTHENTICATED).

    Health checks stay open: kubelet probes and load balancers carry no token.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("AuthInterceptor needs a non-empty token")
        self._expected = f"Bearer {token}".encode()

    def wants(self, method: str) -> bool:
        return not method.startswith("/grpc.health.v1.Health/")

    @asynccontextmanager
    async def around(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        given = _metadata(context).get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            log.warning("%s refused: missing or invalid bearer token", method)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        yield


class MetricsInterceptor(_AroundInterceptor):
    """Counts started and handled calls by status code and times them (go-grpc-prometheus names)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._types: dict[str, str] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        self._types[method] = _rpc_type(handler)
        return _wrap_handler(handler, method, self.around)

    @asynccontextmanager
    async def around(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        service, _, name = method.lstrip("/").partition("/")
        labels = {"grpc_type": self._types.get(method, "unary"), "grpc_service": service, "grpc_method": name}
        self._metrics.started.labels(**labels).inc()
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
            code = context.code() or grpc.StatusCode.OK
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            if isinstance(code, int):  # context.code() may give the raw integer
                code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
            self._metrics.handled.labels(**labels, grpc_code=code.name).inc()
            self._metrics.handling_seconds.labels(**labels).observe(time.perf_counter() - start)
