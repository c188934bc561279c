"""``python manage.py export_insights --out F.csv``: one row per customer with the published insights."""
from django.core.management.base import BaseCommand

from crm import exports
from crm.audit import record_export
from ml.selectors import INSIGHT_COLUMNS, insight_rows


def _number(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else f"{value:.0f}"
    return value


class Command(BaseCommand):
    help = "Write the published insights (segment, forecasts, suggestions) of every customer to a CSV file."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, metavar="F.csv", help="the CSV file to write")
        parser.add_argument("--hide-control", action="store_true",
                            help="leave the control group's suggestion cells empty (for an export that feeds a "
                                 "campaign: the uplift is measured on customers who were not offered them)")

    def handle(self, *args, **options):
        count = 0
        with open(options["out"], "w", newline="", encoding="utf-8") as f:
            writer = exports.writer(f)
            writer.writerow(INSIGHT_COLUMNS)
            for row in insight_rows(hide_control=options["hide_control"]):
                # Every text cell is defused, the SKU lists too (a SKU is whatever an import file said);
                # a number stays a plain number, a negative one included, so the file stays machine-readable.
                writer.writerow([row[0], row[1], *(_number(v) for v in row[2:7]), *row[7:]])
                count += 1
        hidden = ", control group's suggestions left out" if options["hide_control"] else ""
        record_export(None, f"insights of {count} customers (export_insights command{hidden})")
        self.stdout.write(f"Wrote {count:,} customers to {options['out']}")
