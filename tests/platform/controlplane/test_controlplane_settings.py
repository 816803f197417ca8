"""Settings from the environment, checked in fresh interpreters (settings are read at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, django
from django.conf import settings
django.setup()
from django.db import connection
from controlplane.celery import app
with connection.cursor() as c:
    c.execute("PRAGMA journal_mode")
    journal = c.fetchone()[0]
    c.execute("PRAGMA busy_timeout")
    busy = c.fetchone()[0]
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "mode": db["OPTIONS"].get("transaction_mode"),
    "journal": journal, "busy_timeout_ms": busy,
    "broker": app.conf.broker_url, "transport": app.conf.broker_transport_options,
    "cache": settings.CACHES["default"]["BACKEND"], "secret": settings.SECRET_KEY,
    "data_dir": str(settings.KASTLE_DATA_DIR), "debug": settings.DEBUG,
    "signup_open": settings.KASTLE_SIGNUP_OPEN,
}))
"""


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
    }
    base.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        KASTLE_VAR_DIR=str(tmp_path / "var"),
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=base, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_embedded_defaults_with_nothing_set(tmp_path):
    first = run_probe(tmp_path)
    assert first.returncode == 0, first.stderr
    conf = json.loads(first.stdout)
    assert conf["engine"] == "django.db.backends.sqlite3"
    assert conf["name"] == str(tmp_path / "var" / "kastle.sqlite3")
    assert conf["mode"] == "IMMEDIATE" and conf["journal"] == "wal" and conf["busy_timeout_ms"] >= 5000
    assert conf["broker"] == "filesystem://"
    assert conf["transport"]["data_folder_in"] == conf["transport"]["data_folder_out"]
    assert conf["transport"]["data_folder_in"].startswith(str(tmp_path / "var"))
    assert conf["cache"].endswith("FileBasedCache")
    assert conf["data_dir"] == str(tmp_path / "var")
    assert conf["debug"] is False and conf["signup_open"] is True
    # The secret key is generated once into var/secret_key and reused after that.
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.read_text().strip() == conf["secret"] and len(conf["secret"]) >= 50
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = json.loads(run_probe(tmp_path).stdout)
    assert again["secret"] == conf["secret"]


def test_refuses_to_start_without_secret_key_when_services_are_configured(tmp_path):
    for env in (
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/kastle"},
        {"REDIS_URL": "redis://127.0.0.1:6379/0"},
    ):
        result = run_probe(tmp_path, **env)
        assert result.returncode != 0
        assert "SECRET_KEY" in result.stderr and "ImproperlyConfigured" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()
    # DEBUG on, or a SECRET_KEY given, lets it start.
    ok = run_probe(
        tmp_path, REDIS_URL="redis://127.0.0.1:6379/0", DEBUG="true", KASTLE_DATA_DIR=str(tmp_path / "d")
    )
    assert ok.returncode == 0, ok.stderr
    conf = json.loads(ok.stdout)
    assert conf["broker"] == "redis://127.0.0.1:6379/0" and conf["cache"].endswith("RedisCache")
    assert conf["data_dir"] == str(tmp_path / "d") and conf["debug"] is True


def test_bad_boolean_is_named(tmp_path):
    result = run_probe(tmp_path, KASTLE_SIGNUP_OPEN="maybe")
    assert result.returncode != 0 and "KASTLE_SIGNUP_OPEN" in result.stderr
