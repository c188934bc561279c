"""Imports of what spreadsheets export: detected encodings and delimiters, declared date
formats, numbers with decimal commas, thousands separators and currency symbols, column
mappings saved per source, dry runs that write nothing, every error of a row, warnings for a
bad optional field, and the wording of the outcome."""
import json
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection

from crm import imports as importing
from crm.imports import queue as services
from crm.imports.importer import ImportFailed, import_files
from crm.imports.reports import rejected_path_for
from crm.models import AuditEvent, Customer, ImportRun, ImportSource, Interaction, Product
from tests.conftest import read_rejects

pytestmark = pytest.mark.django_db

CUSTOMERS = [["external_id", "name", "city", "signup_date"],
             ["C1", "Renée Lefèvre", "Besançon", "2024-12-31"],
             ["C2", "Jürgen Müßig", "Köln", ""]]
INTERACTIONS = [["customer_external_id", "type", "occurred_at", "amount", "external_id", "notes"],
                ["C1", "purchase", "2024-12-31T10:00:00", "12.50", "I1", "Thé glacé"],
                ["C2", "purchase", "2025-01-02", "1234.50", "I2", ""]]


def write(tmp_path, name, rows, *, delimiter=",", encoding="utf-8", newline="\n"):
    """Write rows as a spreadsheet would: cells joined by ``delimiter`` (quoted when they hold it)."""
    def cell(value):
        return f'"{value}"' if delimiter in value or '"' in value else value
    text = "".join(delimiter.join(cell(v) for v in row) + newline for row in rows)
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def file_of(run, kind):
    return run.files.get(kind=kind)


def stored_values():
    return (sorted(Customer.objects.values_list("external_id", "name", "city", "signup_date")),
            sorted(Interaction.objects.values_list("external_id", "amount", "occurred_at__date", "notes")))


EXPECTED = ([("C1", "Renée Lefèvre", "Besançon", date(2024, 12, 31)), ("C2", "Jürgen Müßig", "Köln", None)],
            [("I1", Decimal("12.50"), date(2024, 12, 31), "Thé glacé"), ("I2", Decimal("1234.50"), date(2025, 1, 2), "")])


# --- each spreadsheet variant imports with the right values ---------------------------------------

@pytest.mark.parametrize(("delimiter", "encoding", "newline", "encoding_label", "delimiter_label"), [
    (";", "utf-8", "\n", "UTF-8", "semicolon"),
    ("\t", "utf-8", "\r\n", "UTF-8", "tab"),
    ("|", "utf-8", "\n", "UTF-8", "pipe"),
    (",", "utf-8-sig", "\r\n", "UTF-8 with BOM", "comma"),
    ("\t", "utf-16", "\r\n", "UTF-16 with BOM", "tab"),  # Excel's "Unicode text"
    ("\t", "utf-16-le", "\n", "UTF-16 LE", "tab"),  # the same without a byte-order mark
    (";", "cp1252", "\r\n", "Windows-1252", "semicolon"),  # Excel's "CSV" in much of Europe
], ids=["semicolon", "tab", "pipe", "utf8-bom", "utf16", "utf16-no-bom", "windows-1252"])
def test_import_files_reads_spreadsheet_variant_with_the_right_values(tmp_path, delimiter, encoding, newline,
                                                                      encoding_label, delimiter_label):
    customers = write(tmp_path, "customers.csv", CUSTOMERS, delimiter=delimiter, encoding=encoding, newline=newline)
    interactions = write(tmp_path, "interactions.csv", INTERACTIONS, delimiter=delimiter, encoding=encoding,
                         newline=newline)

    run = import_files({"customers": customers, "interactions": interactions})

    assert run.status == ImportRun.Status.SUCCEEDED, run.error
    assert stored_values() == EXPECTED
    for kind in ("customers", "interactions"):
        f = file_of(run, kind)
        assert (f.encoding, f.delimiter, f.rejected, f.warned) == (encoding_label, delimiter_label, 0, 0)


def test_import_files_reads_windows_1252_accented_names_on_every_row(tmp_path):
    rows = [CUSTOMERS[0]] + [[f"C{i}", f"Zoë Brontë {i}", "Genève", ""] for i in range(3000)]
    path = write(tmp_path, "customers.csv", rows, encoding="cp1252")

    run = import_files({"customers": path})

    assert file_of(run, "customers").encoding == "Windows-1252"
    assert Customer.objects.filter(name__startswith="Zoë Brontë", city="Genève").count() == 3000


def test_import_files_windows_1252_rejected_rows_keep_their_accents(tmp_path):
    path = write(tmp_path, "customers.csv", [["external_id", "name", "email"], ["C1", "Hélène", "not-an-email"],
                                             ["", "Gérard", ""]], encoding="cp1252")

    import_files({"customers": path})

    report = read_rejects(rejected_path_for(path))
    assert [(r["outcome"], r["name"]) for r in report] == [("warning", "Hélène"), ("rejected", "Gérard")]


def test_import_files_reads_day_first_dates_when_declared(tmp_path):
    customers = write(tmp_path, "customers.csv", [["external_id", "signup_date"], ["C1", "31/12/2024"],
                                                  ["C2", "1.2.2024"], ["C3", "2024-03-04"]], delimiter=";")
    interactions = write(tmp_path, "interactions.csv", [["customer_external_id", "type", "occurred_at"],
                                                        ["C1", "call", "31/12/2024 14:30"],
                                                        ["C2", "call", "02-01-2025"]], delimiter=";")

    run = import_files({"customers": customers, "interactions": interactions}, date_format="dmy")

    assert run.status == ImportRun.Status.SUCCEEDED and run.date_format == "dmy"
    assert dict(Customer.objects.values_list("external_id", "signup_date")) == {
        "C1": date(2024, 12, 31), "C2": date(2024, 2, 1), "C3": date(2024, 3, 4)}  # ISO always reads
    times = sorted(Interaction.objects.values_list("occurred_at", flat=True))
    assert [t.isoformat() for t in times] == ["2024-12-31T14:30:00+00:00", "2025-01-02T00:00:00+00:00"]


def test_import_files_reads_month_first_dates_when_declared(tmp_path):
    path = write(tmp_path, "customers.csv", [["external_id", "signup_date"], ["C1", "12/31/2024"],
                                             ["C2", "31/12/2024"]])

    run = import_files({"customers": path}, date_format="mdy")

    assert Customer.objects.get(external_id="C1").signup_date == date(2024, 12, 31)
    [warning] = read_rejects(rejected_path_for(path))
    assert "31/12/2024 is not a valid month/day/year date" in warning["reason"]
    assert run.outcome == "completed, 1 of 2 rows with warnings"


@pytest.mark.parametrize(("value", "reason"), [
    ("31/12/2024", "declare the file's date format"),  # no format declared: not guessed
    ("31/12/24", "two-digit year"),
])
def test_import_files_does_not_guess_a_date(tmp_path, value, reason):
    path = write(tmp_path, "interactions.csv", [["customer_external_id", "type", "occurred_at"], ["C1", "call", value]])
    Customer.objects.create(external_id="C1")

    import_files({"interactions": path}, date_format="dmy" if reason == "two-digit year" else "iso")

    [reject] = read_rejects(rejected_path_for(path))
    assert reject["outcome"] == "rejected" and reason in reject["reason"]
    assert not Interaction.objects.exists()


def test_import_files_reads_decimal_commas_thousands_and_currency(tmp_path):
    Customer.objects.create(external_id="C1")
    rows = [["customer_external_id", "type", "occurred_at", "amount", "external_id"]] + [
        ["C1", "purchase", "2024-01-01", amount, f"I{i}"] for i, amount in enumerate(
            ["1.234,50", "1,234.50", "€12.50", "12,50 €", "1 234,50", "$1,234,567.89", "EUR 3", "12.500"])]
    path = write(tmp_path, "interactions.csv", rows, delimiter=";")
    Product.objects.create(sku="P1", name="Beans")
    products = write(tmp_path, "products.csv", [["sku", "name", "price"], ["P1", "Beans", "9,99 €"]], delimiter=";")

    run = import_files({"products": products, "interactions": path})

    assert run.status == ImportRun.Status.SUCCEEDED, list(read_rejects(rejected_path_for(path)))
    amounts = dict(Interaction.objects.values_list("external_id", "amount"))
    assert amounts == {"I0": Decimal("1234.50"), "I1": Decimal("1234.50"), "I2": Decimal("12.50"),
                       "I3": Decimal("12.50"), "I4": Decimal("1234.50"), "I5": Decimal("1234567.89"),
                       "I6": Decimal("3.00"), "I7": Decimal("12.50")}
    assert Product.objects.get(sku="P1").price == Decimal("9.99")


@pytest.mark.parametrize(("value", "expected"), [
    ("12", "12.00"), ("12.5", "12.50"), ("12,5", "12.50"), ("1.234,50", "1234.50"), ("1,234.50", "1234.50"),
    ("1'234.50", "1234.50"), ("1\u00a0234,50", "1234.50"), ("€12.50", "12.50"), ("12,50 €", "12.50"),
    ("£0.99", "0.99"), ("-0", "0"), ("0,123", None), ("1,234", None), ("1,23,4", None), ("12.345,678", None),
    ("-€5", None), ("(5)", None), ("1.2.3", None), ("€", None), ("1,2345", None),
])
def test_parse_money_rules(value, expected):
    if expected is None:
        with pytest.raises(importing.RowError):
            importing.parse_money(value, "amount")
    else:
        assert importing.parse_money(value, "amount") == expected


def test_parse_money_rejects_an_ambiguous_comma_with_its_reason():
    with pytest.raises(importing.RowError, match=r"amount 1,234 is ambiguous: the comma could separate thousands"):
        importing.parse_money("1,234", "amount")


def test_detect_format_keeps_a_comma_file_with_semicolons_in_its_cells(tmp_path):
    path = write(tmp_path, "products.csv", [["sku", "name", "tags"], ["P1", "Beans", "coffee;beans;dark"],
                                            ["P2", "Filters", "paper;filters"]])

    run = import_files({"products": path})

    assert file_of(run, "products").delimiter == "comma"
    assert Product.objects.get(sku="P1").tags == "coffee;beans;dark"


# --- column mapping -------------------------------------------------------------------------------

SHOP = [["Customer ID", "Full Name", "E-mail", "Land"], ["S1", "Ann Müller", "ann@example.com", "DE"]]


def test_import_files_applies_a_column_mapping(tmp_path):
    path = write(tmp_path, "clients.csv", SHOP)

    run = import_files({"customers": path}, mapping={"customers": {"Customer ID": "external_id",
                                                                   "Full Name": "name", "E-mail": "email"}})

    ann = Customer.objects.get(external_id="S1")
    assert (ann.name, ann.email, ann.attributes) == ("Ann Müller", "ann@example.com", {"Land": "DE"})
    f = file_of(run, "customers")
    assert f.column_mapping == {"Customer ID": "external_id", "Full Name": "name", "E-mail": "email"}
    assert f.header == ["Customer ID", "Full Name", "E-mail", "Land"]


def test_import_files_saves_the_mapping_per_source_and_uses_it_next_time(tmp_path):
    path = write(tmp_path, "clients.csv", SHOP)
    import_files({"customers": path}, source_name="Shop export", date_format="dmy",
                 mapping={"customers": {"Customer ID": "external_id", "E-mail": "email"}})
    Customer.objects.all().delete()

    run = import_files({"customers": path}, source_name="Shop export")

    saved = ImportSource.objects.get(name="Shop export")
    assert saved.mapping == {"customers": {"Customer ID": "external_id", "E-mail": "email"}}
    assert (run.date_format, run.status) == ("dmy", ImportRun.Status.SUCCEEDED)
    assert Customer.objects.get(external_id="S1").email == "ann@example.com"


def test_import_files_without_mapping_fails_naming_the_suggestion_and_no_server_path(tmp_path):
    path = write(tmp_path, "clients.csv", SHOP)

    with pytest.raises(ImportFailed) as failure:
        import_files({"customers": path})

    message = str(failure.value)
    assert "customers file clients.csv (UTF-8, comma-delimited): customers file is missing required column(s): " \
           "external_id ('Customer ID' looks like external_id" in message
    assert str(tmp_path) not in message and "Nothing was imported" in message
    f = ImportRun.objects.get().files.get()
    assert f.suggested_mapping == {"Customer ID": "external_id", "Full Name": "name", "E-mail": "email"}
    assert f.header == SHOP[0] and f.error


def test_suggest_mapping_proposes_synonyms_once():
    spec = importing.SPECS["interactions"]
    header = ["Customer ID", "Event", "Date", "SKU", "Qty", "Total", "Order No", "Comments", "Date of birth"]
    assert importing.suggest_mapping(spec, header) == {
        "Customer ID": "customer_external_id", "Event": "type", "Date": "occurred_at", "SKU": "product_sku",
        "Qty": "quantity", "Total": "amount", "Order No": "order_ref", "Comments": "notes"}
    # two columns that look like the same contract column: no proposal for either
    assert "occurred_at" not in importing.suggest_mapping(spec, ["Date", "Timestamp"]).values()


def test_import_files_refuses_a_mapping_onto_an_unknown_column(tmp_path):
    path = write(tmp_path, "clients.csv", SHOP)

    with pytest.raises(ImportFailed, match="not one of their columns"):
        import_files({"customers": path}, mapping={"customers": {"Customer ID": "customer_id"}})


# --- dry run ----------------------------------------------------------------------------------------

def _table_dump():
    """Every row of the data tables, as stored (the bytes a dry run must not change)."""
    out = {}
    with connection.cursor() as cursor:
        for model in (Customer, Product, Interaction, AuditEvent):
            table = model._meta.db_table
            cursor.execute(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - our own table names
            out[table] = cursor.fetchall()
    return out


def test_dry_run_writes_nothing_and_says_what_would_happen(tmp_path, rep):
    Customer.objects.create(external_id="C1", name="Old name")
    customers = write(tmp_path, "customers.csv", [["Customer ID", "name", "signup_date"], ["C1", "New name", ""],
                                                  ["C2", "Brand new", "31/12/2024"], ["", "No key", ""]])
    interactions = write(tmp_path, "interactions.csv", INTERACTIONS + [["C9", "purchase", "2024-01-01", "1", "I3", ""]])
    before = _table_dump()

    run = import_files({"customers": customers, "interactions": interactions}, dry_run=True)

    assert _table_dump() == before
    assert run.dry_run and run.status == ImportRun.Status.PARTIAL
    c, i = file_of(run, "customers"), file_of(run, "interactions")
    # the suggestion is applied to show what it gives; C2 would be created, so I2 is not orphaned
    assert c.column_mapping == {"Customer ID": "external_id"}
    assert (c.rows_read, c.created, c.updated, c.unchanged, c.rejected, c.warned) == (3, 1, 1, 0, 1, 1)
    assert (i.rows_read, i.created, i.rejected) == (3, 2, 1)
    assert [r["reason"] for r in read_rejects(rejected_path_for(interactions, dry_run=True))] == [
        "unknown customer 'C9': not in this import's customers nor already stored"]
    assert not rejected_path_for(interactions).exists()  # a real import's report is not replaced
    assert c.preview[0] == {"row": 2, "outcome": "ok", "values": {"external_id": "C1", "name": "New name",
                                                                 "signup_date": ""}, "reason": ""}
    assert c.preview[1]["outcome"] == "warning" and "declare the file's date format" in c.preview[1]["reason"]
    assert c.preview[2]["outcome"] == "rejected" and c.preview[2]["values"] == {}
    assert i.preview[0]["values"]["occurred_at"] == "2024-12-31T10:00:00+00:00"
    assert run.outcome == "dry run: 2 of 6 rows would be rejected, 1 would load with warnings"
    assert not ImportSource.objects.exists()


def test_dry_run_of_upload_then_import_of_the_checked_files(tmp_path, settings, manager):
    settings.MEDIA_ROOT = tmp_path / "media"
    upload = SimpleUploadedFile("clients.csv", b"Customer ID;Full Name\nS1;Ann\n", content_type="text/csv")
    checked = services.save_uploads({"customers": upload}, user=manager, dry_run=True)
    services.run_queued_import(checked.pk)
    assert not Customer.objects.exists()

    real = services.import_checked(checked.pk, user=manager, mapping={"customers": {"Customer ID": "external_id",
                                                                                    "Full Name": "name"}},
                                   source_name="Shop")
    services.run_queued_import(real.pk)

    real.refresh_from_db()
    assert (real.dry_run, real.status, real.files.get().filename) == (False, "succeeded", "clients.csv")
    assert Customer.objects.get(external_id="S1").name == "Ann"
    assert ImportSource.objects.get(name="Shop").mapping == {"customers": {"Customer ID": "external_id",
                                                                           "Full Name": "name"}}


# --- every error of a row, warnings, outcome -----------------------------------------------------------

def test_import_files_reports_every_error_of_a_row(tmp_path):
    Customer.objects.create(external_id="C1")
    path = write(tmp_path, "interactions.csv", [INTERACTIONS[0] + ["quantity"],
                                                ["C1", "gift", "yesterday", "-3", "I1", "", "x"]])

    import_files({"interactions": path})

    [reject] = read_rejects(rejected_path_for(path))
    assert reject["outcome"] == "rejected"
    assert reject["reason"] == ("type 'gift' is not one of call, email, meeting, note, purchase, refund, support, view; "
                                "occurred_at is not an ISO date or datetime (yesterday); quantity is not a whole number "
                                "(x): field skipped; amount is negative (-3): field skipped")


def test_import_files_bad_optional_field_keeps_the_customer_and_its_activities(tmp_path):
    customers = write(tmp_path, "customers.csv", [["external_id", "name", "signup_date"], ["C1", "Ann", "2024-02-30"]])
    interactions = write(tmp_path, "interactions.csv", INTERACTIONS[:2])

    run = import_files({"customers": customers, "interactions": interactions})

    assert Customer.objects.get(external_id="C1").signup_date is None
    assert Interaction.objects.filter(customer__external_id="C1").count() == 1  # not orphaned
    assert (file_of(run, "customers").warned, file_of(run, "interactions").rejected) == (1, 0)


def test_import_files_bad_optional_field_keeps_the_stored_value(tmp_path, rep):
    Customer.objects.create(external_id="C1", name="Ann", signup_date=date(2020, 1, 1), owner=rep)
    path = write(tmp_path, "customers.csv", [["external_id", "name", "signup_date", "owner"],
                                             ["C1", "Ann King", "not a date", "nobody"]])

    run = import_files({"customers": path})

    ann = Customer.objects.get(external_id="C1")
    assert (ann.name, ann.signup_date, ann.owner) == ("Ann King", date(2020, 1, 1), rep)
    assert file_of(run, "customers").updated == 1
    again = import_files({"customers": path})
    assert (file_of(again, "customers").unchanged, file_of(again, "customers").warned) == (1, 1)


def test_import_outcome_says_how_many_rows_were_rejected(tmp_path):
    rows = [["external_id", "name"]] + [["", f"no key {i}"] for i in range(10)] + [["C1", "a"], ["C2", "b"], ["C3", "c"]]
    path = write(tmp_path, "customers.csv", rows)

    run = import_files({"customers": path})

    assert run.status == ImportRun.Status.PARTIAL and run.badge == "partial"
    assert run.outcome == "completed, 10 of 13 rows rejected"
    clean = import_files({"customers": write(tmp_path, "ok.csv", [["external_id"], ["C1"]])})
    assert (clean.status, clean.outcome) == ("succeeded", "succeeded, 1 row")


def test_import_data_command_prints_format_mapping_and_outcome(tmp_path, capsys):
    path = write(tmp_path, "clients.csv", SHOP + [["", "No key", "", ""]], delimiter=";", encoding="cp1252")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"customers": {"Customer ID": "external_id"}}))

    call_command("import_data", customers=str(path), mapping=str(mapping), date_format="dmy")

    out = capsys.readouterr().out
    assert "customers (clients.csv): Windows-1252, semicolon-delimited; columns: 'Customer ID' -> external_id" in out
    assert "completed, 1 of 2 rows rejected" in out and "succeeded" not in out
    assert Customer.objects.get().external_id == "S1"


def test_import_data_command_dry_run_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, "clients.csv", SHOP)

    call_command("import_data", customers=str(path), dry_run=True)

    out = capsys.readouterr().out
    assert "Dry run" in out and "nothing was written" in out
    assert "suggested: 'Customer ID' -> external_id" in out and "would create 1" in out
    assert not Customer.objects.exists()


def test_import_failure_of_an_upload_names_the_file_not_the_server_path(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    upload = SimpleUploadedFile("Kunden.csv", b"Kundennummer;Name\nK1;Anna\n", content_type="text/csv")
    other = SimpleUploadedFile("orders.csv", b"customer_external_id,type,occurred_at\nK1,call,2024-01-01\n")
    run = services.save_uploads({"customers": upload, "interactions": other})

    services.run_queued_import(run.pk)

    run.refresh_from_db()
    assert run.status == "failed" and "customers file Kunden.csv (UTF-8, semicolon-delimited)" in run.error
    assert "orders.csv) are fine, but nothing was imported" in run.error
    assert str(settings.MEDIA_ROOT) not in run.error and "/imports/" not in run.error


@pytest.mark.parametrize(("data", "expected"), [
    (b"a,b\n1,2\n", ("utf-8", False)),
    ("a,b\n1,Renée\n".encode("utf-8-sig"), ("utf-8", True)),
    ("a,b\n1,Renée\n".encode("utf-16"), ("utf-16", True)),
    ("a,b\n1,Renée\n".encode("utf-16-be"), ("utf-16-be", False)),
    ("a,b\n1,Renée\n".encode("utf-32"), ("utf-32", True)),
    ("a,b\n1,Renée Lefèvre\n".encode("cp1252"), ("cp1252", False)),  # not Central European "Lefčvre"
    (b"a,b\n1,caf\xe9 \x81\n", ("latin-1", False)),  # 0x81 is no Windows-1252 character
    ("a,b\n1,déjà\n2,".encode() + b"caf\xe9\n", ("utf-8", False)),  # mostly UTF-8: one bad row
], ids=["ascii", "utf8-bom", "utf16-bom", "utf16be", "utf32", "cp1252", "latin1", "utf8-one-bad-row"])
def test_detect_encoding_rules(data, expected):
    import io

    assert importing.detect_encoding(io.BytesIO(data))[:2] == expected


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252"])
def test_more_rows_than_counts_rows_of_a_detected_encoding(encoding):
    import io

    content = "external_id;name\r\n" + "".join(f"K{i};Zoë\u010a\r\n" if encoding == "utf-16" else f"K{i};Zoë\r\n"
                                               for i in range(3))
    data = io.BytesIO(content.encode(encoding))  # U+010A holds a 0x0A byte in UTF-16
    fmt = importing.detect_format(data)

    assert (importing.more_rows_than(data, 3, fmt), importing.more_rows_than(data, 2, fmt)) == (False, True)


@pytest.mark.parametrize("date_format", ["dmy", "mdy"])
def test_day_first_and_month_first_dates_read_the_same_on_the_fast_and_the_per_row_path(tmp_path, settings,
                                                                                      date_format):
    settings.TIME_ZONE = "Europe/Paris"
    values = ["31/12/2024", "1.2.2024 7:05", "2024-03-04", "12/31/2024 14:30:59", "31/12-2024", "30/02/2024",
              "2/3/2024 2:30 PM"]
    rows = [["customer_external_id", "type", "occurred_at", "external_id"]] + [
        ["C1", "call", value, f"I{i}"] for i, value in enumerate(values)]
    plain = write(tmp_path, "plain.csv", rows)  # no quotes: read column-wise by pyarrow
    quoted = tmp_path / "quoted.csv"  # quotes: read row by row
    quoted.write_text("".join(",".join(f'"{v}"' for v in row) + "\n" for row in rows))
    Customer.objects.create(external_id="C1")
    outcome = {}
    for path in (plain, quoted):
        Interaction.objects.all().delete()
        import_files({"interactions": path}, date_format=date_format)
        outcome[path.name] = (sorted(Interaction.objects.values_list("external_id", "occurred_at")),
                              [(r["row"], r["reason"]) for r in read_rejects(rejected_path_for(path))])

    assert outcome["plain.csv"] == outcome["quoted.csv"]
    stored, rejected = outcome["plain.csv"]
    assert len(stored) + len(rejected) == len(values) and len(stored) >= 4


def test_decimal_commas_and_windows_line_ends_read_the_same_on_the_fast_and_the_per_row_path(tmp_path):
    amounts = ["12,5", "0,99", "1.234,50", "1,234", "007,10", "12,50 €", "3", ""]
    rows = [["customer_external_id", "type", "occurred_at", "amount", "external_id"]] + [
        ["C1", "purchase", "2024-01-01", amount, f"I{i}"] for i, amount in enumerate(amounts)]
    plain = write(tmp_path, "plain.csv", rows, delimiter=";", newline="\r\n")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("".join(";".join(f'"{v}"' for v in row) + "\r\n" for row in rows))
    Customer.objects.create(external_id="C1")
    outcome = {}
    for path in (plain, quoted):
        Interaction.objects.all().delete()
        import_files({"interactions": path})
        outcome[path.name] = (sorted(Interaction.objects.values_list("external_id", "amount")),
                              [(r["row"], r["reason"]) for r in read_rejects(rejected_path_for(path))])

    assert outcome["plain.csv"] == outcome["quoted.csv"]
    assert dict(outcome["plain.csv"][0])["I2"] == Decimal("1234.50")
    assert [row for row, _ in outcome["plain.csv"][1]] == ["5"]  # 1,234: ambiguous


def test_saved_source_keeps_mapping_entries_for_columns_a_later_file_lacks(tmp_path):
    ImportSource.objects.create(name="Shop", mapping={"customers": {"Customer ID": "external_id", "Tel": "phone"}})
    path = write(tmp_path, "clients.csv", [["Customer ID", "name"], ["S1", "Ann"]])

    import_files({"customers": path}, source_name="Shop")

    assert ImportSource.objects.get(name="Shop").mapping == {"customers": {"Customer ID": "external_id",
                                                                           "Tel": "phone"}}
    assert Customer.objects.get().external_id == "S1"
