"""The second factor (issue 18), through the real URLs: who must have one, the OTP step after the
password, enrolment with recovery codes, disabling, the admin, the API token, throttling, audit."""
import base64
import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from crm.models import ROLE_MANAGER, ROLE_SALES_REP, ApiToken, AuditEvent, Customer
from ml.models import TrainingRun
from tests.web.conftest import K, make_run

VERIFY, ENROL = reverse("account_otp_verify"), reverse("account_otp_enrol")
DISABLE, RECOVERY = reverse("account_otp_disable"), reverse("account_otp_recovery_codes")
TOKEN = "/api/v1/auth/token/"


def code_for(device, steps_ahead=0):
    """The device's current code (or the next step's: a code is accepted once, so a second use in
    one test takes the next one, which the device's tolerance of one step accepts)."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps_ahead):06d}"


def password_login(client, user, **extra):
    response = client.post(reverse("login"), {"username": user.username, "password": f"pw-{user.username}-Secret1",
                                               **extra})
    assert response.status_code == 302, "the password step failed"
    return response


@pytest.fixture
def bare_manager(make_user):
    return make_user("mgr", ROLE_MANAGER, authenticator=False, is_staff=True)


@pytest.fixture
def unpublished_run(db):
    make_run(K.SEGMENTATION)
    return make_run(K.SEGMENTATION, published=False)


def enrol(client, user):
    """Enrol through the pages; returns (device, recovery codes)."""
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    html = client.post(ENROL, {"code": code_for(device)}).content.decode()
    return TOTPDevice.objects.get(pk=device.pk), re.findall(r"<li><code>(\w+)</code></li>", html)


# --- who must ---------------------------------------------------------------------------------------

def test_gate_manager_without_a_second_factor_cannot_publish_and_is_sent_to_enrolment(client, bare_manager,
                                                                                       unpublished_run):
    client.force_login(bare_manager)
    publish = reverse("model_publish", args=[unpublished_run.pk])

    response = client.post(publish)

    assert response.status_code == 302 and response.url == f"{ENROL}?next={publish.replace('/', '%2F')}"
    unpublished_run.refresh_from_db()
    assert not unpublished_run.is_published
    assert client.get(reverse("model_list")).url.startswith(ENROL)


def test_gate_manager_with_a_verified_device_publishes(client, manager, unpublished_run):
    password_login(client, manager)
    assert client.get(reverse("model_list")).url.startswith(VERIFY)  # the password alone is not enough
    client.post(VERIFY, {"code": code_for(manager.otp_device)})

    response = client.post(reverse("model_publish", args=[unpublished_run.pk]))

    assert response.status_code == 302 and response.url.startswith(reverse("model_list"))
    unpublished_run.refresh_from_db()
    assert unpublished_run.is_published


def test_gate_rep_without_a_device_works_normally(client, rep):
    password_login(client, rep)

    assert client.get(reverse("home")).status_code == 200
    assert client.get(reverse("customer_list")).status_code == 200


def test_gate_require_for_all_sends_the_rep_to_enrolment(client, rep, settings):
    settings.REQUIRE_2FA_FOR_ALL = True
    password_login(client, rep)

    response = client.get(reverse("customer_list"))

    assert response.status_code == 302 and response.url.startswith(ENROL)


def test_gate_rep_with_a_device_must_pass_it(client, make_user):
    rep = make_user("carol", ROLE_SALES_REP, authenticator=True)
    password_login(client, rep)

    assert client.get(reverse("home")).url.startswith(VERIFY)


def test_gate_leaves_open_only_the_otp_pages_login_and_logout(client, bare_manager):
    client.force_login(bare_manager)

    assert client.get(ENROL).status_code == 200
    assert client.get(reverse("login")).status_code == 200
    assert client.get(reverse("account")).url.startswith(ENROL)
    assert client.get("/admin/").url.startswith(ENROL)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).url.startswith(reverse("login"))  # signed out


def test_gate_api_session_gets_403_in_the_api_format(bare_manager):
    api = APIClient()
    api.force_login(bare_manager)

    response = api.get("/api/v1/customers/")

    assert response.status_code == 403 and response.json()["error"]["code"] == "second_factor_required"


# --- the OTP step after the password ----------------------------------------------------------------

def test_verify_returns_to_the_page_first_asked_for(client, manager):
    password_login(client, manager, next=reverse("model_list"))
    response = client.get(reverse("model_list"))
    assert response.url == f"{VERIFY}?next=%2Fmodels%2F"

    response = client.post(VERIFY, {"code": code_for(manager.otp_device), "next": "/models/"})

    assert response.status_code == 302 and response.url == "/models/"
    assert client.get(reverse("model_list")).status_code == 200


def test_verify_refuses_a_wrong_code_records_it_and_throttles_the_next_try(client, manager, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60  # a wait of 60 s after one wrong code, not 1 s: no race with a slow run
    password_login(client, manager)

    wrong = client.post(VERIFY, {"code": "000000" if code_for(manager.otp_device) != "000000" else "111111"})
    right_too_soon = client.post(VERIFY, {"code": code_for(manager.otp_device)})

    assert "That code is not right" in wrong.content.decode()
    assert "Too many wrong codes: try again in 60 s." in right_too_soon.content.decode()
    assert client.get(reverse("home")).url.startswith(VERIFY)
    failures = AuditEvent.objects.filter(action=AuditEvent.Action.OTP_FAILURE, actor=manager)
    assert [e.summary for e in failures.order_by("id")] == [
        "sign-in: wrong code (1 in a row)", "sign-in: refused by the throttle after 1 wrong codes"]

    TOTPDevice.objects.filter(pk=manager.otp_device.pk).update(  # the throttle's wait has passed
        throttling_failure_timestamp=timezone.now() - timedelta(seconds=61))
    client.post(VERIFY, {"code": code_for(manager.otp_device)})
    assert client.get(reverse("home")).status_code == 200


def test_verify_empty_code_is_refused_without_counting(client, manager):
    password_login(client, manager)

    response = client.post(VERIFY, {"code": "  "})

    assert "Enter the code" in response.content.decode()
    assert TOTPDevice.objects.get(pk=manager.otp_device.pk).throttling_failure_count == 0
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.OTP_FAILURE).exists()


@pytest.mark.parametrize("next_url", ["https://evil.example/", VERIFY, ENROL + "?next=/"])
def test_verify_next_off_site_or_to_an_otp_page_goes_home(client, manager, next_url):
    password_login(client, manager)

    response = client.post(VERIFY, {"code": code_for(manager.otp_device), "next": next_url})

    assert response.url == reverse("home")


# --- enrolment, recovery codes, disabling -----------------------------------------------------------

def test_enrol_shows_the_secret_as_qr_code_and_text_and_keeps_it_on_reload(client, bare_manager):
    client.force_login(bare_manager)

    first, again = client.get(ENROL).content.decode(), client.get(ENROL).content.decode()

    device = TOTPDevice.objects.get(user=bare_manager)
    assert not device.confirmed
    assert 'src="data:image/svg+xml;base64,' in first
    secret = re.search(r'<code id="otp-secret">([A-Z2-7 ]+)</code>', first).group(1).replace(" ", "")
    assert base64.b32decode(secret) == device.bin_key
    assert secret in again.replace(" ", "")


def test_enrol_wrong_code_enrols_nothing(client, bare_manager):
    client.force_login(bare_manager)
    client.get(ENROL)

    response = client.post(ENROL, {"code": "12345x"})

    assert "That code is not right" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=bare_manager, confirmed=True).exists()
    assert not StaticDevice.objects.filter(user=bare_manager).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OTP_FAILURE, actor=bare_manager).count() == 1


def test_enrol_confirms_shows_ten_recovery_codes_once_and_verifies_the_session(client, bare_manager,
                                                                               unpublished_run):
    client.force_login(bare_manager)

    device, codes = enrol(client, bare_manager)

    assert device.confirmed and len(codes) == 10 and len(set(codes)) == 10
    assert sorted(StaticToken.objects.filter(device__user=bare_manager).values_list("token", flat=True)) == sorted(codes)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OTP_ENROL, actor=bare_manager).count() == 1
    account = client.get(reverse("account")).content.decode()
    assert "10 recovery codes left" in account and not any(c in account for c in codes)
    client.post(reverse("model_publish", args=[unpublished_run.pk]))
    unpublished_run.refresh_from_db()
    assert unpublished_run.is_published


def test_enrol_when_enrolled_goes_back_to_the_account(manager_client):
    response = manager_client.get(ENROL)

    assert response.status_code == 302 and response.url == reverse("account")


def test_recovery_code_works_once(client, bare_manager):
    client.force_login(bare_manager)
    _, codes = enrol(client, bare_manager)
    client.post(reverse("logout"))

    password_login(client, bare_manager)
    client.post(VERIFY, {"code": codes[0].upper()})  # case and spaces do not matter
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    password_login(client, bare_manager)
    again = client.post(VERIFY, {"code": codes[0]})

    assert "That code is not right, or it was already used" in again.content.decode()
    assert client.get(reverse("home")).url.startswith(VERIFY)
    assert StaticToken.objects.filter(device__user=bare_manager).count() == 9
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OTP_RECOVERY_USED).get().summary == (
        "sign-in: recovery code used; 9 left")


def test_new_recovery_codes_need_a_fresh_code_and_replace_the_old_ones(client, bare_manager):
    client.force_login(bare_manager)
    device, old = enrol(client, bare_manager)

    refused = client.post(RECOVERY, {"code": ""}, follow=True)
    html = client.post(RECOVERY, {"code": code_for(device, steps_ahead=1)}).content.decode()
    new = re.findall(r"<li><code>(\w+)</code></li>", html)

    assert "No new recovery codes: Enter the code" in refused.content.decode()
    assert len(new) == 10 and not set(new) & set(old)
    assert sorted(StaticToken.objects.filter(device__user=bare_manager).values_list("token", flat=True)) == sorted(new)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OTP_RECOVERY_CODES).count() == 1


def test_disable_needs_a_fresh_code_then_a_manager_must_enrol_again(client, bare_manager):
    client.force_login(bare_manager)
    device, codes = enrol(client, bare_manager)

    kept = client.post(DISABLE, {"code": code_for(device, steps_ahead=-3)}, follow=True)  # 90 s old: stale
    assert "The second factor is still on" in kept.content.decode() and TOTPDevice.objects.filter(user=bare_manager)
    client.post(DISABLE, {"code": codes[3]})

    assert not TOTPDevice.objects.filter(user=bare_manager).exists()
    assert not StaticDevice.objects.filter(user=bare_manager).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OTP_DISABLE, actor=bare_manager).count() == 1
    assert client.get(reverse("home")).url.startswith(ENROL)


def test_disable_by_a_rep_leaves_them_working_without(client, rep):
    client.force_login(rep)
    device, _ = enrol(client, rep)

    client.post(DISABLE, {"code": code_for(device, steps_ahead=1)})

    assert not TOTPDevice.objects.filter(user=rep).exists()
    assert client.get(reverse("home")).status_code == 200


def test_account_page_offers_enrolment_to_a_rep_without_a_device(rep_client):
    html = rep_client.get(reverse("account")).content.decode()

    assert "Optional for your role" in html and f'href="{ENROL}"' in html


# --- the admin ---------------------------------------------------------------------------------------

def test_admin_refuses_an_unverified_staff_session(client, make_user):
    staff = make_user("staffrep", ROLE_SALES_REP, authenticator=False, is_staff=True)  # the gate lets a rep pass
    client.force_login(staff)

    response = client.get("/admin/")

    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_admin_lets_the_same_staff_in_once_verified(client, make_user):
    staff = make_user("staffrep", ROLE_SALES_REP, authenticator=True, is_staff=True)
    password_login(client, staff)
    assert client.get("/admin/").url.startswith(VERIFY)

    client.post(VERIFY, {"code": code_for(staff.otp_device), "next": "/admin/"})

    assert client.get("/admin/").status_code == 200


def test_admin_login_with_the_password_leads_to_the_otp_step(client, admin_user):
    response = client.post(reverse("admin:login") + "?next=/admin/",
                           {"username": "root", "password": "pw-root-Secret1", "next": "/admin/"}, follow=True)

    assert response.redirect_chain[-1][0].startswith(VERIFY)


# --- the API token endpoint --------------------------------------------------------------------------

def test_token_refuses_a_user_with_a_device_without_a_correct_code(manager):
    api = APIClient()
    credentials = {"username": "boss", "password": "pw-boss-Secret1"}

    missing = api.post(TOKEN, credentials)
    wrong = api.post(TOKEN, {**credentials, "otp": code_for(manager.otp_device, steps_ahead=-3)})  # 90 s old

    for response in (missing, wrong):
        assert response.status_code == 400 and "otp" in response.json()["error"]["fields"]
        assert "token" not in response.json()
    assert "send the current code" in missing.json()["error"]["fields"]["otp"][0]
    assert not ApiToken.objects.filter(user=manager).exists()


def test_token_accepts_a_current_code(manager):
    response = APIClient().post(TOKEN, {"username": "boss", "password": "pw-boss-Secret1",
                                        "otp": code_for(manager.otp_device)})

    assert response.status_code == 201 and response.json()["token"]


def test_token_accepts_a_recovery_code_once(client, bare_manager):
    client.force_login(bare_manager)
    _, codes = enrol(client, bare_manager)
    api, credentials = APIClient(), {"username": "mgr", "password": "pw-mgr-Secret1", "otp": codes[0]}

    first, again = api.post(TOKEN, credentials), api.post(TOKEN, credentials)

    assert first.status_code == 201
    assert again.status_code == 400 and "otp" in again.json()["error"]["fields"]


def test_token_refuses_a_manager_without_a_device(bare_manager):
    response = APIClient().post(TOKEN, {"username": "mgr", "password": "pw-mgr-Secret1"})

    assert response.status_code == 400 and "set up an authenticator" in response.json()["error"]["fields"]["otp"][0]


def test_token_rep_without_a_device_needs_no_code(rep):
    response = APIClient().post(TOKEN, {"username": "rep1", "password": "pw-rep1-Secret1"})

    assert response.status_code == 201


# --- the demo users ---------------------------------------------------------------------------------

def test_bootstrap_demo_gives_admin_and_manager_an_authenticator_and_prints_its_secret(db):
    Customer.objects.create(external_id="C-1", name="Existing")  # no demo data seeded
    out = io.StringIO()

    call_command("bootstrap_demo", stdout=out)
    call_command("bootstrap_demo", stdout=io.StringIO())  # again: the same device, not a second one

    for username in ("admin", "manager"):
        device = TOTPDevice.objects.get(user__username=username)
        assert device.confirmed and base64.b32encode(device.bin_key).decode() in out.getvalue()
    assert not TOTPDevice.objects.filter(user__username="alice").exists()
    assert TrainingRun.objects.count() == 0
