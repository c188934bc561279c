"""A readable binary file over an iterator of byte blocks, for readers that want a file (pyarrow's
CSV reader, csv over io.TextIOWrapper) where the bytes arrive in pieces: a stored import file's
chunks (crm.imports.storage), a COPY's rows (ml.data). Nothing is held but the current block."""
from __future__ import annotations

import io
from collections.abc import Iterable


class BlockReader(io.RawIOBase):
    """``blocks`` (bytes-like, fetched as they are read) as one stream; wrap it in
    io.BufferedReader for reads of a useful size."""

    def __init__(self, blocks: Iterable):
        self._blocks, self._rest = iter(blocks), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._rest:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = memoryview(block)
        size = min(len(target), len(self._rest))
        target[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
