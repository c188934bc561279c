"""``python manage.py import_data [--customers F] [--products F] [--interactions F]``."""
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from crm.services import ImportFailed, import_files


class Command(BaseCommand):
    help = ("Import customers, products and interactions from CSV files (the contract's format). "
            "Bad rows go to NAME.rejected.csv next to each file with their line number and reason.")

    def add_arguments(self, parser):
        parser.add_argument("--customers", metavar="F", help="customers CSV file")
        parser.add_argument("--products", metavar="F", help="products CSV file")
        parser.add_argument("--interactions", metavar="F", help="interactions CSV file")
        parser.add_argument("--user", metavar="USERNAME", help="record the import as done by this user")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction")

    def handle(self, *args, **options):
        files = {k: options[k] for k in ("customers", "products", "interactions") if options[k]}
        if not files:
            raise CommandError("name at least one file: --customers F, --products F or --interactions F")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
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
                               batch_size=options["batch_size"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Import #{run.pk} finished in {run.duration_seconds:.1f} s")
        for result in run.files.all():
            self.stdout.write(
                f"{result.kind}: read {result.rows_read}, created {result.created}, updated {result.updated}, "
                f"unchanged {result.unchanged}, rejected {result.rejected}"
                + (f" (see {result.rejected_path})" if result.rejected else "")
            )
