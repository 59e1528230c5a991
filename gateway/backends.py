"""How the gateway reaches a backend service that may run as several replicas.

A backend's address setting takes one of three forms:

    dns:///diffusion:50052      One channel. gRPC resolves the name (a headless Service gives one
                                address per pod) and balances calls over the addresses with its
                                `round_robin` policy. Other gRPC targets with a scheme are treated the
                                same way: `ipv4:10.0.0.1:50052,10.0.0.2:50052` (several fixed
                                addresses on one channel), `ipv6:`, `unix:`.
    diffusion-0:50052           One channel to one replica.
    h1:50052,h2:50052           One channel per address; this module balances between them.

`BackendPool` keeps an in-flight count per channel (a "replica") and a limit on it:
`in_flight_per_replica` for a plain address, that times the number of addresses behind a
gRPC-balanced target (`dns:` names are re-resolved every 30 s for this, so the limit follows the
number of pods). A call takes the open replica with the fewest calls in flight, waits (without
polling) while every replica is full, and avoids for a short cooldown a replica that answered
UNAVAILABLE. `call` and `stream` retry UNAVAILABLE and RESOURCE_EXHAUSTED onto another replica
(idempotent calls only; a stream only until its first message), give every call a deadline, cancel
the RPC when the calling task is cancelled, and raise the `tilesmith.errors` tree. A backend's own
domain errors keep their messages; transport failures get a message that names the service but not
the replica's address, which goes to the log.

gRPC re-resolves a `dns:` target when a connection drops, not when pods are added: servers that
should pick up new pods within minutes set `grpc.max_connection_age_ms`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from services.common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from services.common.logging import request_id_var
from services.common.server import channel_options
from tilesmith._status import ERROR_CLASS_KEY, REQUEST_ID_KEY, error_from_rpc

__all__ = ["BackendPool", "Metadata", "StreamFn", "UnaryFn"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
# fn(channel, metadata, timeout): one unary call, or a coroutine that collects a whole stream.
UnaryFn = Callable[[grpc.aio.Channel, Metadata, float], Awaitable[T]]
# fn(channel, metadata, timeout): a server-streaming call (a grpc.aio call object: iterable, cancel()).
StreamFn = Callable[[grpc.aio.Channel, Metadata, float], Any]

_BALANCED_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")
_ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_KEEPALIVE = [
    # Servers refuse pings more often than every 5 minutes by default (GOAWAY "too_many_pings").
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
]
_RESOLVE_SECONDS = 30.0
# Retried onto another replica. Not subclasses: ImageTooLarge will be too large everywhere.
_RETRYABLE = (Unavailable, ResourceExhausted)


@dataclass(eq=False)
class _Replica:
    address: str  # as configured; for the log only
    channel: grpc.aio.Channel
    limit: int
    dns_host: str | None = None  # set for dns: targets, whose limit follows the resolved addresses
    resolved_at: float = -math.inf
    in_flight: int = 0
    unhealthy_until: float = -math.inf
    last_pick: int = 0


def _addresses_behind(target: str) -> int:
    """Addresses a gRPC-balanced target names itself (a `dns:` name counts 1 until resolved)."""
    scheme, _, rest = target.partition(":")
    return len(rest.split(",")) if scheme in ("ipv4", "ipv6") else 1


def _dns_host(target: str) -> str | None:
    """The host of `dns:[//authority/]host[:port]`, or None for other targets."""
    if not target.startswith("dns:"):
        return None
    name = target.removeprefix("dns:")
    if name.startswith("//"):
        name = name[2:].partition("/")[2]
    if name.startswith("["):  # [::1]:50052
        return name[1:].partition("]")[0]
    return name.rpartition(":")[0] or name


class BackendPool:
    """The replicas of one backend service, with limits, retries and deadlines.

    Args:
        name: The service, for messages and the log (``"diffusion"``).
        address: ``dns:///host:port`` (or another gRPC target with a scheme), ``host:port``, or
            ``h1:p1,h2:p2``; see the module docstring.
        max_message_bytes: Send and receive limit of every channel (`channel_options`).
        in_flight_per_replica: Calls in flight at once per replica; further calls wait.
        deadline_seconds: Deadline of a call when `call`/`stream` get none: the time for all its
            attempts, its waits for a free replica included.
        retries: Further attempts after an UNAVAILABLE or RESOURCE_EXHAUSTED (idempotent calls only).
        token: Bearer token sent as ``authorization`` metadata on every call.
        unhealthy_seconds: How long a replica that answered UNAVAILABLE is passed over while another
            replica is healthy.
        backoff_seconds: First wait before a retry; doubles per attempt, up to one second, plus jitter.
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        max_message_bytes: int,
        in_flight_per_replica: int = 4,
        deadline_seconds: float = 300.0,
        retries: int = 3,
        token: str | None = None,
        unhealthy_seconds: float = 2.0,
        backoff_seconds: float = 0.05,
    ) -> None:
        # 1. Check the settings.
        if in_flight_per_replica < 1:
            raise ValueError(f"in_flight_per_replica must be at least 1, got {in_flight_per_replica}")
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}")
        targets = [address] if address.startswith(_BALANCED_SCHEMES) else address.split(",")
        targets = [target.strip() for target in targets if target.strip()]
        if not targets:
            raise ValueError(f"the {name} backend address is empty")
        self.name = name
        self.in_flight_per_replica = in_flight_per_replica
        self.deadline_seconds = deadline_seconds
        self.retries = retries
        self.unhealthy_seconds = unhealthy_seconds
        self.backoff_seconds = backoff_seconds
        self._metadata: Metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # 2. One channel per replica; gRPC balances the addresses behind a target with a scheme.
        options: list[tuple[str, Any]] = [*channel_options(max_message_bytes), *_KEEPALIVE]
        if address.startswith(_BALANCED_SCHEMES):
            options.append(("grpc.service_config", _ROUND_ROBIN))
        self._replicas = [
            _Replica(
                address=target,
                channel=grpc.aio.insecure_channel(target, options=options),
                limit=in_flight_per_replica * _addresses_behind(target),
                dns_host=_dns_host(target),
            )
            for target in targets
        ]
        self._waiters: set[asyncio.Future[None]] = set()
        self._picks = 0
        self._closed = False

    async def __aenter__(self) -> BackendPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def in_flight(self) -> dict[str, int]:
        """Calls in flight per replica address."""
        return {replica.address: replica.in_flight for replica in self._replicas}

    @property
    def channels(self) -> list[grpc.aio.Channel]:
        """One channel per replica (a `dns:` target is one channel over every address behind it)."""
        return [replica.channel for replica in self._replicas]

    @property
    def capacity(self) -> int:
        """Calls the replicas take at once in all (the sum of their in-flight limits)."""
        return sum(replica.limit for replica in self._replicas)

    def address_of(self, channel: grpc.aio.Channel) -> str:
        """The configured address of the replica behind `channel` (for events and the log)."""
        return next((r.address for r in self._replicas if r.channel is channel), "")

    @property
    def waiting(self) -> int:
        """Calls waiting for a free replica."""
        return len(self._waiters)

    # -- Slots ---------------------------------------------------------------------------------------

    def _pick(self, avoid: set[_Replica]) -> _Replica | None:
        """The open replica with the fewest calls in flight; ties go to the one picked longest ago.

        Unhealthy replicas are used only when every replica is unhealthy; replicas in `avoid`
        (already tried by this call) only when no other is open.
        """
        now = asyncio.get_running_loop().time()
        open_ = [replica for replica in self._replicas if replica.in_flight < replica.limit]
        if any(replica.unhealthy_until <= now for replica in self._replicas):
            open_ = [replica for replica in open_ if replica.unhealthy_until <= now]
        return min(open_, key=lambda r: (r in avoid, r.in_flight, r.last_pick), default=None)

    def _wake(self) -> None:
        """Let every waiting call look again (few wait; each re-checks)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _refresh_limits(self) -> None:
        loop = asyncio.get_running_loop()
        for replica in self._replicas:
            if replica.dns_host is None or loop.time() < replica.resolved_at + _RESOLVE_SECONDS:
                continue
            replica.resolved_at = loop.time()
            try:
                infos = await loop.getaddrinfo(replica.dns_host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("could not resolve %s for its in-flight limit: %s", replica.address, exc)
                continue
            addresses = len({info[4][0] for info in infos}) or 1
            replica.limit = self.in_flight_per_replica * addresses
            self._wake()

    async def _acquire(self, avoid: set[_Replica], end: float) -> _Replica:
        """A slot on a replica, waiting until `end` (loop time) for one to free up."""
        if self._closed:
            raise Unavailable(f"the {self.name} backend pool is closed")
        await self._refresh_limits()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(end):
                while (replica := self._pick(avoid)) is None:
                    waiter = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"no {self.name} replica had a free slot before the deadline") from exc
        replica.in_flight += 1
        self._picks += 1
        replica.last_pick = self._picks
        return replica

    def _release(self, replica: _Replica) -> None:
        replica.in_flight -= 1
        self._wake()

    def _mark_unhealthy(self, replica: _Replica) -> None:
        loop = asyncio.get_running_loop()
        replica.unhealthy_until = loop.time() + self.unhealthy_seconds
        # Calls waiting for a healthy replica may take this one again once the cooldown is over.
        loop.call_at(replica.unhealthy_until, self._wake)

    @asynccontextmanager
    async def replica(self, *, deadline: float | None = None) -> AsyncIterator[grpc.aio.Channel]:
        """A channel to the least busy open replica, holding one of its slots for the block.

        For calls `call` and `stream` do not fit (a client stream, say). No retries; an UNAVAILABLE
        raised in the block marks the replica unhealthy. Raises `DeadlineExceeded` when no slot
        frees up within `deadline` seconds (default `deadline_seconds`).
        """
        replica = await self._acquire(set(), self._end(deadline))
        try:
            yield replica.channel
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._mark_unhealthy(replica)
            raise
        finally:
            self._release(replica)

    # -- Calls ---------------------------------------------------------------------------------------

    def _end(self, deadline: float | None) -> float:
        seconds = self.deadline_seconds if deadline is None else deadline
        return asyncio.get_running_loop().time() + seconds

    def _timeout(self, end: float) -> float:
        remaining = end - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise DeadlineExceeded(f"the {self.name} call ran out of time before it could be sent")
        return remaining

    def _call_metadata(self) -> Metadata:
        request_id = request_id_var.get()
        return (*self._metadata, (REQUEST_ID_KEY, request_id)) if request_id else self._metadata

    def _retrying(self, idempotent: bool, end: float) -> AsyncRetrying:
        loop = asyncio.get_running_loop()
        return AsyncRetrying(
            stop=stop_after_attempt(1 + (self.retries if idempotent else 0)),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=1.0)
            + wait_random(0, self.backoff_seconds),
            retry=retry_if_exception(lambda exc: type(exc) in _RETRYABLE and loop.time() < end),
            reraise=True,
        )

    def _error(self, exc: grpc.aio.AioRpcError, replica: _Replica) -> Exception:
        """The tilesmith error for a failed call; the replica's address goes to the log only."""
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            self._mark_unhealthy(replica)
        # A Tilesmith server's domain error has a message written for the client; a transport
        # failure's details name addresses, so the client gets the service and the code instead.
        from_server = any(key == ERROR_CLASS_KEY for key, _ in exc.trailing_metadata() or ())
        log.log(
            logging.INFO if from_server else logging.WARNING,
            "%s call to replica %s failed: %s %s",
            self.name,
            replica.address,
            code.name,
            exc.details(),
        )
        message = None if from_server else f"the {self.name} service call failed: {code.name}"
        return error_from_rpc(exc, message=message)

    async def _attempt(self, fn: UnaryFn[T], tried: set[_Replica], end: float) -> T:
        replica = await self._acquire(tried, end)
        tried.add(replica)
        try:
            # Cancelling the task that awaits a grpc.aio call cancels the RPC itself.
            return await fn(replica.channel, self._call_metadata(), self._timeout(end))
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, replica) from exc
        finally:
            self._release(replica)

    async def call(self, fn: UnaryFn[T], *, idempotent: bool = True, deadline: float | None = None) -> T:
        """Run `fn(channel, metadata, timeout)` on a replica and return its result.

        Args:
            fn: Makes one unary call (or collects a whole stream) with the given metadata and
                ``timeout=``; e.g. ``lambda ch, md, t: TilingStub(ch).PlanGrid(req, metadata=md, timeout=t)``.
            idempotent: Whether the call may run twice. Only idempotent calls are retried (on
                UNAVAILABLE or RESOURCE_EXHAUSTED, onto another replica when there is one).
            deadline: Seconds for the whole call, retries and waits for a slot included; default
                `deadline_seconds`.

        Raises:
            tilesmith.errors.TilesmithError: the class the backend raised, or the one for the status
                code (`DeadlineExceeded` when the deadline passed).
        """
        end = self._end(deadline)
        return await self._retrying(idempotent, end)(self._attempt, fn, set(), end)

    async def _open(
        self, fn: StreamFn, tried: set[_Replica], end: float
    ) -> tuple[_Replica, Any, AsyncIterator[Any], Any]:
        """Start a stream and read its first message (None when the stream is empty)."""
        replica = await self._acquire(tried, end)
        tried.add(replica)
        call = None
        try:
            call = fn(replica.channel, self._call_metadata(), self._timeout(end))
            messages = aiter(call)
            first = await anext(messages, None)
        except BaseException as exc:
            if call is not None:
                call.cancel()
            self._release(replica)
            if isinstance(exc, grpc.aio.AioRpcError):
                raise self._error(exc, replica) from exc
            raise
        return replica, call, messages, first

    async def stream(
        self, fn: StreamFn, *, idempotent: bool = True, deadline: float | None = None
    ) -> AsyncIterator[Any]:
        """Run the server-streaming call `fn(channel, metadata, timeout)` and yield its messages as
        they come.

        Retried like `call` until the first message arrives, never after: the caller has seen it.
        Leaving the loop early (or cancelling the task) cancels the RPC. `deadline` covers the whole
        stream.
        """
        end = self._end(deadline)
        replica, call, messages, first = await self._retrying(idempotent, end)(self._open, fn, set(), end)
        try:
            message = first
            while message is not None:
                yield message
                try:
                    message = await anext(messages, None)
                except grpc.aio.AioRpcError as exc:
                    raise self._error(exc, replica) from exc
        finally:
            call.cancel()  # a no-op once the call is over
            self._release(replica)

    async def close(self) -> None:
        """Close every channel; calls still waiting for a slot fail with `Unavailable`."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable(f"the {self.name} backend pool is closed"))
        await asyncio.gather(*(replica.channel.close() for replica in self._replicas))
