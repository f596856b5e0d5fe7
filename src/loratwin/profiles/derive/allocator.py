"""PyTorch's CUDA caching allocator, reduced to what decides how many bytes a sequence of tensors holds.

vLLM sizes its KV cache from the allocator's statistics ("allocated" peak) and from what the device
reports in use, which also counts the free parts of the segments the allocator keeps. Both differ
from the tensors' own bytes by up to ~1 MiB per tensor: with hundreds of LoRA buffers that is
hundreds of MiB, enough to move the KV cache by several percent. The rules (PyTorch 2.x
`CUDACachingAllocator`, default settings, no expandable segments):

- a request is rounded up to 512 bytes; up to 1 MiB it is served from the small pool, whose
  segments are 2 MiB; a larger request below 10 MiB gets a 20 MiB segment, a larger one its size
  rounded up to 2 MiB;
- a request takes the smallest free block that holds it (best fit) before a new segment;
- the block is split only when the rest is at least 512 bytes (small pool) or more than 1 MiB
  (large pool); otherwise the whole block is handed out and counted as allocated.

Checked against vLLM's "Model loading took X GiB" (weights and LoRA buffers) at the 78 server
configurations of two models that logged it (calibration/kv_capacity.csv): within 1.02 MiB at every
one, where the tensors' own bytes are off by up to 394 MiB (scripts/check_kv_capacity.py).
"""

from __future__ import annotations

import bisect

MIB = 1 << 20
MIN_BLOCK = 512
SMALL_REQUEST = 1 * MIB
SMALL_SEGMENT = 2 * MIB
MIN_LARGE_SEGMENT_REQUEST = 10 * MIB
LARGE_SEGMENT = 20 * MIB
LARGE_ROUNDING = 2 * MIB


def _segment_bytes(size: int) -> int:
    if size <= SMALL_REQUEST:
        return SMALL_SEGMENT
    if size < MIN_LARGE_SEGMENT_REQUEST:
        return LARGE_SEGMENT
    return -(-size // LARGE_ROUNDING) * LARGE_ROUNDING


class CachingAllocator:
    """Allocations only (vLLM frees nothing while it builds the model and its LoRA buffers)."""

    def __init__(self) -> None:
        self._free: dict[bool, list[int]] = {True: [], False: []}  # small pool?, sorted free block sizes
        self.allocated = 0  # what torch counts as allocated (whole blocks)
        self.reserved = 0  # bytes of the segments held from the device

    def copy(self) -> CachingAllocator:
        other = CachingAllocator()
        other._free = {small: list(blocks) for small, blocks in self._free.items()}
        other.allocated, other.reserved = self.allocated, self.reserved
        return other

    def allocate(self, nbytes: int) -> None:
        self.allocate_all([nbytes])

    def allocate_all(self, sizes: list[int]) -> None:
        free_small, free_large = self._free[True], self._free[False]
        allocated, reserved = self.allocated, self.reserved
        for nbytes in sizes:
            if nbytes <= 0:
                continue
            size = -(-nbytes // MIN_BLOCK) * MIN_BLOCK
            small = size <= SMALL_REQUEST
            pool = free_small if small else free_large
            i = bisect.bisect_left(pool, size)
            if i < len(pool):
                block = pool.pop(i)
            else:
                block = _segment_bytes(size)
                reserved += block
            rest = block - size
            if (rest >= MIN_BLOCK) if small else (rest > SMALL_REQUEST):
                bisect.insort(pool, rest)
                block = size
            allocated += block
        self.allocated, self.reserved = allocated, reserved
