"""What a file is: its encoding and delimiter, read as UTF-8 lines, and its row count.

The file's encoding and delimiter are detected (:func:`detect_format`); :class:`_Lines`
reads the text a line at a time and hands the batch reader plain prefixes for the fast path.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from itertools import islice

import numpy as np

# Undecodable bytes arrive as lone surrogates (the file is read with ``surrogateescape``).
_BAD_CHARS = re.compile("[\udc80-\udcff\x00]")


def _bad_bytes(values) -> str | None:
    match = _BAD_CHARS.search("".join(values))
    if match is None:
        return None
    ch = match.group()
    if ch == "\x00":
        return "contains a NUL character"
    return f"not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x})"


# --- what a file is: encoding and delimiter -----------------------------------------------------

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE",
                   "utf-32": "UTF-32",
                   "cp1252": "Windows-1252", "latin-1": "Latin-1 (ISO-8859-1)"}
_SAMPLE = 1 << 16  # bytes looked at for the delimiter and a mixed encoding: a few hundred rows


@dataclass(frozen=True)
class FileFormat:
    """How a file's bytes are read: ``encoding`` a Python codec name, ``bom`` whether it starts
    with a byte-order mark, ``delimiter`` one of DELIMITERS, ``note`` what the detection saw."""

    encoding: str = "utf-8"
    delimiter: str = ","
    bom: bool = False
    note: str = ""

    @property
    def encoding_label(self) -> str:
        label = _ENCODING_NAMES.get(self.encoding, self.encoding)
        return f"{label} with BOM" if self.bom else label

    @property
    def delimiter_label(self) -> str:
        return DELIMITERS.get(self.delimiter, repr(self.delimiter))

    def describe(self) -> str:
        """E.g. "Windows-1252, semicolon-delimited"."""
        return f"{self.encoding_label}, {self.delimiter_label}-delimited" + (f" ({self.note})" if self.note else "")


def detect_encoding(binary) -> tuple[str, bool, str]:
    """(codec, has a BOM, note) of a byte stream; reads it to the end and seeks back to 0.

    Rules, in order (README, "Import format"):
    - a byte-order mark decides (UTF-8, UTF-16, UTF-32);
    - mostly-NUL bytes are UTF-16 without a mark (Latin-script text), the NULs' side giving the
      byte order;
    - a file that is valid UTF-8 throughout is UTF-8 (one pass at memory speed, so a legacy
      byte on row 900,000 is still seen);
    - a file with more valid UTF-8 multi-byte characters than invalid bytes (in the 64 KB around
      its first invalid byte) is UTF-8 with some bad rows, each rejected with its reason, rather
      than every good row garbled;
    - anything else is a legacy single-byte file: Windows-1252, what spreadsheets write in
      Western Europe and the Americas, or Latin-1 when a byte undefined in Windows-1252 occurs
      (the two differ only in 0x80-0x9F, control characters in Latin-1).

    Statistical detection (charset-normalizer) was measured and not used: on short files of
    names it chose Latin-1 or nothing over Windows-1252 for most files, and unrestricted it read
    "Lefèvre" as Central European "Lefčvre" and random Latin names as Big5 or Shift-JIS.
    """
    binary.seek(0)
    head = binary.read(_SAMPLE)
    binary.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", True, ""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        return "utf-32", True, ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True, ""
    start = head[:4096]
    if start and start.count(0) * 10 >= len(start) * 3:
        odd = start[1::2].count(0)
        return ("utf-16-le" if odd >= start[0::2].count(0) else "utf-16-be"), False, ""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        for chunk in iter(lambda: binary.read(1 << 20), b""):
            decoder.decode(chunk)
            offset += len(chunk)
        decoder.decode(b"", final=True)
        return "utf-8", False, ""
    except UnicodeDecodeError as exc:
        bad_at = offset + exc.start
    finally:
        binary.seek(0)
    binary.seek(max(0, bad_at - _SAMPLE // 2))
    text = binary.read(_SAMPLE).decode("utf-8", "surrogateescape")
    invalid = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    multibyte = sum(1 for ch in text if ch > "\x7f") - invalid
    binary.seek(0)
    if multibyte >= invalid:
        return "utf-8", False, "some rows are not valid UTF-8"
    undefined = re.compile(b"[\x81\x8d\x8f\x90\x9d]")  # no character in Windows-1252
    latin1 = any(undefined.search(chunk) for chunk in iter(lambda: binary.read(1 << 20), b""))
    binary.seek(0)
    return ("latin-1" if latin1 else "cp1252"), False, ""


class Transcoded:
    """A byte stream of another encoding, read as UTF-8 bytes (what csv and pyarrow take).

    ``tell()`` is the position in the original bytes (the import's progress).
    """

    CHUNK = 1 << 20

    def __init__(self, binary, encoding: str):
        self.binary, self.encoding = binary, encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """At least one character's bytes, or b"" at the end (callers read until b"")."""
        text = ""
        while not text and not self._done:
            data = self.binary.read(self.CHUNK if size is None or size < 0 else max(size, 4))
            text = self._decoder.decode(data, final=not data)
            self._done = not data
        return text.encode("utf-8", "surrogateescape")

    def tell(self) -> int:
        return self.binary.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("a transcoded stream only seeks back to its start")
        self._decoder.reset()
        self._done = False
        return self.binary.seek(0)


def utf8_stream(binary, encoding: str):
    """``binary`` as UTF-8 bytes: itself when it is UTF-8 already."""
    return binary if encoding == "utf-8" else Transcoded(binary, encoding)


def detect_delimiter(text: str) -> str:
    """The delimiter of a file's first lines (decoded text): the candidate that splits the header
    into the most columns that the next records repeat; a comma when none splits it."""
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in islice(csv.reader(io.StringIO(text), delimiter=delimiter), 101) if r]
        except csv.Error:
            continue
        if len(records) > 2 and not text.endswith(("\n", "\r")):
            records = records[:-1]  # the sample may cut its last record
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        rows = records[1:]
        consistent = sum(len(r) == width for r in rows) / len(rows) if rows else 1.0
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def detect_format(binary, delimiter: str | None = None) -> FileFormat:
    """The encoding and delimiter of a CSV byte stream (seeks back to 0)."""
    encoding, bom, note = detect_encoding(binary)
    if delimiter is None:
        stream = utf8_stream(binary, encoding)
        sample = stream.read(_SAMPLE)
        stream.seek(0)
        delimiter = detect_delimiter(sample.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace"))
    binary.seek(0)
    return FileFormat(encoding=encoding, delimiter=delimiter, bom=bom, note=note)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class _Lines:
    """Lines of a binary stream as ``open(newline="")`` yields them (ending in \\n, \\r\\n or \\r).

    Keeps a read position in its buffer rather than slicing it, so a line costs its length.
    """

    CHUNK = 1 << 20

    def __init__(self, binary):
        self.binary, self.buf, self.pos, self.eof, self.started = binary, b"", 0, False, False
        self.lines = []  # decoded, not yet read, in reverse order

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.binary.read(self.CHUNK)
        if not data:
            self.eof = True
            return False
        if not self.started:
            # A byte-order mark is not part of the first column's name, even when that name is
            # quoted (after the mark, csv.reader would not see the opening quote).
            self.started = True
            data = data.removeprefix(b"\xef\xbb\xbf")
        self.buf, self.pos = self.buf[self.pos:] + data, 0
        return True

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.lines:
            return self.lines.pop()
        while True:
            last = self.buf.rfind(b"\n", self.pos)
            if last >= 0:
                end = last + 1
                break
            if not self.fill():
                if self.pos >= len(self.buf):
                    raise StopIteration
                end = len(self.buf)
                break
        # Decode and split everything up to the last \n at once (a line at a time in Python
        # costs more than the csv module's parsing); a line never splits a UTF-8 sequence.
        text, self.pos = self.buf[self.pos:end].decode("utf-8", "surrogateescape"), end
        self.lines = _LINE.findall(text)
        self.lines.reverse()
        return self.lines.pop()

    def _unread(self):
        """Give back the decoded lines csv.reader has not asked for."""
        if self.lines:
            self.pos -= sum(len(line.encode("utf-8", "surrogateescape")) for line in self.lines)
            self.lines = []

    def plain_prefix(self, count: int):
        """The next ``count`` lines as bytes when they are plain (see above), else None."""
        self._unread()
        while self.buf.count(b"\n", self.pos) < count and self.fill():
            pass
        positions = np.flatnonzero(np.frombuffer(self.buf, dtype=np.uint8, offset=self.pos) == 10)
        if len(positions) >= count:
            cut = int(positions[count - 1]) + 1
        elif self.eof:
            cut = len(self.buf) - self.pos
        else:
            return None
        prefix = self.buf[self.pos:self.pos + cut]
        if (not prefix or b'"' in prefix or b"\x00" in prefix or b"\n\n" in prefix or prefix.startswith(b"\n")):
            return None
        if b"\r" in prefix:
            # Windows line ends (what spreadsheets write) are plain too when every line has one:
            # pyarrow and csv then agree on the lines. A lone CR is a line break to csv only.
            crlf = prefix.count(b"\r\n")
            if (crlf != prefix.count(b"\r") or crlf != prefix.count(b"\n") or b"\n\r\n" in prefix
                    or prefix.startswith(b"\r\n")):
                return None
        return prefix

    def take(self, size: int):
        self.pos += size


def more_rows_than(binary, limit: int, fmt: FileFormat | None = None) -> bool:
    """Whether a CSV byte stream holds more than ``limit`` records after its header row.

    Records are counted as the import counts ``rows_read`` (blank lines are not records, an
    unreadable record is one). Counting line breaks bounds that from above at memory speed, so
    a file under the limit costs one pass of ``bytes.count``; only a file with more lines than
    the limit is parsed (a quoted cell may span lines), and only up to the limit. ``fmt``: the
    file's format (its encoding and delimiter), UTF-8 and commas when not given. Reads from the
    start of the stream.
    """
    fmt = fmt or FileFormat()
    binary.seek(0)
    binary = utf8_stream(binary, fmt.encoding)
    breaks, previous = 0, b""
    for chunk in iter(lambda: binary.read(_Lines.CHUNK), b""):
        breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        if previous.endswith(b"\r") and chunk.startswith(b"\n"):
            breaks -= 1
        previous = chunk
    if breaks <= limit:  # the header takes a line; a last line may lack its break
        return False
    binary.seek(0)
    reader = csv.reader(_Lines(binary), delimiter=fmt.delimiter)
    records = 0
    while records <= limit + 1:  # the header and one row over the limit are enough
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error:
            raw = [""]
        if raw:
            records += 1
    return records - 1 > limit  # the first record is the header


def csv_reader(lines, fmt: FileFormat):
    return csv.reader(lines, delimiter=fmt.delimiter)
