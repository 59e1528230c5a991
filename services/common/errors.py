"""Domain errors for server code: the SDK's exception tree (see `tilesmith.errors`), re-exported so
services raise the very classes the SDK gives back to callers."""

from tilesmith.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    ImageError,
    ImageTooLarge,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TilesmithError,
    Unauthenticated,
    Unavailable,
)

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
