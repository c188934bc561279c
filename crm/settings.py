"""The CRM's settings: one module, driven by environment variables.

Every variable is read and checked here; a bad value stops the process at start with a
message that names the variable. See README.md ("Configuration") for the list.
"""
import importlib.util
import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from crm import broker as embedded_broker

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state for development: SQLite file, embedded broker folders, generated secret, uploads.
VAR_DIR = Path(os.environ.get("CRM_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(name, default):
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true/false, 1/0, yes/no or on/off")


def _env_int(name, default, minimum=None):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def _env_list(name, default):
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _env_networks(name):
    """Comma-separated IP addresses or networks (10.0.0.0/8), as ip_network objects."""
    networks = []
    for item in _env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network (CIDR such as "
                                       "10.0.0.0/8)") from None
    return networks


def _env_cron(name, default):
    raw = os.environ.get(name, default).strip()
    if raw.lower() in {"", "off", "never"}:
        return None
    parts = raw.split()
    if len(parts) != 5:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a cron expression of 5 fields (minute hour day month weekday), or 'off'"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a valid cron expression: {exc}") from None


CRM_ENV = os.environ.get("CRM_ENV", "development").strip().lower()
if CRM_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"CRM_ENV={CRM_ENV!r} must be 'development' or 'production'")
PRODUCTION = CRM_ENV == "production"

DEBUG = _env_bool("DEBUG", not PRODUCTION)


def _secret_key():
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        if PRODUCTION and len(key) < 50:
            raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long in production")
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set in production (CRM_ENV=production)")
    # Development: a random key kept in an untracked file, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the site's host names in production (comma-separated)")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "crm.apps.CrmAdminConfig",  # django.contrib.admin with a site that wants a verified second factor
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "crm",
    "ml",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the session passed its second factor
    "crm.audit.AuditContextMiddleware",  # the request's IP address for the audit trail
    "django.contrib.messages.middleware.MessageMiddleware",
    # After the OTP middleware: a session that still owes its second factor reaches only the OTP pages.
    "web.middleware.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Before any view-phase hook reads the body (the CSRF check parses the form): an upload
    # request declared longer than its files can be is refused unread.
    "web.middleware.UploadSizeMiddleware",
    # Last: it turns a login refused by the lockout into the lockout page (axes' documented place).
    "axes.middleware.AxesMiddleware",
]

# The lockout backend goes first: it refuses a locked-out username+address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "web.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # |money and {% currency_symbol %} on every page without a {% load %} in each template.
            "builtins": ["crm.templatetags.money"],
        },
    },
]

WSGI_APPLICATION = "crm.wsgi.application"


def _database():
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        raw = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL={raw!r}: unsupported scheme {scheme!r}; use sqlite:///PATH or postgres://USER@HOST:PORT/NAME"
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=_env_int("DB_CONN_MAX_AGE", 60, minimum=0),
                                       conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises plain ValueErrors with terse text
        raise ImproperlyConfigured(f"DATABASE_URL={raw!r} cannot be parsed: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets pages read while a worker writes; IMMEDIATE avoids deadlocking upgrades of
        # read locks; the timeout lets a writer wait for another instead of failing at once.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    else:
        # The API's hottest reads (crm.sql.fetchall) bind on the server: psycopg prepares one
        # after this many runs on a connection, so PostgreSQL plans it once per connection. The
        # ORM's own queries bind on the client and are never prepared. 0 = prepare at once;
        # "off" for PgBouncer in transaction mode older than 1.21.
        threshold = os.environ.get("DB_PREPARE_THRESHOLD", "5").strip().lower()
        config.setdefault("OPTIONS", {})["prepare_threshold"] = (
            None if threshold in {"off", "none", ""} else _env_int("DB_PREPARE_THRESHOLD", 5, minimum=0))
    test_name = os.environ.get("TEST_DATABASE_NAME") or None
    if config["ENGINE"] == "django.db.backends.sqlite3" and test_name is None:
        # A file, not memory: the integration tests' Celery worker process must see the test data.
        test_name = str(VAR_DIR / "test_db.sqlite3")
    config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True


def _env_currency(name, default):
    raw = os.environ.get(name, default).strip().upper()
    if len(raw) != 3 or not raw.isalpha() or not raw.isascii():
        raise ImproperlyConfigured(f"{name}={raw!r} is not an ISO 4217 currency code (three letters such as USD or EUR)")
    return raw


# The one currency of every stored amount (imports, forecasts), as the pages show it: "$1,234.50".
# The API and export_insights keep plain numbers. CRM_CURRENCY_SYMBOL overrides the code's symbol.
CRM_CURRENCY = _env_currency("CRM_CURRENCY", "USD")
CRM_CURRENCY_SYMBOL = os.environ.get("CRM_CURRENCY_SYMBOL", "")


STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Import -------------------------------------------------------------------------------
# Rows written per transaction: large enough for COPY/INSERT ... SELECT to amortise the round
# trips, small enough that a batch stays a few MB and a crash loses at most one batch of work.
IMPORT_BATCH_SIZE = _env_int("IMPORT_BATCH_SIZE", 20000, minimum=1)
# A file into an empty table (a first load) is written straight into it in one transaction, its
# indexes and foreign keys rebuilt after (crm.imports.bulk); off: always merge batch by batch.
IMPORT_BULK_LOAD = _env_bool("IMPORT_BULK_LOAD", True)
IMPORT_MAX_UPLOAD_MB = _env_int("IMPORT_MAX_UPLOAD_MB", 200, minimum=1)
# The limit is enforced while a file streams in: the first handler cuts a file off at
# IMPORT_MAX_UPLOAD_MB before the storing handlers (memory, then a temporary file) get a byte past it.
FILE_UPLOAD_HANDLERS = [
    "crm.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Rows per file (every door): far above a real export, low enough that a runaway file is refused
# up front instead of running for hours.
IMPORT_MAX_ROWS = _env_int("IMPORT_MAX_ROWS", 5_000_000, minimum=1)
RETRAIN_AFTER_IMPORT = _env_bool("RETRAIN_AFTER_IMPORT", True)
# Where uploaded import files and rejected-rows reports live, so any worker and any web server
# reads them (crm.imports.storage): the database (chunks of a few MB) or an S3-compatible object
# store through django-storages. Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY in the environment, an instance role, ...), never from this module.
IMPORT_STORAGE = os.environ.get("IMPORT_STORAGE", "database").strip().lower() or "database"
if IMPORT_STORAGE not in {"database", "s3"}:
    raise ImproperlyConfigured(f"IMPORT_STORAGE={IMPORT_STORAGE!r} must be 'database' or 's3'")
if IMPORT_STORAGE == "s3":
    _bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME", "").strip()
    if not _bucket:
        raise ImproperlyConfigured("IMPORT_STORAGE='s3' needs AWS_STORAGE_BUCKET_NAME (the bucket to keep uploads in)")
    if importlib.util.find_spec("storages") is None or importlib.util.find_spec("boto3") is None:
        raise ImproperlyConfigured("IMPORT_STORAGE='s3' needs django-storages and boto3 installed (requirements.txt)")
    STORAGES["imports"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": _bucket,
        "location": os.environ.get("AWS_LOCATION", "crm-imports").strip().strip("/"),
        "region_name": os.environ.get("AWS_S3_REGION_NAME", "").strip() or None,
        "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL", "").strip() or None,
        "file_overwrite": False, "default_acl": None}}
# Days the files of a finished import (its upload and reports) are kept; beat's sweep deletes older ones.
IMPORT_FILE_RETENTION_DAYS = _env_int("IMPORT_FILE_RETENTION_DAYS", 30, minimum=1)

# --- ML -----------------------------------------------------------------------------------
# A running training run beats every few seconds; one silent this long is taken as dead.
ML_STALE_AFTER_SECONDS = _env_int("ML_STALE_AFTER_SECONDS", 60, minimum=2)
# The lists show a reorder suggestion from this many days before its expected date on (and
# overdue ones), not right after a purchase (ml.insights.reorder_due).
# Buyers per forecast scoring chunk when a worker on a real broker fans the scoring out over the
# workers (ml.scoring); 0: never fan out, the run's own worker scores everyone.
ML_SCORING_CHUNK = _env_int("ML_SCORING_CHUNK", 8000, minimum=0)
# Customers a recommendation run suggests for and writes at a time; when a worker on a real broker
# fans out (ML_SCORING_CHUNK is not 0) and there are more, each chunk is a task of any worker.
ML_SUGGEST_CHUNK = _env_int("ML_SUGGEST_CHUNK", 100_000, minimum=1)
ML_REORDER_DUE_DAYS = _env_int("ML_REORDER_DUE_DAYS", 14, minimum=0)
# A reorder overdue by longer is left out of the due lists (ml.insights.reorder_due_window); 0: never.
ML_REORDER_LAPSED_DAYS = _env_int("ML_REORDER_LAPSED_DAYS", 90, minimum=0)


def _env_share(name, default, maximum):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number (a share such as 0.1)") from None
    if not 0 <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be between 0 and {maximum}")
    return value


# The share of customers whose suggestions are computed but not shown (the control group that
# measures the suggestions' uplift, ml.control); 0 shows everyone's. Half at most: the rest see them.
ML_CONTROL_SHARE = _env_share("ML_CONTROL_SHARE", 0.10, maximum=0.5)

# --- Celery -------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and urlparse(REDIS_URL).scheme not in {"redis", "rediss"}:
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis:// or rediss://")
# Without Redis, the broker is a SQLite file under VAR_DIR (crm.broker: a message is one row
# written in one transaction, so no reader sees half of it).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or REDIS_URL or embedded_broker.url(VAR_DIR)
# The longest task (a full retrain at the largest scale) must finish well inside this limit.
CELERY_TASK_TIME_LIMIT = _env_int("CELERY_TASK_TIME_LIMIT", 2 * 3600, minimum=60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
# Redis redelivers an unacknowledged task after the visibility timeout: keep it above the
# longest task so a slow run is never started twice.
# The socket timeouts bound a publish to a Redis that accepts connections but hangs (the
# workers' blocking reads wait 1 s at a time, well inside them); tests/test_hung_redis.py.
REDIS_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600,
                                  "socket_timeout": 5, "socket_connect_timeout": 3}
if CELERY_BROKER_URL.startswith(embedded_broker.SCHEME + "+"):
    CELERY_BROKER_TRANSPORT_OPTIONS = embedded_broker.transport_options()
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "crm")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True  # run state lives in the database (ml.TrainingRun, crm.ImportRun)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens inside a web request (on commit): when the broker is down the request must
# answer "background work unavailable" within seconds, not hang. A refused connection fails at
# once; an unreachable host costs at most (1 + max_retries) connection timeouts. The run or
# import stays queued in the database and is sent later (see crm.jobs.dispatch_pending).
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
RETRAIN_SCHEDULE = _env_cron("RETRAIN_CRON", "30 2 * * *")
# How often beat sends the sweep of stale imports and runs (the embedded soak sets a few seconds).
SWEEP_EVERY_SECONDS = _env_int("SWEEP_EVERY_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-runs": {"task": "ml.sweep_stale_runs", "schedule": float(SWEEP_EVERY_SECONDS)},
}
# Webhooks (crm.webhooks): the sweep queues due follow-ups' events and sends the deliveries whose
# (re)try time has come, so a retry waits at most this long past its time.
WEBHOOK_SWEEP_SECONDS = _env_int("WEBHOOK_SWEEP_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE["sweep-webhooks"] = {"task": "crm.sweep_webhooks", "schedule": float(WEBHOOK_SWEEP_SECONDS)}
if RETRAIN_SCHEDULE is not None:
    CELERY_BEAT_SCHEDULE["nightly-retrain"] = {"task": "ml.retrain_all", "schedule": RETRAIN_SCHEDULE}

# --- Webhooks (crm.webhooks) ---------------------------------------------------------------
# Attempts per delivery before it is given up (network errors, 5xx, 408 and 429 are retried:
# 1 min, 5 min, 30 min, 2 h, 6 h, then every 12 h after the first).
WEBHOOK_MAX_ATTEMPTS = _env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# Seconds to connect and for each read of the answer: a receiver should answer at once and work later.
WEBHOOK_TIMEOUT_SECONDS = _env_int("WEBHOOK_TIMEOUT_SECONDS", 5, minimum=1)
# Off: a URL whose host is (or resolves to) a loopback, private, link-local or otherwise non-public
# address is refused, so an endpoint cannot make the server probe its own network (SSRF).
WEBHOOK_ALLOW_PRIVATE = _env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# customer.churn_risk fires for a customer whose churn probability in a newly published forecast
# reaches this from below (or who had none in the previous one).
WEBHOOK_CHURN_THRESHOLD = _env_share("WEBHOOK_CHURN_THRESHOLD", 0.7, maximum=1)

# --- Cache (API throttle counts) -------------------------------------------------------------
# Every web worker must see the same counts, or N workers allow N times the rate. With Redis,
# the counts live there (short socket timeouts: a Redis outage costs each request at most
# ~0.25 s before throttling fails open, see web.api.throttling). Without it, a file cache under
# VAR_DIR is shared by the workers of one machine and needs no service and no table, and adds
# no queries to the database the API already loads (a DatabaseCache would add two per request).
CACHE_KEY_PREFIX = os.environ.get("CACHE_KEY_PREFIX", "crm").strip()
if REDIS_URL:
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
    }}
else:
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache"),
        "KEY_PREFIX": CACHE_KEY_PREFIX,
    }}

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes unauthenticated requests 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "web.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["web.api.permissions.HasCrmRole"],
    "DEFAULT_SCHEMA_CLASS": "web.api.schema.CrmAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # JSON bodies only (uploads declare their own parser): one request format to document and test.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "web.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "web.api.exceptions.api_exception_handler",
    # Counted in the shared default cache (CACHES); if it is unreachable, requests pass (logged).
    "DEFAULT_THROTTLE_CLASSES": [
        "web.api.throttling.AnonRateThrottle",
        "web.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": f"{_env_int('API_ANON_RATE_PER_MINUTE', 30, minimum=1)}/min",
        "user": f"{_env_int('API_USER_RATE_PER_MINUTE', 1200, minimum=1)}/min",
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# API tokens (crm.ApiToken): every token expires; its lifetime is asked for at creation, up to the maximum.
API_TOKEN_MAX_DAYS = _env_int("API_TOKEN_MAX_DAYS", 365, minimum=1)
API_TOKEN_DAYS = _env_int("API_TOKEN_DAYS", 90, minimum=1)
if API_TOKEN_DAYS > API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(f"API_TOKEN_DAYS={API_TOKEN_DAYS} must not exceed API_TOKEN_MAX_DAYS={API_TOKEN_MAX_DAYS}")

SPECTACULAR_SETTINGS = {
    "TITLE": "CRM API",
    "DESCRIPTION": (
        "Customers, products, interactions and the insights the CRM's models attach to them.\n\n"
        "Authenticate with a session or `Authorization: Token <key>` (POST /api/v1/auth/token/); a "
        "`read-only` token is refused every unsafe method (403), an expired or revoked one is 401. "
        "Every error has the form `{\"error\": {\"code\", \"message\", \"fields\"}}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "InteractionTypeEnum": "crm.models.INTERACTION_TYPES",
    },
}

# --- Production hardening -----------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_AGE = _env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)

# Content-Security-Policy (django-csp): only this site's own files run, load or receive data.
# Scripts are static files (static/crm/site.js, the vendored Chart.js); data for charts sits in
# <script type="application/json"> blocks, which are never executed. An inline script or style
# needs the request's nonce (`{{ request.csp_nonce }}`): only the API docs pages use one.
# Inline style attributes are refused too; set styles from site.js (CSSOM is not inline).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],  # the admin's and Swagger UI's icons are data: URIs in their CSS
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Client address behind reverse proxies (crm.clientip) ------------------------------------
# Off by default: X-Forwarded-For is then never read (a client can send any). On, the client is
# the address the outermost trusted proxy appended, counted from the right.
TRUSTED_PROXY_COUNT = _env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)


TRUSTED_PROXIES = _env_networks("TRUSTED_PROXIES")

# --- Login lockout (django-axes) ----------------------------------------------------------
# Failed logins are counted per username *and* client address together: guessing one
# account's password from one place is stopped, while nobody can lock a colleague out from
# elsewhere by typing their username wrongly. Web login, admin login and POST
# /api/v1/auth/token/ all go through django.contrib.auth.authenticate, so one counter guards all three.
AXES_FAILURE_LIMIT = _env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_COOLOFF_MINUTES = _env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The address is crm.clientip's (REMOTE_ADDR, or past trusted proxies), the audit trail's too.
AXES_CLIENT_IP_CALLABLE = "crm.clientip.client_ip"
AXES_RESET_ON_SUCCESS = True  # a person who mistypes now and then is never locked for old typos
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_COOLOFF_MESSAGE = (f"Too many failed log-ins: signing in to this account from your address is blocked "
                        f"for {LOGIN_COOLOFF_MINUTES} minutes after the last attempt.")

# --- Second factor (django-otp) --------------------------------------------------------------
# Admins and managers must confirm a TOTP device (crm.second_factor.required); this makes every
# signed-in user do so. There is no setting to turn the requirement off.
REQUIRE_2FA_FOR_ALL = _env_bool("REQUIRE_2FA_FOR_ALL", False)
OTP_TOTP_ISSUER = "CRM"  # the account's label in authenticator apps
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin lists devices but never shows their secrets

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # axes logs every successful log-in at INFO; failures and lockouts (WARNING) are what matter.
    "loggers": {"django.db.backends": {"level": "INFO"},
                "axes": {"level": "WARNING"}},
}
