"""``python manage.py import_data [--customers F] [--products F] [--interactions F]``
``[--dry-run] [--date-format iso|dmy|mdy] [--mapping FILE.json] [--source NAME]``."""
import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from crm import imports
from crm.imports.importer import ImportFailed, import_files

KINDS = ("customers", "products", "interactions")


def _read_mapping(path: str) -> dict:
    """``{"customers": {"Customer ID": "external_id"}, ...}`` from a JSON file."""
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise CommandError(f"mapping file {Path(path).name} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(f"mapping file {Path(path).name} is not JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(k in KINDS and isinstance(v, dict) for k, v in mapping.items()):
        raise CommandError(f'mapping file {Path(path).name} must be {{"customers": {{"file column": "contract '
                           f'column"}}, ...}} with keys among {", ".join(KINDS)}')
    return mapping


class Command(BaseCommand):
    help = ("Import customers, products and interactions from CSV files (the contract's format, or what "
            "spreadsheets export: the encoding and delimiter are detected). Bad rows and rows with warnings go to "
            "NAME.rejected.csv next to each file with their line number and every reason.")

    def add_arguments(self, parser):
        parser.add_argument("--customers", metavar="F", help="customers CSV file")
        parser.add_argument("--products", metavar="F", help="products CSV file")
        parser.add_argument("--interactions", metavar="F", help="interactions CSV file")
        parser.add_argument("--user", metavar="USERNAME", help="record the import as done by this user")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction")
        parser.add_argument("--dry-run", action="store_true",
                            help="read and check everything, print what would happen, write no data "
                                 "(applies the suggested column names too)")
        parser.add_argument("--date-format", choices=tuple(imports.DATE_FORMATS), default="",
                            help="how dates that are not ISO are written: dmy = day first (31/12/2024), mdy = "
                                 "month first (12/31/2024); ISO dates always read (default: the source's, else iso)")
        parser.add_argument("--mapping", metavar="FILE.json",
                            help='column names to read as contract columns: {"customers": {"Customer ID": '
                                 '"external_id"}, "interactions": {...}}')
        parser.add_argument("--source", metavar="NAME", default="",
                            help="an upload source: use its saved mapping and date format, and save this import's")

    def handle(self, *args, **options):
        files = {k: options[k] for k in KINDS if options[k]}
        if not files:
            raise CommandError("name at least one file: --customers F, --products F or --interactions F")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
        mapping = _read_mapping(options["mapping"]) if options["mapping"] else {}
        verbosity = options["verbosity"]
        last = {"t": 0.0}

        def progress(run, result):
            now = time.monotonic()
            if now - last["t"] >= 2 or verbosity > 1:
                last["t"] = now
                self.stdout.write(f"  {result.kind}: {result.rows_read:,} rows read "
                                  f"({run.progress_percent}% of the bytes), {result.rejected:,} rejected")

        try:
            run = import_files(files, user=user, source="command", progress=progress,
                               batch_size=options["batch_size"], dry_run=options["dry_run"],
                               date_format=options["date_format"], mapping=mapping, source_name=options["source"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        self._report(run, verbosity)

    def _report(self, run, verbosity):
        head = f"Dry run #{run.pk}" if run.dry_run else f"Import #{run.pk}"
        self.stdout.write(f"{head} {run.outcome} in {run.duration_seconds:.1f} s (dates: "
                          f"{imports.DATE_FORMATS[run.date_format]})"
                          + ("; nothing was written" if run.dry_run else ""))
        verb = "would " if run.dry_run else ""
        for result in run.files.all():
            mapped = ", ".join(f"{k!r} -> {v}" for k, v in result.in_file_order(result.column_mapping))
            self.stdout.write(f"{result.kind} ({result.filename}): {result.encoding}, {result.delimiter}-delimited"
                              + (f"; columns: {mapped}" if mapped else ""))
            if run.dry_run and result.suggested_mapping:
                self.stdout.write("  suggested: " + ", ".join(f"{k!r} -> {v}" for k, v in
                                                             result.in_file_order(result.suggested_mapping))
                                  + " (pass them in --mapping to import with them)")
            self.stdout.write(
                f"  read {result.rows_read}, {verb}create {result.created}, {verb}update {result.updated}, "
                f"unchanged {result.unchanged}, {verb}reject {result.rejected}, with warnings {result.warned}"
                + (f" (see {Path(result.rejected_path).name})" if result.rejected_path else ""))
            if run.dry_run and verbosity > 0:
                order = [imports.source_of(c) for c in imports.SPECS[result.kind].columns]
                for row in result.preview[:5]:
                    values = ", ".join(f"{k}={row['values'][k]}" for k in order if k in row["values"])
                    self.stdout.write(f"  row {row['row']} {row['outcome']}: {values or row['reason']}"
                                      + (f" ({row['reason']})" if row["reason"] and values else ""))
