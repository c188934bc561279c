"""The first load (crm.imports.bulk): a file into an empty table is written straight into it in
one transaction, with the same rows, counts and rejected-rows report as the batch-by-batch
merge, every index and constraint back afterwards, and nothing left of a load that fails."""
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from crm.imports.importer import import_files
from crm.models import Customer, ImportRun, Interaction, Product
from tests.conftest import read_rejects
from tests.test_import import CUSTOMER_HEADER, INTERACTION_HEADER, PRODUCT_HEADER, counts

TABLES = ("crm_customer", "crm_product", "crm_interaction")


@pytest.fixture
def messy_files(write_csv, rep):
    """Three files a real export could give: duplicates, unknown keys, bad values, odd formats,
    spread over several batches of 4."""
    customers = write_csv("customers.csv", CUSTOMER_HEADER, [
        ["C1", "Ada", "ada@example.com", "Engines", "GB", "2024-01-05", "rep1", "gold"],
        ["C2", "Grace", "grace@example.com", "", "US", "", "", ""],
        ["C1", "Ada again", "", "", "", "", "", ""],  # duplicate key
        ["C3", "Linus", "not an email", "", "FI", "2024-13-01", "nobody", "x"],  # warnings: email, date, owner
        ["", "No key", "", "", "", "", "", ""],  # rejected: no external_id
        ["C4", "=HYPERLINK(1)", "", "", "", "", "rep1", ""],
        *[[f"C{n}", f"Customer {n}", "", "", "", "", "", ""] for n in range(5, 12)],
    ])
    products = write_csv("products.csv", PRODUCT_HEADER, [
        ["P1", "Beans", "Coffee", "12.50", "", "a;b", "true"],
        ["P2", "Filters", "Coffee", "3", "", "", "false"],
        ["P1", "Beans again", "", "", "", "", ""],  # duplicate sku
        ["P3", "Mug", "", "-1", "", "", ""],  # rejected or warned: negative price
        ["P4", "Kettle", "Kit", "", "", "", "yes"],
    ])
    rows = [
        ["C1", "purchase", "2024-02-01T10:00:00", "P1", "2", "25.00", "O1", "I1", "web", ""],
        ["C1", "purchase", "2024-02-01", "P2", "", "3.00", "O1", "I2", "web", ""],
        ["C2", "call", "2024-02-03T09:30+02:00", "", "", "", "", "I3", "phone", "Asked, \"politely\""],
        ["C9", "purchase", "2024-02-04", "P1", "1", "12.50", "", "I4", "", ""],
        ["NOPE", "purchase", "2024-02-05", "P1", "1", "12.50", "", "I5", "", ""],  # unknown customer
        ["C2", "purchase", "2024-02-06", "P404", "1", "1.00", "", "I6", "", ""],  # unknown product: warning
        ["C1", "purchase", "2024-02-01T10:00:00", "P1", "2", "25.00", "O1", "I1", "web", ""],  # duplicate I1
        ["C3", "teleport", "2024-02-07", "", "", "", "", "I7", "", ""],  # bad type
        ["C3", "view", "2024-02-08", "P2", "", "", "", "", "", ""],  # no external_id: keyed by content
        ["C3", "view", "2024-02-08", "P2", "", "", "", "", "", ""],  # the same content again
        ["C4", "refund", "2024-02-09", "P1", "1", "5", "", "I8", "", ""],
        *[[f"C{5 + n % 7}", "email", f"2024-03-{1 + n % 28:02d}", "", "", "", "", f"E{n}", "mail", ""]
          for n in range(30)],
    ]
    interactions = write_csv("interactions.csv", INTERACTION_HEADER, rows)
    return {"customers": customers, "products": products, "interactions": interactions}


def _stored():
    """Every stored row as plain values, keyed by its natural key (ids and timestamps left out)."""
    customers = {c.external_id: (c.name, c.email, c.company, c.country, c.signup_date,
                                 c.owner.username if c.owner else None, c.attributes) for c in Customer.objects.all()}
    products = {p.sku: (p.name, p.category, p.price, p.tags, p.active) for p in Product.objects.all()}
    interactions = {i.external_id: (i.customer.external_id, i.type, i.occurred_at,
                                    i.product.sku if i.product else None, i.quantity, i.amount, i.order_ref,
                                    i.channel, i.notes, i.created_by_id)
                    for i in Interaction.objects.select_related("customer", "product")}
    return customers, products, interactions


def _reports(run):
    return {f.kind: read_rejects(f.rejected_path) if f.rejected_path else [] for f in run.files.all()}


def _catalogue():
    """The three tables' indexes and constraints, as the database describes them."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
                           "ORDER BY 1, 2", [list(TABLES)])
            indexes = cursor.fetchall()
            cursor.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
                           "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) ORDER BY 1, 2", [list(TABLES)])
            return indexes, cursor.fetchall()
        cursor.execute("SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
                       "(%s, %s, %s) ORDER BY 1, 2", list(TABLES))
        return cursor.fetchall(), []


def _wipe():
    Interaction.objects.all().delete()
    Customer.objects.all().delete()
    Product.objects.all().delete()


def test_first_load_gives_the_rows_counts_and_report_of_the_batch_by_batch_merge(messy_files, settings, tmp_path):
    before = _catalogue()
    with CaptureQueriesContext(connection) as bulk_queries:
        bulk = import_files(messy_files, batch_size=4, rejected_dir=tmp_path / "bulk")
    bulk_rows, bulk_counts, bulk_reports = _stored(), counts(bulk), _reports(bulk)
    assert sum("DROP INDEX" in q["sql"] for q in bulk_queries.captured_queries) >= 3  # one table each at least
    assert _catalogue() == before

    _wipe()
    settings.IMPORT_BULK_LOAD = False
    with CaptureQueriesContext(connection) as merge_queries:
        merged = import_files(messy_files, batch_size=4, rejected_dir=tmp_path / "merged")

    assert not any("DROP INDEX" in q["sql"] for q in merge_queries.captured_queries)
    assert _stored() == bulk_rows
    assert counts(merged) == bulk_counts
    assert _reports(merged) == bulk_reports
    # The planted problems are all there: the comparison is not of two empty imports.
    assert bulk_counts["interactions"][1] == 37 and bulk_counts["interactions"][4] == 4
    reasons = " ".join(r["reasons"] if "reasons" in r else str(r) for r in bulk_reports["interactions"])
    assert "unknown customer 'NOPE'" in reasons and "duplicate external_id 'I1'" in reasons
    assert "same content" in reasons and "unknown product 'P404'" in reasons
    assert bulk_rows[2]["I6"][3] is None  # loaded without the unknown product
    assert bulk_rows[0]["C3"][5] is None  # unknown owner skipped


def test_first_load_leaves_every_index_and_constraint_enforced(messy_files):
    before = _catalogue()
    import_files(messy_files, batch_size=4)

    assert _catalogue() == before  # PostgreSQL: every foreign key VALIDATEd (convalidated true)
    first = Interaction.objects.get(external_id="I1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Interaction.objects.create(customer=first.customer, type="view", occurred_at=first.occurred_at,
                                   external_id="I1")
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO crm_interaction (customer_id, type, occurred_at, quantity, order_ref, "
                           "channel, notes, attributes, external_id, created_at) VALUES "
                           "(999999, 'view', %s, 1, '', '', '', '{}', 'orphan', %s)",
                           [first.occurred_at, first.occurred_at])
            if connection.vendor == "sqlite":
                connection.check_constraints(table_names=["crm_interaction"])
            else:  # the key is DEFERRABLE INITIALLY DEFERRED: check it now, not at the test's end
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_into_a_table_that_holds_rows_the_import_merges_batch_by_batch(messy_files):
    import_files({"customers": messy_files["customers"]})
    with CaptureQueriesContext(connection) as queries:
        run = import_files({"customers": messy_files["customers"]}, batch_size=4)

    assert not any("DROP INDEX" in q["sql"] for q in queries.captured_queries)
    assert counts(run)["customers"][1:3] == (0, 0)  # nothing new, nothing changed


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


def test_a_first_load_that_fails_part_way_leaves_the_table_as_before_and_a_rerun_completes_it(
        messy_files, write_csv, transactional_db, tmp_path):
    import_files({"customers": messy_files["customers"]})
    rows = [["C1", "view", f"2024-01-{1 + i % 28:02d}", "", "", "", "", f"V{i:03d}", "", ""] for i in range(25)]
    rows.append(["NOPE", "view", "2024-01-01", "", "", "", "", "V999", "", ""])
    path = write_csv("views.csv", INTERACTION_HEADER, rows)
    before = _catalogue()
    _install_failing_trigger("V013")  # in the fourth batch of 4

    with pytest.raises(Exception, match="injected failure"):
        import_files({"interactions": path}, batch_size=4, rejected_dir=tmp_path)

    assert not Interaction.objects.exists()  # no batch of the first load stays
    failed = ImportRun.objects.order_by("-id").first()
    assert failed.status == ImportRun.Status.FAILED
    assert "rolled back whole" in failed.error and "re-run" in failed.error
    assert not (tmp_path / "views.rejected.csv").exists()  # nor the report of rows it never loaded
    _drop_failing_trigger()
    assert _catalogue() == before

    rerun = import_files({"interactions": path}, batch_size=4, rejected_dir=tmp_path)

    assert counts(rerun)["interactions"] == (26, 25, 0, 0, 1)
    assert set(Interaction.objects.values_list("external_id", flat=True)) == {f"V{i:03d}" for i in range(25)}
    assert _catalogue() == before
