"""`error_from_rpc`: failed calls back into the `tilesmith.errors` tree."""

from __future__ import annotations

import grpc
import pytest

from tilesmith import errors
from tilesmith._status import error_from_rpc


def _rpc_error(code: grpc.StatusCode, details: str, *trailing: tuple[str, str]) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def test_invalid_argument_is_rebuilt_with_its_field_and_request_id() -> None:
    exc = _rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "tile_size.width: must be between 64 and 4096 pixels, got 3",
        ("x-request-id", "req-1"),
        ("tilesmith-error", "InvalidArgument"),
        ("tilesmith-field", "tile_size.width"),
    )
    error = error_from_rpc(exc)
    assert type(error) is errors.InvalidArgument
    assert error.field == "tile_size.width"
    assert error.message == "must be between 64 and 4096 pixels, got 3"
    assert str(error) == "tile_size.width: must be between 64 and 4096 pixels, got 3"
    assert error.request_id == "req-1"


def test_subclass_named_in_metadata_wins_over_the_status_code() -> None:
    exc = _rpc_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "image_size: 99999x99999 is over the pixel cap",
        ("tilesmith-error", "ImageTooLarge"),
    )
    error = error_from_rpc(exc)
    assert type(error) is errors.ImageTooLarge
    assert error.message == "image_size: 99999x99999 is over the pixel cap"
    assert error.request_id is None


def test_image_error_keeps_its_field() -> None:
    exc = _rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "image.data: not a PNG",
        ("tilesmith-error", "ImageError"),
        ("tilesmith-field", "image.data"),
    )
    error = error_from_rpc(exc)
    assert type(error) is errors.ImageError
    assert (error.field, error.message) == ("image.data", "not a PNG")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.CANCELLED, errors.Cancelled),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Internal),
        (grpc.StatusCode.UNKNOWN, errors.Internal),
    ],
)
def test_without_metadata_the_status_code_decides(code: grpc.StatusCode, cls: type) -> None:
    error = error_from_rpc(_rpc_error(code, "failed to connect to all addresses"))
    assert type(error) is cls
    assert error.message == "failed to connect to all addresses"


def test_unknown_class_name_falls_back_to_the_status_code() -> None:
    exc = _rpc_error(grpc.StatusCode.NOT_FOUND, "no job abc", ("tilesmith-error", "NoSuchThing"))
    assert type(error_from_rpc(exc)) is errors.NotFound


def test_invalid_argument_without_a_field_is_about_the_request() -> None:
    error = error_from_rpc(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad request"))
    assert (error.field, error.message) == ("request", "bad request")


def test_message_can_replace_the_details() -> None:
    exc = _rpc_error(grpc.StatusCode.UNAVAILABLE, "ipv4:10.0.0.7:50052: Connection refused")
    assert str(error_from_rpc(exc, message="the diffusion service is unavailable")) == (
        "the diffusion service is unavailable"
    )


def test_failed_job_maps_to_the_class_a_direct_call_would_raise() -> None:
    from tilesmith.client import job_error
    from tilesmith.v1 import gateway_pb2

    too_large = gateway_pb2.Job(
        error=gateway_pb2.JobError(
            code=8, message="image: 99999x99999 is too large", error_class="ImageTooLarge"
        )
    )
    assert type(job_error(too_large)) is errors.ImageTooLarge
    invalid = gateway_pb2.Job(
        error=gateway_pb2.JobError(
            code=3,
            message="upscale.settings.overlap: must be below 512",
            field="upscale.settings.overlap",
            request_id="r1",
        )
    )
    error = job_error(invalid)
    assert isinstance(error, errors.InvalidArgument)
    assert error.field == "upscale.settings.overlap"
    assert error.message == "must be below 512"
    assert error.request_id == "r1"
