"""A worker gives memory that large requests freed back to the system."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

glibc = hasattr(ctypes.CDLL(None), "malloc_trim")

# 64 blocks of 1 MiB in the heap (not in mmaps of their own, as after glibc has raised its
# threshold for a request body that size), each touched; all but the last freed. The last one
# keeps the freed space away from the top of the heap, where glibc would trim it by itself.
FRAGMENTED = """
import ctypes, sys
from inference_service.server import resident_bytes, trim_heap
ctypes.CDLL(None).mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
blocks = [b"x" * (1 << 20) for _ in range(64)]
keep = blocks[-1]
del blocks
held = resident_bytes()
trimmed = trim_heap()
print(held >> 20, resident_bytes() >> 20, trimmed)
"""


@pytest.mark.skipif(not glibc, reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    held, after, trimmed = done.stdout.split()
    assert trimmed == "True"
    assert int(held) - int(after) >= 48, done.stdout
