"""The SDK's exception tree."""

from __future__ import annotations

import pickle

import pytest

from tilesmith import errors


def test_public_names_are_pinned() -> None:
    assert sorted(errors.__all__) == [
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


def test_invalid_argument_names_its_field() -> None:
    exc = errors.InvalidArgument("tile_size.width", "must be >= 64, got 8")

    assert exc.field == "tile_size.width"
    assert exc.message == "must be >= 64, got 8"
    assert str(exc) == "tile_size.width: must be >= 64, got 8"


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.ImageError, errors.InvalidArgument),
        (errors.ImageTooLarge, errors.ResourceExhausted),
        *[
            (cls, errors.TilesmithError)
            for cls in (
                errors.InvalidArgument,
                errors.NotFound,
                errors.AlreadyExists,
                errors.FailedPrecondition,
                errors.ResourceExhausted,
                errors.Unavailable,
                errors.Cancelled,
                errors.DeadlineExceeded,
                errors.Unauthenticated,
                errors.Internal,
            )
        ],
    ],
)
def test_tree(child: type, parent: type) -> None:
    assert issubclass(child, parent)


@pytest.mark.parametrize(
    "exc",
    [
        errors.ImageError("image.data", "is a GIF file"),
        errors.ImageTooLarge("image: 9x9 is over the cap"),
        errors.NotFound("no job 'abc'"),
    ],
)
def test_errors_survive_pickling(exc: errors.TilesmithError) -> None:
    copy = pickle.loads(pickle.dumps(exc))

    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert copy.message == exc.message
    assert getattr(copy, "field", None) == getattr(exc, "field", None)
