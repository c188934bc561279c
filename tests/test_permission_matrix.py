"""Who gets what at every URL: each pattern of web.urls (walked recursively: web pages, API,
admin) for each role, on a customer (product, run, import) owned by the first sales rep.

Roles: anonymous, the sales rep who owns the customer (`owner`), another sales rep (`other`),
a manager and an admin. Pages are fetched with GET; POST-only actions are posted empty or with
an object they cannot change, and must leave every table as it was. Every response must also
carry the security headers.

ADDING A URL: add one line to RULES with its name (the walk fails naming any URL without one).
"""
import re
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from crm.models import Customer, FollowUp, ImportFile, ImportRun, Interaction, Product, WebhookEndpoint
from ml.models import Segment, Suggestion, TrainingRun

ROLES = ("anonymous", "owner", "other", "manager", "admin")
LOGIN = "-> /login/"  # a redirect to a URL starting with /login/
ADMIN_LOGIN = "-> /admin/login/"
STAFF = frozenset({200, 302, 403})  # admin pages for staff: Django's model permissions decide (see admin rule)


@dataclass(frozen=True)
class Rule:
    """Expected status (or redirect) per role, in ROLES order; `obj` names the object whose ids fill
    the URL; `path` overrides the URL built from the pattern."""

    expect: tuple
    method: str = "GET"
    obj: str = ""
    path: str = ""
    data: dict = field(default_factory=dict)
    mutates: bool = False  # the action is allowed to change rows for the roles it succeeds for


def rule(anonymous, owner, other, manager, admin, **kw):
    return Rule((anonymous, owner, other, manager, admin), **kw)


def page(**kw):  # every role signed in
    return rule(LOGIN, 200, 200, 200, 200, **kw)


def owned_page(obj="customer", **kw):  # another rep's customer does not exist for them
    return rule(LOGIN, 200, 404, 200, 200, obj=obj, **kw)


def manager_page(**kw):
    return rule(LOGIN, 403, 403, 200, 200, **kw)


def api(**kw):
    return rule(401, 200, 200, 200, 200, **kw)


def owned_api(obj="customer", **kw):
    return rule(401, 200, 404, 200, 200, obj=obj, **kw)


def manager_api(**kw):
    return rule(401, 403, 403, 200, 200, **kw)


def public(**kw):
    return rule(200, 200, 200, 200, 200, **kw)


RULES = {
    # --- web pages
    "login": public(),
    "logout": rule(405, 405, 405, 405, 405),  # log-out is a POST only
    "home": page(),
    "customer_list": page(),
    "customer_export": page(),
    "customer_detail": owned_page(),
    "customer_log": rule(LOGIN, 302, 404, 302, 302, method="POST", obj="customer"),  # empty form: an error message
    "customer_feedback": rule(LOGIN, 302, 404, 302, 302, method="POST", obj="customer"),
    "segment_list": page(),
    "product_list": page(),
    "product_detail": page(obj="product"),
    "model_list": page(),
    "model_retrain": rule(LOGIN, 403, 403, 302, 302, method="POST"),  # empty form: "Unknown model kind."
    "run_status": page(obj="run"),
    "model_publish": rule(LOGIN, 403, 403, 302, 302, method="POST", obj="failed_run"),  # refused: not succeeded
    "import_list": manager_page(),
    "import_detail": manager_page(obj="import"),
    "import_status": manager_page(obj="import"),
    "import_rejected": rule(LOGIN, 403, 403, 404, 404, obj="import"),  # no rejected rows in this import
    "import_confirm": rule(LOGIN, 403, 403, 404, 404, method="POST", obj="import"),  # only a dry run's files
    "customer_create": page(),
    "customer_edit": owned_page(),
    "account": page(),
    "account_token_create": rule(LOGIN, 405, 405, 405, 405),  # POST only (tested in tests/web/test_account.py)
    "account_token_revoke": rule(LOGIN, 405, 405, 405, 405, path="/account/tokens/1/revoke/"),
    # The second factor (tests/web/test_second_factor.py): these users' sessions passed theirs or need none.
    "account_otp_verify": rule(LOGIN, "-> /", "-> /", "-> /", "-> /"),  # nothing to verify: on to the page
    "account_otp_enrol": rule(LOGIN, 200, 200, "-> /account/", "-> /account/"),  # enrolled already: to the account
    "account_otp_recovery_codes": rule(LOGIN, 405, 405, 405, 405),  # POST only, with a fresh code
    "account_otp_disable": rule(LOGIN, 405, 405, 405, 405),
    "customer_personal_data": rule(LOGIN, 403, 403, 200, 200, obj="customer"),  # managers answer access requests
    "customer_erase": rule(LOGIN, 403, 403, 200, 200, obj="customer"),  # GET: the confirmation page
    # Correcting the timeline: the owner rep did not log this interaction (an import did), so 403;
    # another rep's customer's interaction does not exist for them. An empty POST deletes nothing.
    "interaction_edit": rule(LOGIN, 403, 404, 200, 200, obj="interaction"),
    "interaction_delete": rule(LOGIN, 403, 404, 302, 302, method="POST", obj="interaction"),
    "customer_bulk": rule(LOGIN, 403, 403, 302, 302, method="POST"),  # managers only; nothing chosen: back to the list
    # Follow-ups: the owner rep's own; another rep's does not exist for them. Roles run in order, so the
    # owner completes (or cancels) it first and the manager and admin are then told it is closed.
    "followup_list": page(),
    "followup_new": rule(LOGIN, 302, 404, 302, 302, method="POST", obj="customer"),  # empty form: a message
    "followup_complete": rule(LOGIN, 302, 404, 302, 302, method="POST", obj="followup", mutates=True),
    "followup_cancel": rule(LOGIN, 302, 404, 302, 302, method="POST", obj="followup", mutates=True),
    "followup_reassign": rule(LOGIN, 403, 403, 302, 302, method="POST", obj="followup"),  # managers only (role first)
    "data_quality": manager_page(),
    "data_quality_merge": rule(LOGIN, 403, 403, 302, 302),  # no customers chosen: back to the page
    # --- API
    "api-customer-list": api(),
    "api-customer-detail": owned_api(),
    "api-customer-recommendations": owned_api(),
    "api-customer-by-external-id": owned_api(),
    "api-customer-by-external-id-recommendations": owned_api(),
    "api-interaction-list": api(),
    "api-interaction-detail": owned_api(obj="interaction"),
    "api-interaction-by-external-id": owned_api(obj="interaction"),
    "api-customer-bulk": rule(401, 400, 400, 400, 400, method="POST"),  # empty body: invalid, nothing stored
    "api-interaction-bulk": rule(401, 400, 400, 400, 400, method="POST"),  # empty body: invalid, nothing stored
    "api-product-list": api(),
    "api-product-detail": api(obj="product"),
    "api-product-similar": api(obj="product"),
    "api-product-prospects": api(obj="product"),
    "api-segment-list": api(),
    "api-segment-detail": api(obj="segment"),
    "api-training-run-list": api(),
    "api-training-run-detail": api(obj="run"),
    "api-training-run-publish": rule(401, 403, 403, 409, 409, method="POST", obj="failed_run"),
    "api-import-list": manager_api(),
    "api-import-detail": manager_api(obj="import"),
    "api-import-import-checked": rule(401, 403, 403, 400, 400, method="POST", obj="import"),  # not a dry run
    "api-customer-personal-data": manager_api(obj="customer"),
    "api-customer-erase": rule(401, 403, 403, 200, 200, method="POST", obj="customer", mutates=True),
    "api-customer-merge": rule(401, 403, 403, 400, 400, method="POST", obj="customer"),  # empty body: invalid
    "api-feedback": rule(401, 400, 400, 400, 400, method="POST"),
    "api-follow-up-list": api(),
    "api-follow-up-detail": owned_api(obj="followup"),
    "api-follow-up-complete": rule(401, 200, 404, 409, 409, method="POST", obj="followup", mutates=True),
    # Webhooks: managers and admins only. A ping queues a delivery (sent by a worker, not here).
    "api-webhook-list": manager_api(),
    "api-webhook-detail": manager_api(obj="webhook"),
    "api-webhook-deliveries": manager_api(obj="webhook"),
    "api-webhook-ping": rule(401, 403, 403, 202, 202, method="POST", obj="webhook", mutates=True),
    "api-token": rule(401, 405, 405, 405, 405),  # GET is not a method here; POST is tested in test_security
    "api-schema": public(),  # the API's description is public; its data is not
    "api-docs": public(),
    "api-redoc": public(),
    "favicon": rule("-> /static/", "-> /static/", "-> /static/", "-> /static/", "-> /static/"),  # the SVG icon
    "api-not-found": rule(404, 404, 404, 404, 404, path="/api/v1/no-such-endpoint/"),
    # --- admin: every admin:* URL follows ADMIN_RULE unless named here
    "admin:login": rule(200, 200, 200, 200, 302),  # signed-in staff (admins only) are sent on to the index
    "admin:logout": rule("-> /admin/", "-> /admin/", "-> /admin/", "-> /admin/", 405),  # a POST only, for staff
    "admin:index": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:view_on_site": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404, obj="customer"),  # no public page
    "admin:crm_importfile_rejects": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404),  # none rejected
    "admin:<unnamed admin/(?P<url>.*)$>": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404),  # any other path
    "admin:auth_user_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),  # managers manage no users
    "admin:auth_user_change": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:crm_apitoken_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),  # managers: no token rights
    "admin:crm_customer_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:crm_customer_delete": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:crm_importrun_upload": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:ml_trainingrun_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    "admin:axes_accessattempt_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    # The admin lists devices but never shows a secret (OTP_ADMIN_HIDE_SENSITIVE_DATA)
    "admin:otp_totp_totpdevice_config": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403,
                                             path="/admin/otp_totp/totpdevice/0/config/"),
    "admin:otp_totp_totpdevice_qrcode": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403,
                                             path="/admin/otp_totp/totpdevice/0/qrcode/"),
    "admin:crm_auditevent_changelist": rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),  # admins only
}
# Sales reps and managers never reach an admin page (only admins are staff, README "Pages"); for
# staff, Django's model permissions (the role groups of crm/migrations/0002_roles.py) decide, so
# any of 200/302/403 but never a 404 or an error.
ADMIN_RULE = rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, STAFF, obj="admin")


def _walk(resolver, prefix="", namespace=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            yield (f"{namespace}{pattern.name}" if pattern.name else f"{namespace}<unnamed {route}>"), route


URLS = sorted(set(_walk(get_resolver())))


def rule_for(key: str) -> Rule | None:
    if key in RULES:
        return RULES[key]
    if key.startswith("admin:"):
        return ADMIN_RULE
    return None


def test_matrix_every_url_has_a_rule():
    missing = [f"{key} ({route})" for key, route in URLS if rule_for(key) is None]

    assert not missing, "No permission rule for: " + ", ".join(missing) + ". Add a line to RULES."


def test_matrix_every_rule_names_a_url():
    names = {key for key, _ in URLS}

    assert not set(RULES) - names, f"Rules for URLs that no longer exist: {sorted(set(RULES) - names)}"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Four users per URL: a fast hasher keeps the matrix quick (no test here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class World:
    """A customer of the owner rep with an interaction, a product, runs, a segment and an import."""


@pytest.fixture
def world(rep, other_rep, manager, admin_user):
    w = World()
    w.users = {"anonymous": None, "owner": rep, "other": other_rep, "manager": manager, "admin": admin_user}
    w.customer = Customer.objects.create(external_id="C-OWN", name="Owned", owner=rep)
    w.product = Product.objects.create(sku="P-1", name="Widget")
    w.interaction = Interaction.objects.create(external_id="I-OWN", customer=w.customer, type="note",
                                               occurred_at=timezone.now())
    now = timezone.now()
    w.run = TrainingRun.objects.create(kind="segmentation", status="succeeded", is_published=True, published_at=now,
                                       started_at=now, finished_at=now)
    w.failed_run = TrainingRun.objects.create(kind="segmentation", status="failed", error="boom")
    w.segment = Segment.objects.create(run=w.run, key=0, name="All", size=1)
    Suggestion.objects.create(run=w.run, customer=w.customer, kind="recommendation", rank=1, product=w.product,
                              score=0.5, reason="because")
    w.followup = FollowUp.objects.create(customer=w.customer, owner=rep, created_by=rep, type="call",
                                         due_at=now, note="call back")
    w.webhook = WebhookEndpoint.objects.create(url="https://hooks.example.com/crm", events=["run.published"])
    w.import_run = ImportRun.objects.create(user=manager, source="upload")
    ImportFile.objects.create(run=w.import_run, kind="customers", filename="customers.csv")
    return w


def _values(world, rule_: Rule, key: str, route: str) -> dict:
    obj = {"customer": world.customer, "interaction": world.interaction, "product": world.product,
           "run": world.run, "failed_run": world.failed_run, "segment": world.segment,
           "import": world.import_run, "followup": world.followup, "webhook": world.webhook}.get(rule_.obj)
    values = {"kind": "customers", "url": "no-such-page/", "app_label": "crm"}
    if obj is not None:
        values.update(pk=obj.pk, external_id=getattr(obj, "external_id", ""), sku=getattr(obj, "sku", ""),
                      object_id=obj.pk, content_type_id=ContentType.objects.get_for_model(obj).pk)
    if rule_.obj == "admin" or (key.startswith("admin:") and not rule_.obj):  # the model's first row, if any
        model = _admin_model(key, route)
        first = model.objects.order_by("pk").first() if model else None
        values.update(object_id=first.pk if first else 0, id=world.users["admin"].pk,
                      file_id=ImportFile.objects.get().pk)
    return values


def _admin_model(key, route):
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    try:
        return apps.get_model(match.group(1), match.group(2)) if match else None
    except LookupError:
        return None


def _fill(route: str, values: dict) -> str:
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m.group(1)]), route)  # regex groups first
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), path)
    return "/" + path.replace("^", "").replace("$", "")


def _row_counts():
    return {model._meta.label: model.objects.count()
            for label in ("crm", "ml") for model in apps.get_app_config(label).get_models()}


def _outcome(response) -> str:
    return f"{response.status_code} -> {response.url}" if response.status_code == 302 else str(response.status_code)


def _matches(expected, response) -> bool:
    """`expected` is a status code, a set of them, or "-> /path" for a redirect to a URL starting with it."""
    if isinstance(expected, str):
        return response.status_code == 302 and response.url.startswith(expected[3:])
    if isinstance(expected, int):
        return response.status_code == expected
    return response.status_code in expected


HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


@pytest.mark.parametrize(("key", "route"), URLS, ids=[key for key, _ in URLS])
def test_matrix_role_gets_expected_status(world, key, route):
    rule_ = rule_for(key)
    if rule_ is None:
        pytest.fail(f"No permission rule for URL {key!r} ({route}): add a line to RULES in {__file__}")
    path = rule_.path or _fill(route, _values(world, rule_, key, route))
    wrong = []
    for role, expected in zip(ROLES, rule_.expect):
        cache.clear()  # the API's throttle counts
        client = Client()
        if world.users[role] is not None:
            client.force_login(world.users[role])
        before = _row_counts() if rule_.method == "POST" else None
        response = client.generic(rule_.method, path, data=b"", content_type="application/json") \
            if rule_.method == "POST" and key.startswith("api-") else getattr(client, rule_.method.lower())(path)
        if not _matches(expected, response):
            wrong.append(f"{role}: expected {expected}, got {_outcome(response)}")
        changes_allowed = rule_.mutates and isinstance(expected, int) and (200 <= expected < 300 or expected == 302)
        if before is not None and not changes_allowed and _row_counts() != before:
            wrong.append(f"{role}: the POST changed stored rows")
        missing = {h: v for h, v in HEADERS.items() if response.get(h) != v}
        if missing or "Content-Security-Policy" not in response:
            wrong.append(f"{role}: security headers missing ({sorted(missing) or 'Content-Security-Policy'})")
    assert not wrong, f"{rule_.method} {path}: " + "; ".join(wrong)
