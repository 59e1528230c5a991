"""gRPC status -> `tilesmith.errors`: the client half of "errors mapped in one place".

Tilesmith servers (services/common/interceptors.py) abort a failed call with its status code and, in
trailing metadata, ``tilesmith-error`` (the exception class), ``tilesmith-field`` (an InvalidArgument's
field) and ``x-request-id``. `error_from_rpc` rebuilds the same exception from them, so the SDK client
and the gateway raise the very class the server raised. Errors that no Tilesmith server produced
(a refused connection, a deadline, a message over the limit) have no class in the metadata and are
mapped by their status code.
"""

from __future__ import annotations

import grpc

from tilesmith import errors

__all__ = ["ERROR_CLASS_KEY", "ERROR_FIELD_KEY", "REQUEST_ID_KEY", "error_from_rpc"]

REQUEST_ID_KEY = "x-request-id"
ERROR_CLASS_KEY = "tilesmith-error"
ERROR_FIELD_KEY = "tilesmith-field"

# An INVALID_ARGUMENT that names no field is about the request as a whole.
_WHOLE_REQUEST = "request"

_CLASSES_BY_CODE: dict[grpc.StatusCode, type[errors.TilesmithError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
}

_CLASSES_BY_NAME: dict[str, type[errors.TilesmithError]] = {
    name: getattr(errors, name) for name in errors.__all__
}


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Code, details and text trailing metadata. AioRpcError and a sync stub's error both have the
    three methods without sharing a base class that declares them; a bare RpcError has none."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or code.name
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return code, details, {key: value for key, value in (trailing or ()) if isinstance(value, str)}


def error_from_rpc(exc: grpc.RpcError, *, message: str | None = None) -> errors.TilesmithError:
    """The `tilesmith.errors` exception a failed call stands for; raise it ``from exc``.

    Args:
        exc: A failed call (`grpc.aio.AioRpcError`, or the error of a synchronous stub).
        message: Replaces the status details, for callers that must not pass them on (the gateway
            hides a backend's addresses from its own clients).

    Returns:
        The class named by the ``tilesmith-error`` trailing metadata when it is one of
        `tilesmith.errors`, else the class for the status code (`Internal` for codes Tilesmith does
        not use). An `InvalidArgument` keeps its ``.field``; every error carries the server's
        ``.request_id`` (``None`` when the server sent none).
    """
    code, details, trailing = _status(exc)
    return build_error(
        code,
        message if message is not None else details,
        error_class=trailing.get(ERROR_CLASS_KEY, ""),
        field=trailing.get(ERROR_FIELD_KEY, ""),
        request_id=trailing.get(REQUEST_ID_KEY),
    )


def build_error(
    code: grpc.StatusCode,
    message: str,
    *,
    error_class: str = "",
    field: str = "",
    request_id: str | None = None,
) -> errors.TilesmithError:
    """The `tilesmith.errors` exception for a status: the one mapping, shared by failed calls and
    failed jobs (Job.error carries the same code, class, field and request id).

    The class is `error_class` when it names one of `tilesmith.errors`, else the class for `code`
    (`Internal` for codes Tilesmith does not use). An InvalidArgument's message arrives as
    "field: message" (its str()); the prefix is dropped and `field` kept (`request` when none).
    """
    cls = _CLASSES_BY_NAME.get(error_class) or _CLASSES_BY_CODE.get(code, errors.Internal)
    if issubclass(cls, errors.InvalidArgument):
        field = field or _WHOLE_REQUEST
        error: errors.TilesmithError = cls(field, message.removeprefix(f"{field}: "))
    else:
        error = cls(message)
    error.request_id = request_id  # type: ignore[attr-defined]
    return error
