"""Every page requires login; who may do what, by role, through the real URLs."""
import pytest
from django.urls import reverse

PAGES = ["home", "customer_list", "customer_export", "segment_list", "product_list", "model_list", "import_list"]


@pytest.mark.parametrize("name", PAGES)
def test_page_anonymous_redirects_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_customer_detail_anonymous_redirects_to_login(client, world):
    response = client.get(reverse("customer_detail", args=[world.ada.pk]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_login_page_has_labelled_fields(client, db):
    html = client.get(reverse("login")).content.decode()
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_login_with_demo_password_lands_on_home(client, rep):
    response = client.post(reverse("login"), {"username": "rep1", "password": "pw-rep1-Secret1"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert b"Welcome" in response.content


def test_logout_ends_the_session(rep_client):
    rep_client.post(reverse("logout"))
    assert rep_client.get(reverse("home")).status_code == 302


@pytest.mark.parametrize("name", ["home", "customer_list", "segment_list", "product_list", "model_list"])
@pytest.mark.parametrize("role", ["rep_client", "manager_client", "admin_client_"])
def test_page_renders_for_every_role(request, world, name, role):
    client = request.getfixturevalue(role)
    assert client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", ["import_list"])
def test_manager_pages_forbidden_for_rep(rep_client, name):
    assert rep_client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("role", ["manager_client", "admin_client_"])
def test_import_page_open_to_managers_and_admins(request, db, role):
    client = request.getfixturevalue(role)
    assert client.get(reverse("import_list")).status_code == 200


def test_user_without_role_sees_no_customers(client, make_user, world):
    client.force_login(make_user("nobody"))
    assert client.get(reverse("customer_detail", args=[world.una.pk])).status_code == 404
    assert b"Una Assigned" not in client.get(reverse("customer_list")).content


def test_nav_hides_import_link_from_rep(rep_client, world):
    html = rep_client.get(reverse("home")).content.decode()
    assert reverse("import_list") not in html


def test_nav_shows_import_link_to_manager(manager_client, world):
    assert reverse("import_list") in manager_client.get(reverse("home")).content.decode()
