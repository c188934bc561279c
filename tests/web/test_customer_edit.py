"""Creating and editing a customer in the pages: who may edit whom, the owner rule, errors, links."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import ROLE_SALES_REP, Customer


def edit_url(customer):
    return reverse("customer_edit", args=[customer.pk])


def profile(customer, **changes):
    """The form data of a customer's stored profile, with some fields changed."""
    data = {"external_id": customer.external_id, "name": customer.name, "email": customer.email,
            "phone": customer.phone, "company": customer.company, "country": customer.country,
            "city": customer.city, "signup_date": customer.signup_date.isoformat() if customer.signup_date else "",
            "owner": customer.owner_id or ""}
    if customer.no_profiling:
        data["no_profiling"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def stored(customer):
    return Customer.objects.values().get(pk=customer.pk)


# --- who may open and save the edit page ------------------------------------------------------------

def test_customer_edit_anonymous_redirects_to_login(client, world):
    response = client.get(edit_url(world.ada))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_customer_edit_anonymous_post_changes_nothing(client, world):
    before = stored(world.ada)
    response = client.post(edit_url(world.ada), profile(world.ada, name="Hacked"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert stored(world.ada) == before


def test_customer_edit_rep_sees_own_customer_prefilled(rep_client, world):
    response = rep_client.get(edit_url(world.ada))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'value="Ada Lovelace"' in html and 'value="ada@example.com"' in html and 'value="C-ADA"' in html


def test_customer_edit_rep_saves_own_customer(rep_client, world):
    response = rep_client.post(edit_url(world.ada), profile(world.ada, name="Ada King", city="London",
                                                            no_profiling="on"))
    assert response.status_code == 302 and response.url == reverse("customer_detail", args=[world.ada.pk])
    world.ada.refresh_from_db()
    assert (world.ada.name, world.ada.city, world.ada.no_profiling, world.ada.owner_id) == (
        "Ada King", "London", True, world.rep.pk)


def test_customer_edit_unchecked_no_profiling_turns_it_off(rep_client, world):
    Customer.objects.filter(pk=world.ada.pk).update(no_profiling=True)
    data = profile(world.ada)
    data.pop("no_profiling", None)
    rep_client.post(edit_url(world.ada), data)
    assert stored(world.ada)["no_profiling"] is False


def test_customer_edit_rep_takes_unassigned_customer(rep_client, world):
    response = rep_client.post(edit_url(world.una), profile(world.una, owner=world.rep.pk))
    assert response.status_code == 302
    assert stored(world.una)["owner_id"] == world.rep.pk


def test_customer_edit_rep_may_unassign_own_customer(rep_client, world):
    rep_client.post(edit_url(world.bob), profile(world.bob, owner=""))
    assert stored(world.bob)["owner_id"] is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_customer_edit_other_reps_customer_is_404(rep_client, world, method):
    before = stored(world.zed)
    response = getattr(rep_client, method)(edit_url(world.zed), profile(world.zed, name="Mine now"))
    assert response.status_code == 404
    assert stored(world.zed) == before


def test_customer_edit_rep_cannot_give_customer_to_another_rep(rep_client, world):
    before = stored(world.ada)
    response = rep_client.post(edit_url(world.ada), profile(world.ada, name="Changed", owner=world.other_rep.pk))
    assert response.status_code == 200
    assert response.context["form"].errors["owner"] == [
        "You can keep this customer yourself or leave it unassigned; only a manager can give it to another rep."]
    assert stored(world.ada) == before


def test_customer_edit_rep_owner_choices_are_self_and_unassigned(rep_client, world):
    form = rep_client.get(edit_url(world.una)).context["form"]
    assert [label for _value, label in form.fields["owner"].choices] == ["Unassigned", "rep1"]


@pytest.mark.parametrize("role", ["manager_client", "admin_client_"])
def test_customer_edit_managers_reassign_any_customer(request, world, role):
    client = request.getfixturevalue(role)
    response = client.post(edit_url(world.zed), profile(world.zed, owner=world.rep.pk, company="Open Co"))
    assert response.status_code == 302
    row = stored(world.zed)
    assert (row["owner_id"], row["company"]) == (world.rep.pk, "Open Co")


def test_customer_edit_manager_owner_choices_are_every_active_staff_user(manager_client, world, make_user):
    make_user("nobody")  # no CRM role: cannot own accounts
    make_user("gone", ROLE_SALES_REP, is_active=False)
    form = manager_client.get(edit_url(world.zed)).context["form"]
    assert [label for _value, label in form.fields["owner"].choices] == ["Unassigned", "boss", "rep1", "rep2"]


def test_customer_edit_keeps_a_former_reps_customer_saveable(manager_client, world, make_user):
    former = make_user("former")  # owned accounts, then lost the role
    Customer.objects.filter(pk=world.una.pk).update(owner=former)
    world.una.refresh_from_db()
    response = manager_client.post(edit_url(world.una), profile(world.una, city="Paris"))
    assert response.status_code == 302
    assert (stored(world.una)["city"], stored(world.una)["owner_id"]) == ("Paris", former.pk)


# --- validation ------------------------------------------------------------------------------------

def test_customer_edit_invalid_input_is_kept_and_nothing_changes(rep_client, world):
    before = stored(world.ada)
    response = rep_client.post(edit_url(world.ada), profile(world.ada, name="Ada Typo", email="not-an-email",
                                                            external_id=""))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'value="Ada Typo"' in html and 'value="not-an-email"' in html
    assert set(response.context["form"].errors) == {"email", "external_id"}
    assert stored(world.ada) == before


def test_customer_edit_errors_are_announced_next_to_their_field(rep_client, world):
    html = rep_client.post(edit_url(world.ada), profile(world.ada, email="not-an-email")).content.decode()
    assert 'aria-invalid="true"' in html and 'aria-describedby="id_email_error"' in html
    assert '<ul class="errorlist" id="id_email_error"><li>Enter a valid email address.</li></ul>' in html
    assert 'role="alert">Nothing was saved' in html


def test_customer_edit_external_id_of_another_customer_is_refused(rep_client, world):
    before = stored(world.ada)
    response = rep_client.post(edit_url(world.ada), profile(world.ada, external_id="C-ZED", name="Dup"))
    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["form"].errors["external_id"])
    assert 'value="Dup"' in response.content.decode()
    assert stored(world.ada) == before


def test_customer_edit_refused_save_keeps_the_stored_name_as_title(rep_client, world):
    response = rep_client.post(edit_url(world.ada), profile(world.ada, external_id="C-ZED", name="Dup"))
    assert response.context["title"] == "Edit Ada Lovelace"


# --- the page itself --------------------------------------------------------------------------------

def test_customer_edit_fields_are_labelled(rep_client, world):
    html = rep_client.get(edit_url(world.ada)).content.decode()
    for name in ("external_id", "name", "email", "phone", "company", "country", "city", "signup_date", "owner",
                 "no_profiling"):
        assert f'<label for="id_{name}">' in html, name


def test_customer_edit_explains_no_profiling_in_plain_words(rep_client, world):
    html = rep_client.get(edit_url(world.ada)).content.decode()
    assert "no segment, forecast or suggestions" in html and "left out of model training" in html
    assert 'aria-describedby="id_no_profiling_helptext"' in html


def test_customer_edit_form_posts_with_csrf_token(rep_client, world):
    html = rep_client.get(edit_url(world.ada)).content.decode()
    assert 'method="post"' in html and 'name="csrfmiddlewaretoken"' in html


def test_customer_page_links_to_edit(rep_client, world):
    html = rep_client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert f'href="{edit_url(world.ada)}"' in html


def test_customer_list_links_to_new_customer(rep_client, world):
    html = rep_client.get(reverse("customer_list")).content.decode()
    assert f'href="{reverse("customer_create")}">New customer</a>' in html


def test_customer_edit_queries_do_not_grow_with_users(manager_client, world, make_user):
    def count(method, data=None):
        with CaptureQueriesContext(connection) as queries:
            response = getattr(manager_client, method)(edit_url(world.zed), data)
        assert response.status_code in (200, 302)
        return len(queries)

    data = profile(world.zed, city="Rome")
    before = (count("get"), count("post", data))
    for i in range(15):
        make_user(f"extra{i}", ROLE_SALES_REP)
    assert (count("get"), count("post", data)) == before


def test_customer_edit_page_queries_are_bounded(manager_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # session, user, roles, the second factor, the customer, the owner choices,
        # its tags and the tag names offered
        assert manager_client.get(edit_url(world.zed)).status_code == 200


def test_customer_create_page_queries_are_bounded(manager_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):  # session, user, roles, the second factor, the owner choices, tag names
        assert manager_client.get(reverse("customer_create")).status_code == 200


# --- create -------------------------------------------------------------------------------------------

NEW = {"external_id": "C-NEW", "name": "Nora New", "email": "nora@example.com", "country": "DE"}


def test_customer_create_anonymous_redirects_to_login(client, db):
    response = client.post(reverse("customer_create"), NEW)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not Customer.objects.filter(external_id="C-NEW").exists()


def test_customer_create_rep_defaults_owner_to_self(rep_client, rep):
    assert rep_client.get(reverse("customer_create")).context["form"]["owner"].value() == rep.pk


def test_customer_create_rep_creates_own_customer(rep_client, rep):
    response = rep_client.post(reverse("customer_create"), {**NEW, "owner": rep.pk})
    customer = Customer.objects.get(external_id="C-NEW")
    assert response.status_code == 302 and response.url == reverse("customer_detail", args=[customer.pk])
    assert (customer.name, customer.owner_id, customer.no_profiling) == ("Nora New", rep.pk, False)


def test_customer_create_rep_cannot_create_for_another_rep(rep_client, other_rep):
    response = rep_client.post(reverse("customer_create"), {**NEW, "owner": other_rep.pk})
    assert response.status_code == 200 and response.context["form"].errors["owner"]
    assert not Customer.objects.filter(external_id="C-NEW").exists()


def test_customer_create_manager_assigns_a_rep(manager_client, rep):
    response = manager_client.post(reverse("customer_create"), {**NEW, "owner": rep.pk, "no_profiling": "on"})
    assert response.status_code == 302
    customer = Customer.objects.get(external_id="C-NEW")
    assert (customer.owner_id, customer.no_profiling) == (rep.pk, True)


def test_customer_create_duplicate_external_id_keeps_input(rep_client, world):
    response = rep_client.post(reverse("customer_create"), {**NEW, "external_id": "C-ADA"})
    assert response.status_code == 200 and response.context["form"].errors["external_id"]
    assert 'value="Nora New"' in response.content.decode()
    assert Customer.objects.filter(external_id="C-ADA").count() == 1
    assert not Customer.objects.filter(name="Nora New").exists()


def test_customer_create_user_without_role_is_forbidden(client, make_user):
    client.force_login(make_user("visitor"))
    assert client.post(reverse("customer_create"), NEW).status_code == 403
    assert not Customer.objects.exists()
