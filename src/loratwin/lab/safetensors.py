"""A writer of the safetensors format, tensor by tensor (no tensor library needed).

The format (huggingface/safetensors, "Format" in its README): 8 bytes, the header's length N as an
unsigned little-endian 64-bit integer; N bytes of UTF-8 JSON mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data that follows the header), and
optionally "__metadata__" (strings only); then the tensors' raw little-endian bytes, back to back. The
header may end in spaces; it is padded here to a multiple of 8 bytes so the data starts aligned.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# safetensors dtype names and their sizes in bytes
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4}
ALIGNMENT = 8


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPE_BYTES
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return DTYPE_BYTES[self.dtype] * int(np.prod(self.shape, dtype=np.int64))


def header_bytes(tensors: Sequence[TensorSpec], metadata: dict[str, str] | None = None) -> bytes:
    """The length prefix and the JSON header for `tensors` stored in this order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def file_size(tensors: Sequence[TensorSpec], metadata: dict[str, str] | None = None) -> int:
    return len(header_bytes(tensors, metadata)) + sum(t.nbytes for t in tensors)


def write_safetensors(path: Path, tensors: Sequence[TensorSpec], values: Callable[[TensorSpec], np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` to `path`; `values(spec)` gives each one's float32 values (of its shape) when it is
    written, so that one tensor at a time is held."""
    with open(path, "wb") as handle:
        handle.write(header_bytes(tensors, metadata))
        for spec in tensors:
            array = np.asarray(values(spec), dtype=np.float32)
            if array.shape != spec.shape:
                raise ValueError(f"{spec.name}: values of shape {array.shape}, expected {spec.shape}")
            handle.write(encode(array, spec.dtype))


def encode(array: np.ndarray, dtype: str) -> bytes:
    """float32 values as the raw little-endian bytes of `dtype` (BF16 rounded to nearest even)."""
    if dtype == "F32":
        return array.astype("<f4").tobytes()
    if dtype == "F16":
        return array.astype("<f2").tobytes()
    if dtype == "BF16":
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        return rounded.astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype!r} (known: {', '.join(DTYPE_BYTES)})")
