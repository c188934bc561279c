"""Every admin changelist, add and change page renders for a superuser; the import page works."""
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from crm.imports.importer import import_files
from crm.models import Customer, ImportRun, Interaction, Product


@pytest.fixture
def data(admin_user, write_csv):
    customers = write_csv("customers.csv", ["external_id", "name", "owner"], [["C1", "Ada", "root"]])
    products = write_csv("products.csv", ["sku", "name", "price"], [["P1", "Beans", "9.99"]])
    bad = write_csv("interactions.csv", ["customer_external_id", "type", "occurred_at", "product_sku"],
                    [["C1", "purchase", "2024-01-01", "P1"], ["C9", "purchase", "2024-01-01", "P1"]])
    return import_files({"customers": customers, "products": products, "interactions": bad})


def test_admin_every_registered_model_changelist_and_change_page_render(client, admin_user, data):
    client.force_login(admin_user)
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        obj = model_admin.get_queryset(None if False else _request(admin_user)).first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert client.get(change).status_code == 200, change
        if model_admin.has_add_permission(_request(admin_user)):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert client.get(add).status_code == 200, add


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_admin_customer_page_shows_recent_interactions(client, admin_user, data):
    client.force_login(admin_user)
    customer = Customer.objects.get(external_id="C1")
    Interaction.objects.create(external_id="N1", customer=customer, type="note", notes="Call back in May",
                               occurred_at=datetime(2024, 2, 1, tzinfo=UTC))

    page = client.get(reverse("admin:crm_customer_change", args=[customer.pk])).content.decode()

    assert "Recent interactions" in page and "Call back in May" in page


def test_admin_search_filters_and_autocomplete(client, admin_user, data):
    client.force_login(admin_user)
    assert b"Ada" in client.get(reverse("admin:crm_customer_changelist") + "?q=Ada").content
    assert client.get(reverse("admin:crm_interaction_changelist") + "?type__exact=purchase").status_code == 200
    response = client.get(reverse("admin:autocomplete") + "?app_label=crm&model_name=interaction&field_name=customer"
                          "&term=Ad")
    assert response.status_code == 200 and response.json()["results"][0]["text"] == "Ada"


def test_admin_upload_imports_files_and_offers_rejects(client, admin_user, db, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    client.force_login(admin_user)
    Customer.objects.create(external_id="C1")
    Product.objects.create(sku="P1", name="Beans")
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("my interactions.csv", b"customer_external_id,type,occurred_at\n"
                                b"C1,call,2024-01-01\nC1,party,2024-01-02\n", content_type="text/csv")

    response = client.post(reverse("admin:crm_importrun_upload"), {"interactions": upload}, follow=True)

    assert response.status_code == 200
    run = ImportRun.objects.get()
    result = run.files.get()
    assert (run.status, result.filename, result.created, result.rejected) == ("partial", "my interactions.csv", 1, 1)
    assert b"download 1 rejected rows" in response.content
    assert b"Import #%d completed, 1 of 2 rows rejected" % run.pk in response.content
    rejects = client.get(reverse("admin:crm_importfile_rejects", args=[result.pk]))
    assert b"type 'party' is not one of" in b"".join(rejects.streaming_content)


def test_admin_upload_requires_a_file(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:crm_importrun_upload"), {})
    assert b"Choose at least one file." in response.content


def test_admin_upload_dry_run_writes_nothing(client, admin_user, db, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    client.force_login(admin_user)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("shop.csv", "external_id;name\nS1;Zoë\n".encode("cp1252"), content_type="text/csv")

    response = client.post(reverse("admin:crm_importrun_upload"), {"customers": upload, "dry_run": "on"}, follow=True)

    run = ImportRun.objects.get()
    assert run.dry_run and not Customer.objects.exists()
    assert b"Dry run #%d dry run: all 1 row would load" % run.pk in response.content
    assert run.files.get().encoding == "Windows-1252"


def test_admin_customer_page_lists_and_adds_tags(client, admin_user, data):
    from crm.models import CustomerTag, Tag

    client.force_login(admin_user)
    customer = Customer.objects.get(external_id="C1")
    vip = Tag.objects.create(name="VIP")
    CustomerTag.objects.create(customer=customer, tag=vip, added_by=admin_user)

    page = client.get(reverse("admin:crm_customer_change", args=[customer.pk])).content.decode()
    tags = client.get(reverse("admin:crm_tag_changelist")).content.decode()

    assert "Tags" in page and "VIP" in page
    assert "VIP" in tags and '<td class="field-customer_count">1</td>' in tags


def _sign_in_with_code(client, username, password):
    """The real sign-in of a demo user: password, then the current code of their demo authenticator."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.post("/login/", {"username": username, "password": password})
    device = TOTPDevice.objects.get(user__username=username)
    client.post("/account/otp/verify/", {"code": f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}"})


def test_admin_demo_manager_is_refused_and_demo_admin_let_in(client, db):
    from io import StringIO

    from django.core.management import call_command

    Customer.objects.create(external_id="C-1", name="Existing")  # no demo data seeded
    call_command("bootstrap_demo", stdout=StringIO())

    _sign_in_with_code(client, "manager", "manager-demo-2026")
    manager_home, manager_admin = client.get("/"), client.get("/admin/")
    client.post("/logout/")
    _sign_in_with_code(client, "admin", "admin-demo-2026")
    admin_admin = client.get("/admin/")

    assert manager_home.status_code == 200 and b'href="/admin/"' not in manager_home.content  # no Admin link
    assert manager_admin.status_code == 302 and manager_admin.url.startswith("/admin/login/")
    assert admin_admin.status_code == 200
