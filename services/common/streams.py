"""Reading the request streams of chunked RPCs.

Calls that carry whole images are client streams whose messages hold one `part` oneof: a `params`
message first, then image chunks (one or more named image fields), then items such as tiles.
`PartStream` reads such a stream, enforces that order where it matters, and reassembles images
under byte caps, with errors naming the field at fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from services.common.errors import DeadlineExceeded, InvalidArgument
from tilesmith.images import ChunkAssembler

__all__ = ["PartStream"]


class PartStream:
    """A client stream of `oneof part` messages: `params` first, then images and items."""

    def __init__(
        self, requests: AsyncIterator[Any], oneof: str = "part", idle_seconds: float | None = None
    ) -> None:
        self._requests = aiter(requests)
        self._oneof = oneof
        self._idle_seconds = idle_seconds

    async def _next(self) -> Any:
        """The next message; DeadlineExceeded when the client sends nothing for `idle_seconds`."""
        try:
            async with asyncio.timeout(self._idle_seconds):
                return await anext(self._requests)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request stream sent nothing for {self._idle_seconds:g} s; send the next message sooner"
            ) from None

    async def params(self, field: str = "params") -> Any:
        """Read the first message, which must carry `field`, and return that field's value."""
        try:
            first = await self._next()
        except StopAsyncIteration:
            raise InvalidArgument(field, "the stream is empty; the first message must carry it") from None
        which = first.WhichOneof(self._oneof)
        if which != field:
            raise InvalidArgument(field, f"the first message must carry `{field}`, got `{which}`")
        return getattr(first, field)

    async def collect(
        self,
        *,
        images: Sequence[str] = (),
        item: str | None = None,
        on_item: Callable[[Any], Any] | None = None,
        max_image_bytes: int,
        max_items: int = 1_000_000,
    ) -> dict[str, ChunkAssembler]:
        """Read the rest of the stream: reassemble each field in `images`, pass each `item` to `on_item`.

        Returns one complete ChunkAssembler per image field (take pixels with `.to_array()`, which
        views raw images in place).

        Every image field is required; items are counted against `max_items`. Awaitable results of
        `on_item` are awaited, so the caller can move heavy work off the event loop.
        """
        assemblers = {name: ChunkAssembler(max_bytes=max_image_bytes, field=name) for name in images}
        items = 0
        while True:
            try:
                message = await self._next()
            except StopAsyncIteration:
                break
            which = message.WhichOneof(self._oneof)
            if which in assemblers:
                assemblers[which].add(getattr(message, which))
            elif item is not None and which == item:
                items += 1
                if items > max_items:
                    raise InvalidArgument(item, f"at most {max_items} messages are accepted")
                if on_item is not None:
                    result = on_item(getattr(message, which))
                    if hasattr(result, "__await__"):
                        await result
            elif which is None:
                raise InvalidArgument(self._oneof, "a message with no part set")
            else:
                raise InvalidArgument(which, "not expected here (sent twice, or out of order)")
        for assembler in assemblers.values():
            assembler.check_complete()
        return assemblers
