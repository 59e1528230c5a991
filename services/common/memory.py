"""Keep freed memory in the process instead of returning it to the kernel after every call.

An image service allocates and frees buffers of tens to hundreds of megabytes per call. glibc serves
blocks above its mmap threshold with fresh mmap()s and gives them back on free(), so every call pays
a page fault per 4 KiB page again — on virtual machines that first touch costs several microseconds a
page, and copying a 100 MB image ran at 0.7 GB/s instead of several GB/s (see bench/bench_tiling.py).
`tune_malloc` asks glibc to serve large blocks from the heap and keep freed memory for reuse: the
resident size then stays at the service's peak rather than shrinking between calls — the usual trade
for a long-running server. On other C libraries it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_malloc"]

log = logging.getLogger(__name__)

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4


def tune_malloc(keep_bytes: int = 4 * 1024**3, top_pad_bytes: int = 256 * 1024**2) -> bool:
    """Make glibc malloc keep up to `keep_bytes` of freed memory and never mmap large blocks.

    Returns whether the C library accepted the settings (False where it is not glibc).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("malloc tuning skipped: not glibc")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    keep = min(keep_bytes, 2**31 - 1)
    ok = all(
        mallopt(param, value) == 1
        for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, keep), (_M_TOP_PAD, top_pad_bytes))
    )
    log.info("malloc tuned" if ok else "malloc tuning refused", extra={"keep_bytes": keep})
    return ok
