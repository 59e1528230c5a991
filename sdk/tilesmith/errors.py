"""The exceptions Tilesmith raises, shared by the SDK and every server.

Domain code raises these; one server interceptor turns them into gRPC status codes, and the SDK's
client turns status codes back into the same classes, so callers catch the same names on both sides.

    TilesmithError              base class; ``.message``
     ├─ InvalidArgument         a request field is wrong; ``.field``, str() is "field: message"
     │   └─ ImageError          an image that cannot be used: undecodable, corrupt or unsupported
     ├─ NotFound
     ├─ AlreadyExists           e.g. a LoRA or preset name that is taken
     ├─ FailedPrecondition      e.g. an incompatible LoRA, a model that is not loaded
     ├─ ResourceExhausted       e.g. a full queue, out of GPU memory
     │   └─ ImageTooLarge       an image over a pixel or byte cap
     ├─ Unavailable
     ├─ Cancelled
     ├─ DeadlineExceeded
     ├─ Unauthenticated
     └─ Internal
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
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
    """Base class of every Tilesmith error.

    Args:
        message: What went wrong, written for the person who sent the request.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TilesmithError):
    """A request field holds a value that is not allowed.

    Args:
        field: The offending field, dotted from the request (``image.data``, ``tile_size.width``).
        message: The value and what is allowed instead.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        # Both arguments, so the exception survives pickling (multiprocessing, test runners).
        self.args = (field, message)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ImageError(InvalidArgument):
    """An image that cannot be used: undecodable, truncated, corrupt, or in an unsupported format."""


class NotFound(TilesmithError):
    """The named job, model, LoRA or preset does not exist."""


class AlreadyExists(TilesmithError):
    """A name is taken (LoRA, preset) and the request did not ask to overwrite it."""


class FailedPrecondition(TilesmithError):
    """The request is well formed but the system is not in a state to run it."""


class ResourceExhausted(TilesmithError):
    """A limit was hit: a full queue, GPU memory, or a size cap."""


class ImageTooLarge(ResourceExhausted):
    """An image over a pixel or byte cap, refused before it was decoded or buffered."""


class Unavailable(TilesmithError):
    """A backend cannot be reached right now; retrying may succeed."""


class Cancelled(TilesmithError):
    """The work was cancelled by its caller."""


class DeadlineExceeded(TilesmithError):
    """The work did not finish before its deadline."""


class Unauthenticated(TilesmithError):
    """The request carries no valid credentials."""


class Internal(TilesmithError):
    """A bug or an unexpected failure; the detail is in the server's log."""
