"""Bad configuration stops the process at start with a message naming the variable."""
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _start(**env):
    full = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=full, capture_output=True,
                          text=True)


@pytest.mark.parametrize(("env", "message"), [
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL='mysql://x@y/z': unsupported scheme"),
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL='http://localhost' must start with redis://"),
    ({"CRM_ENV": "production", "ALLOWED_HOSTS": "crm.example.com"}, "SECRET_KEY must be set in production"),
    ({"IMPORT_BATCH_SIZE": "lots"}, "IMPORT_BATCH_SIZE='lots' is not a whole number"),
    ({"RETRAIN_CRON": "every night"}, "RETRAIN_CRON='every night' is not a cron expression"),
    ({"API_TOKEN_DAYS": "0"}, "API_TOKEN_DAYS='0' must be at least 1"),
    ({"API_TOKEN_DAYS": "400"}, "API_TOKEN_DAYS=400 must not exceed API_TOKEN_MAX_DAYS=365"),
    ({"REQUIRE_2FA_FOR_ALL": "sometimes"}, "REQUIRE_2FA_FOR_ALL='sometimes' is not a boolean"),
    ({"IMPORT_STORAGE": "ftp"}, "IMPORT_STORAGE='ftp' must be 'database' or 's3'"),
    ({"IMPORT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": ""}, "IMPORT_STORAGE='s3' needs AWS_STORAGE_BUCKET_NAME"),
    ({"IMPORT_FILE_RETENTION_DAYS": "0"}, "IMPORT_FILE_RETENTION_DAYS='0' must be at least 1"),
    ({"CRM_CURRENCY": "dollars"}, "CRM_CURRENCY='DOLLARS' is not an ISO 4217 currency code"),
])
def test_settings_bad_value_fails_loudly_naming_the_variable(env, message):
    result = _start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_settings_production_check_deploy_is_clean():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},  # set by browser tests
             "CRM_ENV": "production", "SECRET_KEY": "k" * 20 + "Z9y8X7w6V5u4T3s2R1q0" + "p" * 20,
             "ALLOWED_HOSTS": "crm.example.com"},
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_import_storage_s3_configures_the_object_store_without_connecting():
    full = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    full.update({"IMPORT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "crm-uploads", "AWS_S3_REGION_NAME": "eu-west-1",
                 "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_LOCATION": "/acme/"})
    shown = "from django.core.files.storage import storages; s = storages['imports']; " \
            "print(type(s).__name__, s.bucket_name, s.location, s.region_name, s.endpoint_url, s.file_overwrite)"
    result = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", shown], cwd=ROOT, env=full,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S3Storage", "crm-uploads", "acme", "eu-west-1", "http://127.0.0.1:9", "False"]
