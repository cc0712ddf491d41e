"""Settings, read from the environment only (optionally through a .env file).

One ``env`` object reads everything; .env.example documents every variable.
The app's own settings live in the BITRIX24_ namespace.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# While bin/demo runs, its settings are in var/demo/running.env (removed when it stops), so
# `python manage.py ...` in another shell reaches the demo's database and sandbox as the demo's own
# processes do: the environment first, then that file, then .env. Only for this settings module:
# the tests' settings import it and must never see a running demo.
if os.environ.get("DJANGO_SETTINGS_MODULE", __name__) == __name__:
    environ.Env.read_env(BASE_DIR / "var" / "demo" / "running.env", overwrite=False)
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Django core -----------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG=1")
    SECRET_KEY = "insecure-development-key-only-for-DEBUG"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "portals",
    "events",
]
# The sandbox Bitrix24 (`manage.py sandbox`) is for development, the demo and the tests: never
# installed in production unless asked for explicitly.
if env.bool("BITRIX24_SANDBOX", default=DEBUG):
    INSTALLED_APPS.append("sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bitrix_app.urls"
WSGI_APPLICATION = "bitrix_app.wsgi.application"
ASGI_APPLICATION = "bitrix_app.asgi.application"

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
        },
    },
]

# SQLite on a fresh machine; DATABASE_URL=postgres://... when it grows.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Behind a TLS-terminating proxy the request reaches Django as http; this header (set by the proxy,
# which must overwrite what the client sent) says it came over https. Empty: no proxy in front.
_PROXY_SSL_HEADER = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO")
SECURE_PROXY_SSL_HEADER = (_PROXY_SSL_HEADER, "https") if _PROXY_SSL_HEADER else None
# Production answers only https: http is redirected and browsers are told (HSTS) never to use it
# again. Never in DEBUG, whatever the environment says: the demo and the tests serve plain http.
SECURE_SSL_REDIRECT = not DEBUG and env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Paths (regexes, no leading slash) still served over http, e.g. a load balancer's health check.
SECURE_REDIRECT_EXEMPT = env.list("DJANGO_SECURE_REDIRECT_EXEMPT", default=[])
SECURE_HSTS_SECONDS = 0 if DEBUG else env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_MAX_BODY_BYTES", default=2_621_440)
# Error reports (the DEBUG page, error e-mails) never show Bitrix24 tokens, DEBUG or not.
DEFAULT_EXCEPTION_REPORTER_FILTER = "bitrix_app.error_reports.SecretsReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "bitrix_app.error_reports.SecretsExceptionReporter"

# --- Redis, cache, Celery --------------------------------------------------------------------------
# Without REDIS_URL the app runs in single-process mode: tasks execute inline (after commit),
# the rate limiter is in-process, and `manage.py run_periodic` stands in for celery beat.
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="b24:")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://localhost/")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="bitrix24")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX} if REDIS_URL else {}
CELERY_BEAT_SCHEDULE: dict = {}

# --- Bitrix24 --------------------------------------------------------------------------------------
# The marketplace app's registration; local apps keep their own credentials on the Portal.
BITRIX24_CLIENT_ID = env.str("BITRIX24_CLIENT_ID", default="")
BITRIX24_CLIENT_SECRET = env.str("BITRIX24_CLIENT_SECRET", default="")
# The public base URL Bitrix24 calls (handlers, redirect URI), e.g. https://app.example.com
BITRIX24_APP_URL = env.str("BITRIX24_APP_URL", default="http://127.0.0.1:8000")
# OAuth servers the app will ever send client_secret or a refresh token to.
BITRIX24_OAUTH_SERVERS = env.list(
    "BITRIX24_OAUTH_SERVERS", default=["https://oauth.bitrix.info/", "https://oauth.bitrix24.tech/"]
)
# Fernet keys for tokens at rest, newest first (rotate: prepend a key, run `manage.py rotate_token_keys`).
BITRIX24_TOKEN_KEYS = env.list("BITRIX24_TOKEN_KEYS", default=[])
# Extra CA bundle to trust (the sandbox portal's generated CA in development and tests).
BITRIX24_CA_BUNDLE = env.str("BITRIX24_CA_BUNDLE", default="")
# Development only: accept http:// endpoints.
BITRIX24_ALLOW_HTTP = env.bool("BITRIX24_ALLOW_HTTP", default=False)
# Inbound webhook for single-portal use (keeps the secret out of shell history).
BITRIX24_WEBHOOK_URL = env.str("BITRIX24_WEBHOOK_URL", default="")
# Events the app binds at install; ONAPPUNINSTALL is always added.
# ONAPPPAYMENT carries no token: it makes the app re-check app.info, so a renewed payment
# restores a portal without an operator.
BITRIX24_EVENTS = env.list(
    "BITRIX24_EVENTS", default=["ONAPPUPDATE", "ONAPPPAYMENT", "ONCRMDEALADD", "ONCRMDEALUPDATE"]
)
# Request timeouts (seconds): connect, read. Bitrix24 cuts requests off at 60 s.
BITRIX24_CONNECT_TIMEOUT = env.float("BITRIX24_CONNECT_TIMEOUT", default=5.0)
BITRIX24_READ_TIMEOUT = env.float("BITRIX24_READ_TIMEOUT", default=65.0)

# --- Sandbox portal (settings of the emulator's consumers: demo, tests, benchmarks) ----------------

# --- Client: rate limits, retries ------------------------------------------------------------------
# Plan for webhooks and portals whose plan is unknown: "standard" (2/s + 50) or "enterprise" (5/s + 250).
BITRIX24_DEFAULT_PLAN = env.str("BITRIX24_DEFAULT_PLAN", default="standard")
# Slots of the portal's burst we never use, to absorb clock and network jitter.
BITRIX24_LIMITER_HEADROOM = env.float("BITRIX24_LIMITER_HEADROOM", default=2.0)
# Operating-time limit per method per 10 minutes (seconds), and the margin at which pacing starts.
BITRIX24_OPERATING_LIMIT = env.float("BITRIX24_OPERATING_LIMIT", default=480.0)
BITRIX24_OPERATING_HEADROOM = env.float("BITRIX24_OPERATING_HEADROOM", default=30.0)
# Requests one client keeps in flight to one portal (batch chunks, list parts, imports).
BITRIX24_CLIENT_CONCURRENCY = env.int("BITRIX24_CLIENT_CONCURRENCY", default=4)
# Bounded retries: rate-limit refusals and transient failures (network, 5xx) per call.
BITRIX24_RETRY_RATE_LIMIT_ATTEMPTS = env.int("BITRIX24_RETRY_RATE_LIMIT_ATTEMPTS", default=8)
BITRIX24_RETRY_TRANSIENT_ATTEMPTS = env.int("BITRIX24_RETRY_TRANSIENT_ATTEMPTS", default=5)

# --- Portals: token lifecycle ----------------------------------------------------------------------
# Refresh ahead of a call when the access token expires within this many seconds.
BITRIX24_TOKEN_REFRESH_MARGIN = env.int("BITRIX24_TOKEN_REFRESH_MARGIN", default=60)
# Single-flight refresh: how long one refresh may hold the per-portal Redis lock, and how long
# other callers wait for it (seconds).
BITRIX24_REFRESH_LOCK_TIMEOUT = env.float("BITRIX24_REFRESH_LOCK_TIMEOUT", default=60.0)
BITRIX24_REFRESH_LOCK_WAIT = env.float("BITRIX24_REFRESH_LOCK_WAIT", default=75.0)
# Attempts when the OAuth server could not even be reached (connection refused): backoff between.
BITRIX24_REFRESH_CONNECT_ATTEMPTS = env.int("BITRIX24_REFRESH_CONNECT_ATTEMPTS", default=4)
# Keep-alive for dormant portals: refresh a refresh token untouched for this many days.
BITRIX24_DORMANT_REFRESH_DAYS = env.float("BITRIX24_DORMANT_REFRESH_DAYS", default=20.0)
# Keep tokens warm only for portals with background work due within this many minutes.
BITRIX24_WARM_WORK_MINUTES = env.float("BITRIX24_WARM_WORK_MINUTES", default=10.0)
# The sweep: how often it runs, the jitter spreading the refreshes it queues, and its batch size.
BITRIX24_TOKEN_SWEEP_SECONDS = env.float("BITRIX24_TOKEN_SWEEP_SECONDS", default=300.0)
BITRIX24_TOKEN_SWEEP_JITTER = env.float("BITRIX24_TOKEN_SWEEP_JITTER", default=240.0)
BITRIX24_TOKEN_SWEEP_BATCH = env.int("BITRIX24_TOKEN_SWEEP_BATCH", default=2000)
# The BX24 JavaScript library the installer and app pages load (the sandbox serves its own).
BITRIX24_JS_SDK_URL = env.str("BITRIX24_JS_SDK_URL", default="https://api.bitrix24.com/api/v1/")
CELERY_BEAT_SCHEDULE["portals-token-sweep"] = {
    "task": "portals.tasks.portals_tokens_sweep",
    "schedule": BITRIX24_TOKEN_SWEEP_SECONDS,
}
# A confirmed uninstall with "delete app data" deletes the portal's data only after this many hours,
# so a reinstall (or an operator, after an uninstall that should not have happened) keeps it.
BITRIX24_UNINSTALL_CLEAN_GRACE_HOURS = env.float("BITRIX24_UNINSTALL_CLEAN_GRACE_HOURS", default=72.0)
CELERY_BEAT_SCHEDULE["portals-data-purge"] = {"task": "portals.tasks.portals_data_purge", "schedule": 3600.0}

# --- Events ----------------------------------------------------------------------------------------
# Bodies larger than this are refused (413) from Content-Length, before they are read.
BITRIX24_EVENT_MAX_BYTES = env.int("BITRIX24_EVENT_MAX_BYTES", default=65_536)
# Online events whose ts is further than this from now are refused as replays (offline ones never).
BITRIX24_EVENT_MAX_SKEW_SECONDS = env.int("BITRIX24_EVENT_MAX_SKEW_SECONDS", default=3600)
# Per-process cache of member_id → (portal, token digest); a mismatch re-reads the database at most
# once per BITRIX24_EVENT_TOKEN_RECHECK_SECONDS, so forged floods never turn into database load.
BITRIX24_EVENT_TOKEN_CACHE_SECONDS = env.float("BITRIX24_EVENT_TOKEN_CACHE_SECONDS", default=30.0)
BITRIX24_EVENT_TOKEN_RECHECK_SECONDS = env.float("BITRIX24_EVENT_TOKEN_RECHECK_SECONDS", default=1.0)
# Outbox shards: each is drained by one worker at a time, in (ts, id) order per object.
BITRIX24_EVENT_SHARDS = env.int("BITRIX24_EVENT_SHARDS", default=8)
BITRIX24_EVENT_BATCH_SIZE = env.int("BITRIX24_EVENT_BATCH_SIZE", default=200)
# Group commit: a web process's concurrent receiver requests share one INSERT and one commit.
BITRIX24_EVENT_GROUP_COMMIT = env.bool("BITRIX24_EVENT_GROUP_COMMIT", default=True)
# ... and a batch's leader waits up to this long for more rows (less when none can come): fewer
# commits for a few ms of latency (docs/events.md, Benchmark). 0: write at once.
BITRIX24_EVENT_GROUP_COMMIT_LINGER_MS = env.float("BITRIX24_EVENT_GROUP_COMMIT_LINGER_MS", default=2.0)
# Bounded retries with exponential backoff (base * 2**(attempt-1), capped, jittered).
BITRIX24_EVENT_MAX_ATTEMPTS = env.int("BITRIX24_EVENT_MAX_ATTEMPTS", default=6)
BITRIX24_EVENT_RETRY_BASE_SECONDS = env.float("BITRIX24_EVENT_RETRY_BASE_SECONDS", default=10.0)
BITRIX24_EVENT_RETRY_MAX_SECONDS = env.float("BITRIX24_EVENT_RETRY_MAX_SECONDS", default=900.0)
# Finished events are kept this long (dedupe and audit), then pruned; keep it above the skew window.
BITRIX24_EVENT_RETENTION_DAYS = env.int("BITRIX24_EVENT_RETENTION_DAYS", default=14)
# Offline events: bound (event_type=offline) on portals that allow them, drained losslessly.
BITRIX24_OFFLINE_EVENTS = env.list("BITRIX24_OFFLINE_EVENTS", default=[])
# Offline events: records fetched per event.offline.get call.
BITRIX24_EVENT_OFFLINE_BATCH = env.int("BITRIX24_EVENT_OFFLINE_BATCH", default=50)
# Extra modules defining @on_event handlers, imported at start-up (besides apps' event_handlers).
BITRIX24_EVENT_HANDLER_MODULES = env.list("BITRIX24_EVENT_HANDLER_MODULES", default=[])
CELERY_BEAT_SCHEDULE["events-sweep"] = {"task": "events.tasks.events_sweep", "schedule": 15.0}
CELERY_BEAT_SCHEDULE["events-offline-sweep"] = {
    "task": "events.tasks.events_offline_sweep",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["events-bindings-reconcile"] = {
    "task": "events.tasks.events_bindings_reconcile",
    "schedule": 3600.0,
}
CELERY_BEAT_SCHEDULE["events-prune"] = {"task": "events.tasks.events_prune", "schedule": 86400.0}

# Plain lines with every extra= field as key=value (never a secret's value); static-file requests
# and the periodic tasks' bookkeeping at DEBUG (bitrix_app/logs.py). Celery keeps these handlers.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
_ROUTINE = {
    "()": "bitrix_app.logs.RoutineAtDebug",
    "level": LOG_LEVEL,
    "static_url": STATIC_URL,
    "tasks": sorted({entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()}),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "class": "bitrix_app.logs.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "access": {"format": "%(message)s"},
    },
    "filters": {"routine": _ROUTINE},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["routine"]},
        # The web server's access log (granian's format), in place of its own handler.
        "access": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "access",
            "filters": ["routine"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
