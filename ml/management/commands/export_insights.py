"""``python manage.py export_insights --out F.csv``: one row per customer with the published insights."""
import csv

from django.core.management.base import BaseCommand

from crm.audit import record_export
from crm.exports import safe_cell
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

    def handle(self, *args, **options):
        count = 0
        with open(options["out"], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(INSIGHT_COLUMNS)
            for row in insight_rows():
                # Every text cell is defused, the SKU lists too: a SKU is whatever an import file said.
                writer.writerow([safe_cell(row[0]), safe_cell(row[1]), *(_number(v) for v in row[2:7]),
                                 safe_cell(row[7]), safe_cell(row[8]), *row[9:]])
                count += 1
        record_export(None, f"insights of {count} customers (export_insights command)")
        self.stdout.write(f"Wrote {count:,} customers to {options['out']}")
