"""Kastle control-plane settings, read from the environment.

Production: set DATABASE_URL, REDIS_URL and SECRET_KEY (and ALLOWED_HOSTS).
Embedded default (nothing set): SQLite in WAL mode under var/, Celery on kombu's
filesystem:// transport under var/, a secret key generated once into var/secret_key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # the repository root


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc


DEBUG = env_bool("DEBUG", False)
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
REDIS_URL = os.environ.get("REDIS_URL", "").strip()

# var/: the embedded database, queue, cache and secret key. KASTLE_VAR_DIR moves it.
VAR_DIR = Path(os.environ.get("KASTLE_VAR_DIR") or BASE_DIR / "var").resolve()
# Where brokers keep their data (provisioning puts hosts/<name>/ under it).
KASTLE_DATA_DIR = Path(os.environ.get("KASTLE_DATA_DIR") or VAR_DIR).resolve()


def _secret_key() -> str:
    value = os.environ.get("SECRET_KEY", "").strip()
    if value:
        return value
    if not DEBUG and (DATABASE_URL or REDIS_URL):
        raise ImproperlyConfigured(
            "The SECRET_KEY environment variable is required when DATABASE_URL or REDIS_URL is set "
            "and DEBUG is off. Set SECRET_KEY to a long random string."
        )
    # Embedded mode: generate once into var/secret_key, reuse after that (race-free across processes).
    path = VAR_DIR / "secret_key"
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value
        import time

        time.sleep(0.01)  # another process created it a moment ago and is still writing
    raise ImproperlyConfigured(f"{path} is empty; delete it to generate a new secret key")


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / ReDoc assets served locally, no CDN
    "django_htmx",
    "controlplane",
    "accounts",
    "clusters",
    "iam",
    "acls",
    "provisioning",
    "topics",
    "consumergroups",
    "transactions",
    "metering",
    "pki",
    "monitoring",
    "schemaregistry",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "controlplane.security.SecurityHeadersMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------
SQLITE_BUSY_TIMEOUT_S = 20
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "kastle.sqlite3",
            "OPTIONS": {
                # web, worker and beat write concurrently: WAL readers never block the writer,
                # IMMEDIATE takes the write lock at BEGIN (no deadlock on upgrade), and writers wait.
                "timeout": SQLITE_BUSY_TIMEOUT_S,
                "transaction_mode": "IMMEDIATE",
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000};"
                ),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (sign-up throttling must count across processes) --------------------------------------
CACHE_KEY_PREFIX = os.environ.get("KASTLE_CACHE_PREFIX", "kastle-cache")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
# The Redis cache shares its database with the Celery queues: never call cache.clear() (FLUSHDB).

# --- auth -----------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LockoutModelBackend",  # log-in lockout and throttling
    "django.contrib.auth.backends.ModelBackend",  # sessions logged in with it explicitly (sign-up)
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
WHITENOISE_USE_FINDERS = True  # `manage.py up` serves static files without a collectstatic step

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# --- web hardening  -------------------------------------------------------------
# KASTLE_HTTPS=true when the portal is served over HTTPS (directly or behind a TLS proxy that sets
# X-Forwarded-Proto, see KASTLE_TRUST_X_FORWARDED_PROTO): secure cookies, HSTS, HTTPS redirects.
KASTLE_HTTPS = env_bool("KASTLE_HTTPS", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = env_bool("KASTLE_SECURE_COOKIES", KASTLE_HTTPS)
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("KASTLE_SESSION_AGE_SECONDS", 12 * 3600)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if KASTLE_HTTPS:
    SECURE_SSL_REDIRECT = env_bool("KASTLE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
    SECURE_HSTS_SECONDS = env_int("KASTLE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("KASTLE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = False
if env_bool("KASTLE_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content-Security-Policy (controlplane.security.SecurityHeadersMiddleware): same-origin only.
KASTLE_CSP = os.environ.get("KASTLE_CSP") or (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Error pages and reports never show passwords, secrets or tokens (POST fields included).
DEFAULT_EXCEPTION_REPORTER_FILTER = "controlplane.security.ExceptionReporterFilter"
# Log-in throttling and lockout (accounts.lockout): per account and per client address.
KASTLE_LOGIN_MAX_FAILURES = env_int("KASTLE_LOGIN_MAX_FAILURES", 5)  # per account, then locked
KASTLE_LOGIN_LOCKOUT_SECONDS = env_int("KASTLE_LOGIN_LOCKOUT_SECONDS", 900)
KASTLE_LOGIN_IP_MAX_FAILURES = env_int("KASTLE_LOGIN_IP_MAX_FAILURES", 30)  # per address and window

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "controlplane.api.schema.KastleAutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Kastle API",
    "DESCRIPTION": (
        "Self-hosted, multi-tenant Kafka as a service. Authenticate with `Authorization: Bearer <token>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ClusterStatusEnum": "clusters.models.ClusterStatus",
        "RoleEnum": "accounts.models.Role",
        "ChannelKindEnum": "monitoring.models.ChannelKind",
        "RuleKindEnum": "monitoring.models.RuleKind",
    },
}

# --- Kastle ---------------------------------------------------------------------------------------
KASTLE_SIGNUP_OPEN = env_bool("KASTLE_SIGNUP_OPEN", True)
KASTLE_SIGNUP_RATE = os.environ.get("KASTLE_SIGNUP_RATE", "20/hour")
KASTLE_TOKEN_RATE = os.environ.get("KASTLE_TOKEN_RATE", "60/minute")
KASTLE_TRUST_X_FORWARDED_FOR = env_bool("KASTLE_TRUST_X_FORWARDED_FOR", False)
KASTLE_HOST_NAME = os.environ.get("KASTLE_HOST_NAME", "local")
KASTLE_HOST_ADDRESS = os.environ.get("KASTLE_HOST_ADDRESS", "127.0.0.1")
# Dotted paths of callables run by `manage.py up` after its children stopped (e.g. stop local brokers).
KASTLE_UP_SHUTDOWN_HOOKS: list[str] = ["provisioning.services.local_brokers_stop"]

# --- Celery ---------------------------------------------------------------------------------------
CELERY_DEFAULT_QUEUE = "kastle"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
else:
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _control_dir = VAR_DIR / "celery" / "control"
    for _d in (_queue_dir, _processed_dir, _control_dir):
        _d.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = CELERY_DEFAULT_QUEUE
# Every task's queue, by name (Celery 5.7 deprecates the per-task `queue` attribute). Host-bound
# work is sent with an explicit queue=f"host.{name}".
CELERY_TASK_ROUTES = {
    "provisioning.cluster_provision": {"queue": CELERY_DEFAULT_QUEUE},
    "provisioning.cluster_deprovision": {"queue": CELERY_DEFAULT_QUEUE},
    "provisioning.reconcile": {"queue": CELERY_DEFAULT_QUEUE},
    "provisioning.cluster_restart_step": {"queue": CELERY_DEFAULT_QUEUE},
    "provisioning.cluster_scale_step": {"queue": CELERY_DEFAULT_QUEUE},
    # metering (platform/metering/tasks.py); metering.host_collect goes to `host.<name>`
    "metering.collect": {"queue": CELERY_DEFAULT_QUEUE},
    "metering.close_invoices": {"queue": CELERY_DEFAULT_QUEUE},
    "metering.prune_samples": {"queue": CELERY_DEFAULT_QUEUE},
    # ACLs (platform/acls/tasks.py)
    "acls.cluster_sync": {"queue": CELERY_DEFAULT_QUEUE},
    "acls.reconcile": {"queue": CELERY_DEFAULT_QUEUE},
    # alerts (platform/monitoring/tasks.py)
    "monitoring.evaluate_alerts": {"queue": CELERY_DEFAULT_QUEUE},
    "monitoring.deliver_notification": {"queue": CELERY_DEFAULT_QUEUE},
    "monitoring.prune_notifications": {"queue": CELERY_DEFAULT_QUEUE},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
KASTLE_RECONCILE_INTERVAL = float(os.environ.get("KASTLE_RECONCILE_INTERVAL") or 3.0)
CELERY_BEAT_SCHEDULE: dict = {
    # Desired state (PostgreSQL) -> machines: restart crashed brokers, finish stuck clusters, remove orphans.
    "provisioning-reconcile": {
        "task": "provisioning.reconcile",
        "schedule": KASTLE_RECONCILE_INTERVAL,
        "options": {"expires": KASTLE_RECONCILE_INTERVAL * 2},
    },
}
# --- metering (platform/metering/conf.py documents its settings) ---
KASTLE_METERING_INTERVAL_SECONDS = float(os.environ.get("KASTLE_METERING_INTERVAL_SECONDS") or 60.0)
CELERY_BEAT_SCHEDULE.update(
    {
        # Scrape every RUNNING broker (through its host's queue), evaluate spend caps.
        "metering-collect": {
            "task": "metering.collect",
            "schedule": KASTLE_METERING_INTERVAL_SECONDS,
            "options": {"expires": KASTLE_METERING_INTERVAL_SECONDS * 2},
        },
        # Invoice the months that ended.
        "metering-close-invoices": {"task": "metering.close_invoices", "schedule": 3600.0},
        "metering-prune-samples": {"task": "metering.prune_samples", "schedule": 600.0},
    }
)
# --- ACLs: repair the brokers' ACLs of live keys and drop those of dead keys ---
KASTLE_ACL_RECONCILE_INTERVAL = float(os.environ.get("KASTLE_ACL_RECONCILE_INTERVAL") or 30.0)
CELERY_BEAT_SCHEDULE["acls-reconcile"] = {
    "task": "acls.reconcile",
    "schedule": KASTLE_ACL_RECONCILE_INTERVAL,
    "options": {"expires": KASTLE_ACL_RECONCILE_INTERVAL * 2},
}
# --- alerts (platform/monitoring/conf.py documents their settings) ---
KASTLE_ALERT_INTERVAL_SECONDS = max(float(os.environ.get("KASTLE_ALERT_INTERVAL_SECONDS") or 30.0), 0.5)
CELERY_BEAT_SCHEDULE["monitoring-evaluate-alerts"] = {
    "task": "monitoring.evaluate_alerts",
    "schedule": KASTLE_ALERT_INTERVAL_SECONDS,
    "options": {"expires": KASTLE_ALERT_INTERVAL_SECONDS * 2},
}
CELERY_BEAT_SCHEDULE["monitoring-prune-notifications"] = {
    "task": "monitoring.prune_notifications",
    "schedule": 3600.0,
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- e-mail (alert notifications): SMTP when EMAIL_HOST is set, else files under var/mail ---
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
if os.environ.get("EMAIL_BACKEND"):
    EMAIL_BACKEND = os.environ["EMAIL_BACKEND"]
elif EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT") or 587)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "true").lower() in ("1", "true", "yes", "on")
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL") or "kastle@localhost"

# --- logging --------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("KASTLE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
