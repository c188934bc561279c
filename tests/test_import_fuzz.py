"""Property-based fuzzing of the CSV import (Hypothesis): bad input never crashes it, every bad
row comes back with its row number and reason, every good row is kept, and formula-like cells
never come back as formulas in the CSV exports.

Good rows and bad rows come from separate strategies (a bad row is a good row with exactly one
planted defect), are shuffled together, written as one file and imported; the expected row
numbers are computed from the bytes written (a quoted cell may span lines).
"""
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm import imports as importing
from crm.exports import _FORMULA_START, _NUMBER
from crm.imports.importer import ImportFailed, import_files
from crm.imports.reports import rejected_path_for
from crm.models import Customer, ImportRun, Interaction, Product
from ml.models import CustomerSegment, Segment, Suggestion, TrainingRun
from tests.conftest import read_rejects

pytestmark = pytest.mark.django_db

# Moderate counts: the whole file runs in well under a minute on SQLite. Derandomized, so a CI
# run is reproducible; no example database (failing examples are printed, nothing is written).
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Any text a person could type: no surrogates (not encodable) and no NUL (a planted defect of its own).
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
free_text = st.text(TEXT_CHARS, max_size=30)
formula = st.builds(lambda start, rest: start + rest, st.sampled_from(FORMULA_STARTS + ("=HYPERLINK(", "@SUM(")),
                    st.text(TEXT_CHARS, max_size=15))
cell_text = st.one_of(free_text, formula)
ascii_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
key_text = st.text(TEXT_CHARS, min_size=1, max_size=30).map(str.strip).filter(
    lambda k: k and len(k) <= 100 and not k.startswith("~bad"))
iso_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
BAD_DATES = ["2024-13-01", "2024-02-30", "01/02/2024", "yesterday", "2024-1-5", "1899-12-31", "2101-01-01",
             "20240101", "2024-02-01x", "２０２４-01-01"]
BAD_TIMESTAMPS = ["2024-02-30", "2024-01-01T25:00", "2024-01-01T10:61", "2024-01-01 24:00:00", "1899-12-31T10:00",
                  "yesterday", "2024/01/01", "2024-01-01X10:00", "2024-01-01T10:00+25:00", "2024-01"]


def _break_lines(data: bytes) -> int:
    """Line breaks as the importer counts them (\\r\\n, \\r or \\n)."""
    return len(re.findall(rb"\r\n|\r|\n", data))


def _record(cells) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(cells)  # "\r\n" ends a record: a cell with "\r" or "\n" is quoted
    return out.getvalue().encode("utf-8")


def _write(path, header, records):
    """Write the file; return the row number (the record's first line) of each record, in order."""
    data = bytearray(_record(header))
    rows = []
    for record in records:
        rows.append(_break_lines(bytes(data)) + 1)
        data += record if isinstance(record, bytes) else _record(record)
    path.write_bytes(bytes(data))
    return rows


def _assert_bad_rows_reported(rejects, expected_bad):
    assert set(rejects) == set(expected_bad), (rejects, expected_bad)
    for row, reason in expected_bad.items():
        assert reason in rejects[row], (row, reason, rejects[row])


# --- customers.csv ------------------------------------------------------------------------------

CUSTOMER_HEADER = ["external_id", "name", "email", "company", "signup_date", "owner", "tier"]


@st.composite
def good_customer(draw, key):
    email = draw(st.one_of(st.just(""), st.builds("{}@{}.{}".format, ascii_word, ascii_word, ascii_word)))
    signup = draw(st.one_of(st.just(""), iso_dates.map(date.isoformat)))
    return [key, draw(cell_text), email, draw(cell_text), signup, draw(st.sampled_from(["", "rep1"])),
            draw(cell_text)]


def _defect(draw, cells, index, kind):
    """A bad version of a good record: (record (cells or raw bytes), reason substring)."""
    cells = list(cells)
    if kind == "nul":
        column = draw(st.integers(1, len(cells) - 1))
        cells[column] = cells[column] + "\x00" + draw(free_text)
        return cells, "contains a NUL character"
    if kind == "latin1":
        # One Latin-1 byte in a row whose other text is UTF-8 ("ü€ß"): the file reads as UTF-8 (more
        # valid multi-byte characters than invalid bytes) and only this row is rejected.
        column = draw(st.integers(1, len(cells) - 1))
        cells[column] = draw(free_text) + "café-latin1-mark"
        cells[0 if column else 1] += "ü€ß"
        raw = _record(cells)
        return raw.replace("café-latin1-mark".encode(), b"caf\xe9-latin1-mark"), "not valid UTF-8 (byte 0xe9)"
    if kind == "missing_column":
        return cells[:draw(st.integers(1, len(cells) - 1))], "columns, found"
    if kind == "extra_column":
        return cells + draw(st.lists(free_text, min_size=1, max_size=3)), "columns, found"
    if kind == "huge_cell":
        # In the last column: csv.reader gives up on a record at its over-long cell and goes on at
        # the next line, so a quoted multi-line cell after it would come back as extra (rejected)
        # fragments, one bad record reported as several.
        cells[-1] = "x" * (importing.MAX_CELL_BYTES + draw(st.integers(1, 10)))
        return cells, "longer than 1000000 characters"
    raise AssertionError(kind)


COMMON_DEFECTS = ("nul", "latin1", "missing_column", "extra_column")
WARNING = "warning:"  # a planted defect of an optional field: the row loads, that field skipped


@st.composite
def bad_customer(draw, index):
    cells = draw(good_customer(f"~bad{index}"))  # a key no good row has
    kind = draw(st.sampled_from(COMMON_DEFECTS + ("empty_key", "email", "date", "long_name", "owner", "huge_cell")))
    if kind == "huge_cell" and draw(st.integers(0, 4)):  # rare: a megabyte per example is slow
        kind = "date"
    if kind == "empty_key":
        cells[0] = draw(st.sampled_from(["", " ", "\t", "\u3000"]))
        return cells, "external_id is empty"
    if kind == "email":
        cells[2] = draw(st.text(TEXT_CHARS, min_size=1, max_size=20).filter(
            lambda e: e.strip() and "@" not in e))
        return cells, WARNING + "email is not an e-mail address"
    if kind == "date":
        cells[4] = draw(st.sampled_from(BAD_DATES))
        return cells, WARNING + "signup_date "
    if kind == "long_name":
        cells[1] = "N" * draw(st.integers(201, 400))
        return cells, WARNING + "name is longer than 200 characters"
    if kind == "owner":
        cells[5] = "nobody-" + draw(ascii_word)
        return cells, WARNING + "unknown owner"
    return _defect(draw, cells, index, kind)


@st.composite
def customer_file(draw):
    keys = draw(st.lists(key_text, max_size=25, unique=True))
    good = [draw(good_customer(key)) for key in keys]
    bad = [draw(bad_customer(i)) for i in range(draw(st.integers(0, 12)))]
    # Duplicated keys: a copy of a good record (same key); whichever comes later is rejected.
    copies = draw(st.lists(st.integers(0, max(len(good) - 1, 0)), max_size=4)) if good else []
    return good, bad, copies


def _assert_reported(run, path, rows, labelled, loaded):
    """Every bad row reported (rejected, or loaded with a warning), the status saying so."""
    result = run.files.get()
    rejected = [(row, reason) for row, (what, _, reason) in zip(rows, labelled)
                if what == "bad" and not reason.startswith(WARNING)]
    warned = [(row, reason.removeprefix(WARNING)) for row, (what, _, reason) in zip(rows, labelled)
              if what == "bad" and reason.startswith(WARNING)]
    assert (result.rows_read, result.created, result.rejected, result.warned) == (
        len(labelled), loaded + len(warned), len(rejected), len(warned))
    assert run.status == (ImportRun.Status.PARTIAL if rejected or warned else ImportRun.Status.SUCCEEDED)
    report = read_rejects(rejected_path_for(path)) if rejected or warned else []
    for outcome, expected in (("rejected", rejected), ("warning", warned)):
        _assert_bad_rows_reported({int(r["row"]): r["reason"] for r in report if r["outcome"] == outcome},
                                  dict(expected))


@FUZZ
@given(data=customer_file(), order_seed=st.randoms(use_true_random=False), batch_size=st.sampled_from([1, 4, 1000]))
def test_import_customers_fuzz_keeps_every_good_row_and_reports_every_bad_one(
        rep, tmp_path, data, order_seed, batch_size):
    Customer.objects.all().delete()
    good, bad, copies = data
    records = good + [list(good[i]) for i in copies]
    tagged = [("good", r, None) for r in records] + [("bad", cells, reason) for cells, reason in bad]
    order_seed.shuffle(tagged)
    # The first record of each key is the good one; later copies are duplicates.
    seen, labelled = set(), []
    for what, cells, reason in tagged:
        if what == "good":
            if cells[0] in seen:
                what, reason = "bad", "duplicate external_id"
            seen.add(cells[0])
        labelled.append((what, cells, reason))
    path = tmp_path / "customers.csv"
    rows = _write(path, CUSTOMER_HEADER, [cells for _, cells, _ in labelled])

    run = import_files({"customers": path}, batch_size=batch_size)

    _assert_reported(run, path, rows, labelled, loaded=len(good))
    warned = {cells[0] for what, cells, reason in labelled if what == "bad" and reason.startswith(WARNING)}
    assert set(Customer.objects.values_list("external_id", flat=True)) == {g[0] for g in good} | warned


# --- interactions.csv ---------------------------------------------------------------------------

INTERACTION_HEADER = ["customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount",
                      "order_ref", "external_id", "channel", "notes"]

# Good interactions happened: a future one is refused (crm.clock). Two days back stays in the past
# whatever the offset and the time zone.
_PAST = date.today() - timedelta(days=2)
timestamps = st.one_of(
    st.dates(min_value=date(1900, 1, 1), max_value=_PAST).map(date.isoformat),
    st.builds(lambda d, sep, seconds, offset: d.isoformat(sep=sep, timespec="seconds" if seconds else "minutes")
              + offset,
              st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime.combine(_PAST, datetime.min.time())),
              st.sampled_from("T "), st.booleans(), st.sampled_from(["", "+02:00", "-05:30", "+00:00", "Z"])),
)
amounts = st.one_of(st.just(""), st.decimals(min_value=0, max_value=10**9, places=2).map(str),
                    st.integers(0, 10**6).map(str), st.sampled_from(["0", "1.5", "+3", "-0", "007.10"]),
                    # what spreadsheets write: decimal commas, thousands separators, currency symbols
                    st.decimals(min_value=0, max_value=10**9, places=2).map(
                        lambda d: f"{d:,.2f}".replace(",", " ").replace(".", ",") + " €"),
                    st.decimals(min_value=0, max_value=10**9, places=2).map(lambda d: f"${d:,.2f}"),
                    st.sampled_from(["1,5", "1.234,50", "£12", "12,50 EUR"]))


@st.composite
def good_interaction(draw, index):
    return [draw(st.sampled_from(["C1", "C2", " C1 "])),
            draw(st.sampled_from(sorted(importing.INTERACTION_TYPES) + ["Purchase", " call "])),
            draw(timestamps), draw(st.sampled_from(["", "P1"])),
            draw(st.one_of(st.just(""), st.integers(0, 999_999_999).map(str))),
            draw(amounts), draw(free_text)[:100], f"I{index}", draw(free_text)[:100], draw(cell_text)]


@st.composite
def bad_interaction(draw, index):
    cells = draw(good_interaction(0))
    cells[7] = f"~bad{index}"  # a key no good row has: a rejected row never shadows a good one
    kind = draw(st.sampled_from(COMMON_DEFECTS + ("customer", "type", "timestamp", "amount", "quantity",
                                                  "product")))
    if kind == "customer":
        cells[0] = "nobody-" + draw(ascii_word)
        return cells, "unknown customer"
    if kind == "type":
        cells[1] = draw(st.sampled_from(["gift", "", "purchases", "buy"]))
        return cells, "type"
    if kind == "timestamp":
        cells[2] = draw(st.sampled_from(BAD_TIMESTAMPS + [""]))
        return cells, "occurred_at is"
    if kind == "amount":
        cells[5], reason = draw(st.sampled_from([("-5", "is negative"), ("1,234", "1,234 is ambiguous"),
                                                 ("1e5", "is not a number"), ("1.005", "has more than 2 decimal"),
                                                 ("abc", "is not a number"), ("1" * 13, "is not a number"),
                                                 ("1,2,3", "is not a number"), ("€-5", "is negative")]))
        return cells, WARNING + f"amount {reason}"
    if kind == "quantity":
        cells[4], reason = draw(st.sampled_from([("-1", "quantity is negative"), ("1.5", "not a whole number"),
                                                 ("abc", "not a whole number"),
                                                 ("99999999999", "not a whole number"),
                                                 ("3000000000", "quantity is too large")]))
        return cells, WARNING + reason
    if kind == "product":
        cells[3] = "nope-" + draw(ascii_word)
        return cells, WARNING + "unknown product"
    return _defect(draw, cells, index, kind)


@FUZZ
@given(data=st.data(), batch_size=st.sampled_from([1, 5, 1000]))
def test_import_interactions_fuzz_keeps_every_good_row_and_reports_every_bad_one(db, tmp_path, data, batch_size):
    Interaction.objects.all().delete()
    Customer.objects.all().delete()
    Product.objects.all().delete()
    Customer.objects.bulk_create([Customer(external_id="C1"), Customer(external_id="C2")])
    Product.objects.create(sku="P1", name="P1")
    good = [data.draw(good_interaction(i)) for i in range(data.draw(st.integers(0, 25)))]
    bad = [data.draw(bad_interaction(i)) for i in range(data.draw(st.integers(0, 12)))]
    copies = data.draw(st.lists(st.integers(0, len(good) - 1), max_size=3)) if good else []
    tagged = [("good", g, None) for g in good] + [("good", list(good[i]), None) for i in copies] + [
        ("bad", cells, reason) for cells, reason in bad]
    tagged = data.draw(st.permutations(tagged))
    seen, labelled = set(), []
    for what, cells, reason in tagged:
        if what == "good":
            if cells[7] in seen:
                what, reason = "bad", "duplicate external_id"
            seen.add(cells[7])
        labelled.append((what, cells, reason))
    path = tmp_path / "interactions.csv"
    rows = _write(path, INTERACTION_HEADER, [cells for _, cells, _ in labelled])

    run = import_files({"interactions": path}, batch_size=batch_size)

    _assert_reported(run, path, rows, labelled, loaded=len(good))
    warned = {cells[7] for what, cells, reason in labelled if what == "bad" and reason.startswith(WARNING)}
    assert set(Interaction.objects.values_list("external_id", flat=True)) == {g[7] for g in good} | warned


# --- whole files: random bytes, encodings, headers ----------------------------------------------

def _import_or_reject(path, kind="customers"):
    """Import a file; a clear file-level rejection (ImportFailed) is the only failure allowed."""
    try:
        run = import_files({kind: path})
    except ImportFailed as exc:
        assert str(exc).strip()
        return None
    result = run.files.get()
    assert result.rows_read == result.created + result.updated + result.unchanged + result.rejected
    return result


@FUZZ
@given(content=st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda head, body: head + body, st.sampled_from([b"external_id\n", b"external_id,name,x\n",
                                                               b"\xef\xbb\xbfexternal_id,name\n"]),
              st.binary(max_size=2000)),
    st.builds(lambda head, body: head + body.encode("utf-8", "surrogatepass"),
              st.sampled_from([b"external_id,name\n", b"sku,name,price\n"]),
              st.text(st.sampled_from(',"\r\n\x00ab =\t'), max_size=300)),
))
def test_import_random_bytes_never_crash(db, tmp_path, content):
    Customer.objects.all().delete()
    path = tmp_path / "customers.csv"
    path.write_bytes(content)

    _import_or_reject(path)


@FUZZ
@given(good=st.lists(st.lists(free_text, min_size=2, max_size=2), max_size=10),
       encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]),
       delimiter=st.sampled_from([",", "\t", ";"]))
def test_import_utf16_and_utf32_files_keep_every_row(db, tmp_path, good, encoding, delimiter):
    Customer.objects.all().delete()
    path = tmp_path / "customers.csv"
    rows = [["external_id", "name"], *[[f"K{i}", c[1]] for i, c in enumerate(good)]]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))

    result = _import_or_reject(path)

    assert result is not None and (result.created, result.rejected) == (len(good), 0)
    # csv.writer quotes a cell with a line break; the importer strips the spaces around a value
    assert dict(Customer.objects.values_list("external_id", "name")) == {f"K{i}": c[1].strip()
                                                                         for i, c in enumerate(good)}


@FUZZ
@given(names=st.lists(free_text, min_size=1, max_size=10), quoted=st.booleans())
def test_import_utf8_bom_file_keeps_every_row(db, tmp_path, names, quoted):
    Customer.objects.all().delete()
    path = tmp_path / "customers.csv"
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL).writerows(
        [["external_id", "name"], *[[f"K{i}", n] for i, n in enumerate(names)]])
    path.write_bytes(out.getvalue().encode("utf-8-sig"))

    result = _import_or_reject(path)

    assert result is not None and (result.created, result.rejected) == (len(names), 0)


# Letters of Western European names, all in Windows-1252 (œ, Š and € are not in Latin-1).
LATIN_LETTERS = "abcdeXYZ éèêëàâäôöûüçñßÉÀÇÖÜ-'."


@FUZZ
@given(names=st.lists(st.text(LATIN_LETTERS, max_size=12), min_size=1, max_size=10),
       encoding=st.sampled_from(["latin-1", "cp1252"]), delimiter=st.sampled_from([",", ";"]),
       extra=st.sampled_from(["", "œuvre", "Šimon", "12 €"]))
def test_import_legacy_single_byte_file_keeps_every_row_with_its_accents(db, tmp_path, names, encoding, delimiter,
                                                                         extra):
    Customer.objects.all().delete()
    if encoding == "latin-1":
        extra = ""  # not in Latin-1
    path = tmp_path / "customers.csv"
    rows = [["external_id", "name"], *[[f"K{i}", n + (extra if i == 0 else "")] for i, n in enumerate(names)]]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))

    result = _import_or_reject(path)

    assert result is not None and (result.created, result.rejected) == (len(names), 0)
    assert dict(Customer.objects.values_list("external_id", "name")) == {k: n.strip() for k, n in rows[1:]}


@FUZZ
@given(header=st.lists(st.sampled_from(CUSTOMER_HEADER + ["", " external_id ", "extra", "EXTERNAL_ID"]),
                       min_size=0, max_size=8))
def test_import_header_variants_import_or_fail_as_a_whole(db, tmp_path, header):
    Customer.objects.all().delete()
    path = tmp_path / "customers.csv"
    _write(path, header or [""], [[f"K{i}"] * max(len(header), 1) for i in range(3)])
    names = [h.strip() for h in header]

    result = _import_or_reject(path)

    if "external_id" not in names or len(set(names)) != len(names):
        assert result is None and Customer.objects.count() == 0
    else:
        assert result is not None and result.rows_read == 3


# --- formula injection: stored as typed, exported defused ---------------------------------------

def _assert_no_formula(text):
    for cells in csv.reader(io.StringIO(text)):
        for cell in cells:
            assert not cell.startswith(_FORMULA_START) or _NUMBER.match(cell), cell


@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(formula.map(str.strip).filter(lambda v: v and len(v) < 100), min_size=4, max_size=8,
                      unique=True))
def test_exports_never_return_imported_formulas_as_formulas(client, manager, tmp_path, values):
    Customer.objects.all().delete()
    Product.objects.all().delete()
    TrainingRun.objects.all().delete()
    customers = _write_plain(tmp_path / "customers.csv", ["external_id", "name", "company", "city"],
                             [[v, v, v, v] for v in values])
    products = _write_plain(tmp_path / "products.csv", ["sku", "name"], [[v, v] for v in values])
    run = import_files({"customers": customers, "products": products})
    assert all(f.rejected == 0 for f in run.files.all())
    now = datetime.now(UTC)
    seg_run = TrainingRun.objects.create(kind="segmentation", status="succeeded", is_published=True, published_at=now,
                                         as_of=date(2025, 1, 1), horizon_days=90)
    rec_run = TrainingRun.objects.create(kind="recommendation", status="succeeded", is_published=True,
                                         published_at=now, as_of=date(2025, 1, 1), horizon_days=90)
    segment = Segment.objects.create(run=seg_run, key=0, name=values[0][:100], profile="p", size=1)
    products_by_sku = {p.sku: p for p in Product.objects.all()}
    for customer in Customer.objects.all():
        CustomerSegment.objects.create(run=seg_run, customer=customer, segment=segment)
        for rank, sku in enumerate(values[:3], start=1):
            for kind in ("recommendation", "reorder"):
                Suggestion.objects.create(run=rec_run, customer=customer, kind=kind, rank=rank,
                                          product=products_by_sku[sku], score=0.5, reason="r")
    client.force_login(manager)

    page = b"".join(client.get(reverse("customer_export")).streaming_content).decode()
    out = tmp_path / "insights.csv"
    call_command("export_insights", out=str(out), stdout=io.StringIO())

    assert len(list(csv.reader(io.StringIO(page)))) == len(values) + 1
    _assert_no_formula(page)
    _assert_no_formula(out.read_text())


def _write_plain(path, header, rows):
    _write(path, header, rows)
    return path


# --- regressions: bugs the fuzzing found --------------------------------------------------------

def test_import_utf8_bom_before_quoted_header_is_not_part_of_the_first_name(db, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(b'\xef\xbb\xbf"external_id","name"\r\n"K1","Ada"\r\nK2,Grace\r\n')

    run = import_files({"customers": path})

    assert run.files.get().created == 2
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"K1", "K2"}


def test_import_utf16_file_without_bom_is_read_as_utf16(db, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes("external_id,name\r\nK1,Ada\r\n".encode("utf-16-le"))

    run = import_files({"customers": path})

    assert run.files.get().encoding == "UTF-16 LE" and Customer.objects.get().name == "Ada"


@pytest.mark.parametrize("other_row", [b"K2,plain\n", b'K2,"quoted"\n'], ids=["plain-batch", "quoted-batch"])
def test_import_cell_over_the_limit_is_rejected_whatever_else_is_in_its_batch(db, tmp_path, other_row):
    path = tmp_path / "customers.csv"
    huge = b"x" * (importing.MAX_CELL_BYTES + 1)
    path.write_bytes(b"external_id,name\nK1,ok\nK3," + huge + b"\n" + other_row)

    run = import_files({"customers": path})

    result = run.files.get()
    assert (result.rows_read, result.created, result.rejected) == (3, 2, 1)
    [reject] = read_rejects(rejected_path_for(path))  # the rejects file stays readable
    assert reject["row"] == "3" and reject["reason"] == "a cell is longer than 1000000 characters"


def test_export_insights_defuses_formula_skus_in_suggestion_lists(db, tmp_path):
    customer = Customer.objects.create(external_id="C1")
    product = Product.objects.create(sku="=HYPERLINK(\"http://x\")", name="p")
    run = TrainingRun.objects.create(kind="recommendation", status="succeeded", is_published=True,
                                     published_at=datetime.now(UTC), as_of=date(2025, 1, 1), horizon_days=90)
    Suggestion.objects.create(run=run, customer=customer, kind="recommendation", rank=1, product=product, score=1,
                              reason="r")
    out = tmp_path / "insights.csv"

    call_command("export_insights", out=str(out), stdout=io.StringIO())

    [row] = list(csv.DictReader(out.open(newline="")))
    assert row["recommendations"] == "'=HYPERLINK(\"http://x\")"
