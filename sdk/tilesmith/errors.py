"""The one exception tree of Tilesmith, shared by the servers and the SDK.

Servers raise these from domain code; one server interceptor turns them into gRPC status codes
(services/common/interceptors.py) and the SDK's client turns status codes back into the same classes,
so a script catches `tilesmith.errors.InvalidArgument` whether it runs embedded or over the network.

    TilesmithError                    base; `.message`
     ├── InvalidArgument              INVALID_ARGUMENT; `.field` names the offending field
     │    └── ImageError              an image that cannot be decoded (corrupt, truncated, unsupported)
     ├── NotFound                     NOT_FOUND
     ├── FailedPrecondition           FAILED_PRECONDITION (incompatible LoRA, model not loaded)
     ├── ResourceExhausted            RESOURCE_EXHAUSTED (queue full, out of memory)
     │    └── ImageTooLarge           pixel or byte cap exceeded, refused before decoding
     ├── Unavailable                  UNAVAILABLE (a backend or provider cannot be reached)
     ├── Cancelled                    CANCELLED
     ├── DeadlineExceeded             DEADLINE_EXCEEDED
     ├── Unauthenticated              UNAUTHENTICATED
     └── Internal                     INTERNAL (detail in the server log, under `request_id`)
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "ImageError",
    "ImageTooLarge",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "TilesmithError",
    "Unauthenticated",
    "Unavailable",
]


class TilesmithError(Exception):
    """Base of every error Tilesmith raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TilesmithError):
    """A request field is out of range or malformed; `field` names it (dotted path, e.g. `tile_size.width`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ImageError(InvalidArgument):
    """An image that cannot be decoded: corrupt, truncated or in an unsupported format."""


class NotFound(TilesmithError):
    """A named thing (job, image, LoRA, preset) does not exist."""


class FailedPrecondition(TilesmithError):
    """The request is valid but the system is not in a state to run it."""


class ResourceExhausted(TilesmithError):
    """A queue is full, memory ran out, or an input exceeds a size cap."""


class ImageTooLarge(ResourceExhausted):
    """An image exceeds the pixel or byte cap; refused before it is decoded."""


class Unavailable(TilesmithError):
    """A backend or hosted provider cannot be reached; the call may be retried."""


class Cancelled(TilesmithError):
    """The work was cancelled by its caller."""


class DeadlineExceeded(TilesmithError):
    """The work did not finish before its deadline."""


class Unauthenticated(TilesmithError):
    """A missing or wrong bearer token."""


class Internal(TilesmithError):
    """An unexpected failure; the server log has the detail under the request id."""

    def __init__(self, message: str, request_id: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id
