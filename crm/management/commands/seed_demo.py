"""``python manage.py seed_demo [--customers N] [--seed S]``: a realistic synthetic business.

The generated files go through the same importer as real data (crm.imports.importer.import_files),
so the demo also exercises validation, upserts and the import history.
"""
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm import demo
from crm.imports.importer import ImportFailed, import_files
from crm.records import ensure_sales_reps

SALES_REPS = ("alice", "bob", "carol")


class Command(BaseCommand):
    help = "Generate a synthetic business (products, customers of several kinds, two years of interactions) and import it."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=2000, help="number of customers (default 2000)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--end", type=date.fromisoformat, default=None,
                            help="last day of the history, YYYY-MM-DD (default yesterday: the last whole day)")
        parser.add_argument("--days", type=int, default=730, help="days of history (default 730)")

    def handle(self, *args, **options):
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1")
        end = options["end"]
        if isinstance(end, str):  # call_command passes option values through unconverted
            end = date.fromisoformat(end)
        if end is None:  # the last whole day in TIME_ZONE: the rest of today has not happened (crm.clock)
            end = timezone.localdate() - timedelta(days=1)
        started = time.monotonic()
        ensure_sales_reps(SALES_REPS)
        frames = demo.generate(n_customers=options["customers"], seed=options["seed"], end=end,
                               sales_reps=SALES_REPS, days=options["days"])
        self.stdout.write(f"Generated {len(frames['customers']):,} customers, {len(frames['products']):,} products, "
                          f"{len(frames['interactions']):,} interactions in {time.monotonic() - started:.1f} s")
        with tempfile.TemporaryDirectory(prefix="crm-demo-") as tmp:
            paths = {}
            for kind in ("customers", "products", "interactions"):
                paths[kind] = Path(tmp) / f"{kind}.csv"
                frames[kind].to_csv(paths[kind], index=False)
            del frames
            last = {"t": 0.0}

            def progress(run, result):
                if time.monotonic() - last["t"] >= 2:
                    last["t"] = time.monotonic()
                    self.stdout.write(f"  importing {result.kind}: {result.rows_read:,} rows "
                                      f"({run.progress_percent}%)")

            try:
                run = import_files(paths, source="seed", progress=progress)
            except ImportFailed as exc:
                raise CommandError(str(exc)) from None
        for result in run.files.all():
            self.stdout.write(f"{result.kind}: {result.created:,} created, {result.updated:,} updated, "
                              f"{result.unchanged:,} unchanged, {result.rejected:,} rejected")
        self.stdout.write(self.style.SUCCESS(f"Demo data ready in {time.monotonic() - started:.1f} s"))
