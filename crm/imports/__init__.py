"""Importing CSV files (README, "Import format"): one module per step, in the order a file meets them.

- formats: what a file is (encoding, delimiter), read as lines; its row count
- headers: its header, with other column names mapped onto the contract's
- values: one cell -> a clean value or a reason (money, dates, keys, ...)
- rows: **where a CSV row is validated**: one record -> the staged tuple, or a rejection
- batches: records a batch at a time (a vectorised fast path, the per-row path for the rest)
- staging: a batch in a temporary table, its keys resolved, merged in SQL
- reports: the rejected-rows file and the preview of each file
- importer: one import job, file by file, batch by batch
- storage: where uploads and reports are kept for every machine (the database, or an object store)
- queue: imports run by a worker (saved uploads; claim, sweep, resend through crm.jobs)

This package re-exports the reading half (no database: formats to batches), what the doors
use to check an upload before it is saved; the import itself is ``crm.imports.importer``.
"""
from crm.imports.batches import Batch, read_batches
from crm.imports.formats import DELIMITERS, FileFormat, detect_encoding, detect_format, more_rows_than, utf8_stream
from crm.imports.headers import Header, check_mapping, read_header, suggest_mapping
from crm.imports.rows import CUSTOMERS, INTERACTIONS, PRODUCTS, SPECS, FileSpec, content_key, source_of
from crm.imports.values import (
    DATE_FORMATS,
    INTERACTION_TYPES,
    MAX_CELL_BYTES,
    FileError,
    Options,
    RowError,
    parse_money,
    parse_timestamp,
)

__all__ = [
    "CUSTOMERS", "DATE_FORMATS", "DELIMITERS", "INTERACTIONS", "INTERACTION_TYPES", "MAX_CELL_BYTES", "PRODUCTS",
    "SPECS", "Batch", "FileError", "FileFormat", "FileSpec", "Header", "Options", "RowError", "check_mapping",
    "content_key", "detect_encoding", "detect_format", "more_rows_than", "parse_money", "parse_timestamp",
    "read_batches", "read_header", "source_of", "suggest_mapping", "utf8_stream",
]
