"""What an import reports per file: the NAME.rejected.csv of rejected rows and rows with
warnings, and the preview of the first records on the run's page."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crm import exports
from crm.imports.rows import source_of

REJECTED, WARNING = "rejected", "warning"


class _Rejects:
    """The NAME.rejected.csv of one file: its rejected rows and the rows that loaded with a
    warning (``outcome``), with every reason; written only when there is one."""

    def __init__(self, path: Path, header: list[str]):
        self.path, self.header = path, header
        self.count = self.warned = 0
        self._file = None
        self._writer = None
        if path.exists():
            path.unlink()

    def add(self, row: int, outcome: str, reason: str, raw: list[str]):
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8", errors="backslashreplace")
            self._writer = exports.writer(self._file)  # the uploaded cells, defused
            self._writer.writerow(["row", "outcome", "reason", *self.header])
        self._writer.writerow([row, outcome, reason, *raw])
        if outcome == REJECTED:
            self.count += 1
        else:
            self.warned += 1

    def close(self):
        if self._file is not None:
            self._file.close()


def rejected_path_for(path: Path, rejected_dir: Path | None = None, dry_run: bool = False) -> Path:
    """Where a file's rejected rows go: NAME.rejected.csv (a dry run's: NAME.dry-run.rejected.csv,
    so it never replaces the report of a real import)."""
    name = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return (rejected_dir or path.parent) / f"{name}{'.dry-run' if dry_run else ''}.rejected.csv"


PREVIEW_ROWS = 10  # the first records of each file, as read, on the run's page


def _report(batch, bad, warned):
    """The batch's rows to report, in row order: (row_no, outcome, every reason, raw cells).

    A row rejected in SQL (a duplicate key, an unknown customer) carries the warnings its
    fields had too; a row that loaded with warnings is reported as a warning.
    """
    warnings = {row: list(reasons) for row, reasons in batch.warnings.items()}
    for row_no, reason in warned:
        warnings.setdefault(row_no, []).append(reason)
    rejected = {}
    for row_no, reason in bad:
        rejected.setdefault(row_no, []).append(reason)
    out = [(row_no, REJECTED, reason, raw) for row_no, reason, raw in batch.rejected]
    for row_no, reasons in rejected.items():
        out.append((row_no, REJECTED, "; ".join(reasons + warnings.pop(row_no, [])), batch.raw(row_no)))
    for row_no, reasons in warnings.items():
        out.append((row_no, WARNING, "; ".join(reasons), batch.raw(row_no)))
    return sorted(out, key=lambda item: item[0])


def _preview(spec, written, batch, reported, options, limit):
    """The batch's first ``limit`` records as read: [{"row", "outcome", "values", "reason"}]."""
    problems = {row_no: (outcome, reason) for row_no, outcome, reason, _raw in reported}
    rows = {}
    for row in batch.rows:
        if len(rows) >= limit:
            break
        rows[row[0]] = dict(zip(spec.columns, row[1:-1]))
    if batch.table is not None and batch.table.num_rows:
        head = batch.table.slice(0, limit).to_pylist()
        for row in head:
            rows[row.pop("row_no")] = row
    for row_no, *_rest in reported[:limit]:
        rows.setdefault(row_no, None)
    out = []
    for row_no in sorted(rows)[:limit]:
        outcome, reason = problems.get(row_no, ("ok", ""))
        values = rows[row_no]
        if values is None or outcome == REJECTED:
            shown = {}
        else:
            shown = {source_of(c): _shown(c, values.get(c), options) for c in written if c != "attributes"}
            if "attributes" in written:
                shown["attributes"] = values.get("attributes") or "{}"
        out.append({"row": row_no, "outcome": outcome, "values": shown, "reason": reason})
    return out


def _shown(column, value, options):
    """A staged value as text for the preview (times in TIME_ZONE, as a person entered them)."""
    if value is None:
        return ""
    if column == "occurred_at":
        if isinstance(value, str):  # the fast path's UTC text
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.astimezone(options.tz).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
