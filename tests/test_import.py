"""The CSV import: validation with row numbers, idempotence, updates, batches, streaming."""
import subprocess
import sys
from decimal import Decimal

import pytest
from django.db import connection

from crm.imports.importer import ImportFailed, import_files
from crm.imports.reports import rejected_path_for
from crm.models import Customer, ImportRun, Interaction, Product
from tests.conftest import ROOT, read_rejects

CUSTOMER_HEADER = ["external_id", "name", "email", "company", "country", "signup_date", "owner", "tier"]
PRODUCT_HEADER = ["sku", "name", "category", "price", "description", "tags", "active"]
INTERACTION_HEADER = ["customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount",
                      "order_ref", "external_id", "channel", "notes"]


@pytest.fixture
def base_files(write_csv, rep):
    customers = write_csv("customers.csv", CUSTOMER_HEADER, [
        ["C1", "Ada Lovelace", "ada@example.com", "Engines Ltd", "GB", "2024-01-05", "rep1", "gold"],
        ["C2", "Grace Hopper", "grace@example.com", "", "US", "", "", ""],
    ])
    products = write_csv("products.csv", PRODUCT_HEADER, [
        ["P1", "Espresso beans", "Coffee", "12.50", "Dark roast", "coffee;beans", "true"],
        ["P2", "Paper filters", "Coffee", "3", "", "", "false"],
    ])
    interactions = write_csv("interactions.csv", INTERACTION_HEADER, [
        ["C1", "purchase", "2024-02-01T10:00:00", "P1", "2", "25.00", "O1", "I1", "web", ""],
        ["C1", "purchase", "2024-02-01", "P2", "", "3.00", "O1", "I2", "web", ""],
        ["C2", "call", "2024-02-03T09:30+02:00", "", "", "", "", "I3", "phone", "Asked about prices"],
    ])
    return {"customers": customers, "products": products, "interactions": interactions}


def counts(run):
    return {f.kind: (f.rows_read, f.created, f.updated, f.unchanged, f.rejected) for f in run.files.all()}


def test_import_files_loads_customers_products_and_interactions_in_one_run(base_files, rep):
    run = import_files(base_files)

    assert run.status == ImportRun.Status.SUCCEEDED
    assert counts(run) == {"customers": (2, 2, 0, 0, 0), "products": (2, 2, 0, 0, 0),
                           "interactions": (3, 3, 0, 0, 0)}
    ada = Customer.objects.get(external_id="C1")
    assert ada.owner == rep and ada.attributes == {"tier": "gold"} and str(ada.signup_date) == "2024-01-05"
    assert Product.objects.get(sku="P2").active is False
    first = Interaction.objects.get(external_id="I1")
    assert first.customer == ada and first.amount == Decimal("25.00") and first.quantity == 2
    assert Interaction.objects.get(external_id="I2").quantity == 1  # the contract's default
    call = Interaction.objects.get(external_id="I3")
    assert call.occurred_at.isoformat() == "2024-02-03T07:30:00+00:00"  # the offset is honoured
    assert call.product is None and call.amount is None


def test_import_files_reimport_of_same_files_changes_nothing(base_files):
    import_files(base_files)
    before = list(Interaction.objects.order_by("id").values())

    again = import_files(base_files)

    assert counts(again) == {"customers": (2, 0, 0, 2, 0), "products": (2, 0, 0, 2, 0),
                             "interactions": (3, 0, 0, 3, 0)}
    assert list(Interaction.objects.order_by("id").values()) == before


def test_import_files_changed_row_updates_stored_one(base_files, write_csv):
    import_files(base_files)
    changed = write_csv("interactions2.csv", INTERACTION_HEADER, [
        ["C1", "purchase", "2024-02-01T10:00:00", "P1", "3", "37.50", "O1", "I1", "web", ""],
    ])

    run = import_files({"interactions": changed})

    assert counts(run) == {"interactions": (1, 0, 1, 0, 0)}
    row = Interaction.objects.get(external_id="I1")
    assert (row.quantity, row.amount) == (3, Decimal("37.50"))
    assert Interaction.objects.count() == 3


def test_import_files_without_external_id_is_idempotent_by_content(base_files, write_csv):
    import_files({"customers": base_files["customers"]})
    header = ["customer_external_id", "type", "occurred_at", "notes"]
    notes = write_csv("notes.csv", header, [["C1", "note", "2024-03-01", "Prefers e-mail"],
                                            ["C1", "note", "2024-03-02", "Prefers e-mail"]])

    first, second = import_files({"interactions": notes}), import_files({"interactions": notes})

    assert counts(first)["interactions"] == (2, 2, 0, 0, 0)
    assert counts(second)["interactions"] == (2, 0, 0, 2, 0)
    assert Interaction.objects.filter(type="note").count() == 2


def test_import_files_file_without_owner_column_keeps_stored_owner(base_files, write_csv, rep):
    import_files({"customers": base_files["customers"]})
    renamed = write_csv("c2.csv", ["external_id", "name"], [["C1", "Ada King"]])

    import_files({"customers": renamed})

    ada = Customer.objects.get(external_id="C1")
    assert ada.name == "Ada King" and ada.owner == rep and ada.attributes == {"tier": "gold"}


@pytest.mark.parametrize(("row", "reason"), [
    (["C9", "purchase", "2024-02-01", "P1", "1", "5", "", "X1", "", ""], "unknown customer 'C9'"),
    (["C1", "purchase", "2024-13-01", "P1", "1", "5", "", "X1", "", ""], "occurred_at is not an ISO date"),
    (["C1", "purchase", "yesterday", "P1", "1", "5", "", "X1", "", ""], "occurred_at is not an ISO date"),
    (["C1", "gift", "2024-02-01", "P1", "1", "5", "", "X1", "", ""], "type 'gift' is not one of"),
    (["C1", "purchase", "2024-02-01", "P1", "1", "5", "", "X1", ""], "expected 10 columns, found 9"),
    (["", "purchase", "2024-02-01", "P1", "1", "5", "", "X1", "", ""], "customer_external_id is empty"),
    (["C1", "purchase", "2024-02-01", "P1", "1", "5", "", "X" * 101, "", ""], "external_id is longer than 100"),
])
def test_import_files_rejects_bad_interaction_row_and_keeps_good_ones(base_files, write_csv, row, reason):
    import_files({"customers": base_files["customers"], "products": base_files["products"]})
    good = ["C1", "view", "2024-02-01", "P1", "", "", "", "G1", "", ""]
    path = write_csv("bad.csv", INTERACTION_HEADER, [good, row, good[:7] + ["G2"] + good[8:]])

    run = import_files({"interactions": path})

    assert counts(run)["interactions"] == (3, 2, 0, 0, 1)
    assert set(Interaction.objects.values_list("external_id", flat=True)) == {"G1", "G2"}
    rejects = read_rejects(rejected_path_for(path))
    assert len(rejects) == 1 and rejects[0]["row"] == "3" and reason in rejects[0]["reason"]
    assert rejects[0]["outcome"] == "rejected"


@pytest.mark.parametrize(("row", "reason", "field", "stored"), [
    (["C1", "purchase", "2024-02-01", "P9", "1", "5", "", "X1", "", ""], "unknown product 'P9'", "product", None),
    (["C1", "purchase", "2024-02-01", "P1", "1", "-5.00", "", "X1", "", ""], "amount is negative", "amount", None),
    (["C1", "purchase", "2024-02-01", "P1", "1", "5.001", "", "X1", "", ""], "more than 2 decimal places",
     "amount", None),
    (["C1", "purchase", "2024-02-01", "P1", "-2", "5", "", "X1", "", ""], "quantity is negative", "quantity", 1),
    (["C1", "purchase", "2024-02-01", "P1", "2.5", "5", "", "X1", "", ""], "quantity is not a whole number",
     "quantity", 1),
])
def test_import_files_bad_optional_interaction_field_loads_the_row_with_a_warning(base_files, write_csv, row,
                                                                                  reason, field, stored):
    import_files({"customers": base_files["customers"], "products": base_files["products"]})
    path = write_csv("bad.csv", INTERACTION_HEADER, [row])

    run = import_files({"interactions": path})

    assert counts(run)["interactions"] == (1, 1, 0, 0, 0)
    assert getattr(Interaction.objects.get(external_id="X1"), field) == stored
    [warning] = read_rejects(rejected_path_for(path))
    assert (warning["row"], warning["outcome"]) == ("2", "warning")
    assert reason in warning["reason"] and warning["reason"].endswith("field skipped")
    assert run.files.get().warned == 1 and run.status == ImportRun.Status.PARTIAL


def test_import_files_rejects_duplicate_key_inside_file_across_batches(base_files, write_csv):
    import_files({"customers": base_files["customers"]})
    rows = [["C1", "view", f"2024-02-{d:02d}", "", "", "", "", f"V{d}", "", ""] for d in range(1, 8)]
    rows.append(["C1", "email", "2024-03-01", "", "", "", "", "V2", "", ""])  # V2 again, in a later batch
    path = write_csv("dups.csv", INTERACTION_HEADER, rows)

    run = import_files({"interactions": path}, batch_size=3)

    assert counts(run)["interactions"] == (8, 7, 0, 0, 1)
    assert Interaction.objects.get(external_id="V2").type == "view"  # the first one wins
    [reject] = read_rejects(rejected_path_for(path))
    assert reject["row"] == "9" and "already on row 3" in reject["reason"]


def test_import_files_rejects_the_invalid_row_of_a_utf8_file(base_files, tmp_path):
    import_files({"customers": base_files["customers"]})
    path = tmp_path / "mixed.csv"
    path.write_bytes("customer_external_id,type,occurred_at,notes\n"
                     "C1,note,2024-02-01,Crème brûlée\n".encode() +
                     b"C1,note,2024-02-02,caf\xe9\n" +
                     "C1,note,2024-02-03,déjà vu\n".encode())

    run = import_files({"interactions": path})

    # Mostly valid UTF-8: the good rows keep their accents, the one bad row is rejected.
    assert counts(run)["interactions"] == (3, 2, 0, 0, 1)
    assert sorted(Interaction.objects.values_list("notes", flat=True)) == ["Crème brûlée", "déjà vu"]
    [reject] = read_rejects(rejected_path_for(path))
    assert reject["row"] == "3" and "not valid UTF-8 (byte 0xe9)" in reject["reason"]
    assert run.files.get().encoding == "UTF-8"


def test_import_files_rejects_bad_customer_and_product_rows(write_csv, rep):
    customers = write_csv("c.csv", CUSTOMER_HEADER, [
        ["C1", "Ok", "ok@example.com", "", "", "2024-01-01", "rep1", ""],
        ["C2", "Bad owner", "", "", "", "", "nobody", ""],
        ["C3", "Bad email", "not-an-email", "", "", "", "", ""],
        ["C4", "Bad date", "", "", "", "01/02/2024", "", ""],
        ["", "No key", "", "", "", "", "", ""],
    ])
    products = write_csv("p.csv", PRODUCT_HEADER, [
        ["P1", "Ok", "", "1.00", "", "", ""],
        ["P2", "Negative", "", "-1", "", "", ""],
        ["P3", "", "", "1", "", "", ""],
        ["P4", "Bad flag", "", "1", "", "", "maybe"],
    ])

    run = import_files({"customers": customers, "products": products})

    # Only a missing key or name rejects a row; a bad optional field is skipped with a warning.
    assert counts(run) == {"customers": (5, 4, 0, 0, 1), "products": (4, 3, 0, 0, 1)}
    report = [(r["row"], r["outcome"], r["reason"]) for r in read_rejects(rejected_path_for(customers))]
    assert report == [
        ("3", "warning", "unknown owner 'nobody': no user with that username: field skipped"),
        ("4", "warning", "email is not an e-mail address (not-an-email): field skipped"),
        ("5", "warning", "signup_date 01/02/2024 is not an ISO date (YYYY-MM-DD): declare the file's date format "
                         "(day first or month first) to read it: field skipped"),
        ("6", "rejected", "external_id is empty"),
    ]
    assert Customer.objects.get(external_id="C2").owner is None
    assert Customer.objects.get(external_id="C3").email == ""
    assert Product.objects.get(sku="P2").price is None and Product.objects.get(sku="P4").active is True
    assert [(r["row"], r["outcome"]) for r in read_rejects(rejected_path_for(products))] == [
        ("3", "warning"), ("4", "rejected"), ("5", "warning")]


def test_import_files_missing_required_column_writes_nothing(base_files, write_csv):
    broken = write_csv("broken.csv", ["customer_external_id", "occurred_at"], [["C1", "2024-01-01"]])

    with pytest.raises(ImportFailed, match="missing required column"):
        import_files({"customers": base_files["customers"], "interactions": broken})

    assert Customer.objects.count() == 0  # the customers file was valid, but nothing is written
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


def test_import_files_missing_file_is_a_clear_error(tmp_path, db):
    with pytest.raises(ImportFailed, match="does not exist"):
        import_files({"customers": tmp_path / "nope.csv"})


def _install_failing_trigger(external_id):
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER test_fail BEFORE INSERT ON crm_interaction "
                f"WHEN NEW.external_id = '{external_id}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        else:
            cursor.execute(
                "CREATE FUNCTION test_fail() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.external_id = '{external_id}' THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql")
            cursor.execute("CREATE TRIGGER test_fail BEFORE INSERT ON crm_interaction "
                           "FOR EACH ROW EXECUTE FUNCTION test_fail()")


def _drop_failing_trigger():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER test_fail")
        else:
            cursor.execute("DROP TRIGGER test_fail ON crm_interaction")
            cursor.execute("DROP FUNCTION test_fail()")


def test_import_files_failure_mid_file_leaves_only_whole_batches_and_rerun_completes(
        base_files, write_csv, transactional_db, settings):
    settings.IMPORT_BULK_LOAD = False  # batch by batch, as into a table that holds rows (tests/test_import_bulk.py)
    import_files({"customers": base_files["customers"]})
    rows = [["C1", "view", f"2024-01-{1 + i % 28:02d}", "", "", "", "", f"V{i:03d}", "", ""] for i in range(25)]
    path = write_csv("views.csv", INTERACTION_HEADER, rows)
    _install_failing_trigger("V013")  # in the third batch of 5

    with pytest.raises(Exception, match="injected failure"):
        import_files({"interactions": path}, batch_size=5)

    stored = set(Interaction.objects.values_list("external_id", flat=True))
    assert stored == {f"V{i:03d}" for i in range(10)}  # two whole batches, nothing of the third
    assert ImportRun.objects.order_by("-id").first().status == ImportRun.Status.FAILED
    _drop_failing_trigger()

    rerun = import_files({"interactions": path}, batch_size=5)

    assert counts(rerun)["interactions"] == (25, 15, 0, 10, 0)
    assert set(Interaction.objects.values_list("external_id", flat=True)) == {f"V{i:03d}" for i in range(25)}


def _import_rss_kb(path, customers, sqlite_file):
    """Peak RSS (KB) of an `import_data` process, and the interactions it left stored.

    On SQLite the process gets a database file of its own: the shared test database grows
    with the whole suite, and SQLite's page cache (capped, in the process) would measure the
    suite's history rather than the import. On PostgreSQL it uses the test database.
    """
    import os

    env = os.environ.copy()
    db = connection.settings_dict
    setup = ""
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{sqlite_file}"
        setup = "call_command('migrate', verbosity=0);" if not sqlite_file.exists() else ""
    else:
        env["DATABASE_URL"] = (f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
                               f"{db['PORT'] or 5432}/{db['NAME']}")
    code = ("import sys, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings');"
            "django.setup(); from django.core.management import call_command;" + setup +
            f"call_command('import_data', customers={str(customers)!r}, interactions={str(path)!r});"
            "from crm.models import Interaction;"
            # VmHWM is the peak of this address space: unlike ru_maxrss it does not carry over the
            # RSS of the (large) pytest process this one was forked from before exec.
            "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'));"
            "print(hwm, Interaction.objects.count())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    rss, stored = out.stdout.strip().splitlines()[-1].split()
    return int(rss), int(stored)


@pytest.mark.slow
def test_import_files_streams_large_file_with_flat_memory(transactional_db, tmp_path):
    customers = tmp_path / "customers.csv"
    customers.write_text("external_id\n" + "".join(f"C{i}\n" for i in range(1000)))

    def interactions(n):
        path = tmp_path / f"i{n}.csv"
        with open(path, "w") as f:
            f.write("customer_external_id,type,occurred_at,amount,external_id,notes\n")
            for i in range(n):
                f.write(f"C{i % 1000},purchase,2024-01-{1 + i % 28:02d}T10:00:00,{i % 97}.50,N{n}-{i},"
                        f"{'x' * 40}\n")
        return path

    database = tmp_path / "rss.sqlite3"
    small, _ = _import_rss_kb(interactions(20_000), customers, database)
    large, stored = _import_rss_kb(interactions(200_000), customers, database)

    assert stored == 220_000
    # Ten times the rows, (almost) the same memory: the file is streamed in batches.
    assert large - small < 40_000, (small, large)
    assert large < 500_000  # the bound: < 500 MB whatever the file size


def test_import_files_keeps_customers_last_purchase_up_to_date(base_files, write_csv):
    import_files(base_files)
    assert Customer.objects.get(external_id="C1").last_purchase_at.isoformat() == "2024-02-01T10:00:00+00:00"
    assert Customer.objects.get(external_id="C2").last_purchase_at is None  # a call is not a purchase
    later = write_csv("later.csv", INTERACTION_HEADER, [
        ["C2", "purchase", "2024-05-05T08:00:00", "P1", "1", "12.50", "O9", "I9", "web", ""]])

    import_files({"interactions": later})

    assert Customer.objects.get(external_id="C2").last_purchase_at.isoformat() == "2024-05-05T08:00:00+00:00"
