"""Settings, read from the environment only (optionally through a .env file).

One ``env`` object reads everything; .env.example documents every variable.
The app's own settings live in the BITRIX24_ namespace.
"""

import os
from pathlib import Path

import environ

from bitrix_app.client_ip import parse_networks
from bitrix_app.sentry import sentry_init
from portals.conf import AppSettings

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
    # Django's admin with the operator console's dashboard as its index (console/sites.py).
    "console.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "portals",
    "events",
    "console",
    "mirror",
    "api",
    # django-ninja's own static files (Swagger UI) for /api/docs, served from here, not a CDN.
    "ninja",
]
# The sandbox Bitrix24 (`manage.py sandbox`) is for development, the demo and the tests: never
# installed in production unless asked for explicitly.
if env.bool("BITRIX24_SANDBOX", default=DEBUG):
    INSTALLED_APPS.append("sandbox")
# The deployment's own features, as Django apps: their event handlers register at start-up, and what
# they handle is what the app binds on each portal (bin/demo adds the example, examples.deals).
INSTALLED_APPS += env.list("DJANGO_EXTRA_APPS", default=[])

MIDDLEWARE = [
    # /healthz, /readyz and /metrics first: probes are refused by nothing below (bitrix_app/probes.py).
    "bitrix_app.probes.ProbesMiddleware",
    "bitrix_app.probes.RequestScopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The console speaks the browser's language; the app page the portal's (portals/views/app.py).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Console logins: 5 failures of one username from one address lock that pair out for 15 minutes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "bitrix_app.client_ip.client_ip"
AXES_VERBOSE = False

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

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
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
# includeSubDomains and preload bind every subdomain of the app's domain (preload: in browsers' own
# lists, for months), the domain owner's decision rather than this app's. Off unless set, they are
# not reported by `check --deploy` (bitrix doctor counts its warnings as failures).
SILENCED_SYSTEM_CHECKS = [
    check
    for check, on in (
        ("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS),
        ("security.W021", SECURE_HSTS_PRELOAD),
    )
    if not on
]
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
# CELERY_QUEUES_BY_KIND=1: event work and token refreshes get queues of their own (<queue>.events,
# <queue>.refresh; everything else stays on <queue>), so a flood of one kind never delays the other
# and each gets its own workers (deploy/worker.sh: CELERY_WORKER_QUEUES; docs/deploy.md).
if env.bool("CELERY_QUEUES_BY_KIND", default=False):
    CELERY_TASK_ROUTES = {
        "events.tasks.*": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.events"},
        "portals.tasks.portal_tokens_refresh_task": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}.refresh"},
    }

# --- Bitrix24 --------------------------------------------------------------------------------------
# Every BITRIX24_* setting is declared, typed and documented once, in portals/conf.py (the table is
# docs/configuration.md); here they are read from the environment into Django's settings.
_bitrix24 = AppSettings.from_env(env)
globals().update(_bitrix24.as_django_settings())

# Exactly one beat sends: a second one stands by until the first one's lease runs out (bitrix_app/beat.py).
CELERY_BEAT_SCHEDULER = env.str("CELERY_BEAT_SCHEDULER", default="bitrix_app.beat:SingletonScheduler")
CELERY_BEAT_SCHEDULE["portals-token-sweep"] = {
    "task": "portals.tasks.portals_tokens_sweep",
    "schedule": _bitrix24.token_sweep_seconds,
}
CELERY_BEAT_SCHEDULE["portals-data-purge"] = {"task": "portals.tasks.portals_data_purge", "schedule": 3600.0}
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
CELERY_BEAT_SCHEDULE["mirror-sweep"] = {
    "task": "mirror.tasks.mirror_sweep",
    "schedule": _bitrix24.mirror_sweep_seconds,
}
CELERY_BEAT_SCHEDULE["console-rollups-prune"] = {
    "task": "console.tasks.console_rollups_prune",
    "schedule": 3600.0,
}

# Plain lines with every extra= field as key=value (never a secret's value); static-file requests
# and the periodic tasks' bookkeeping at DEBUG (bitrix_app/logs.py). Celery keeps these handlers.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "plain" (key=value lines) or "json" (one JSON object per line, for a log shipper).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
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
            "()": "bitrix_app.logs.KeyValueFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "mode": LOG_FORMAT,
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

# --- Observability (bitrix_app/probes.py, bitrix_app/client_ip.py, bitrix_app/sentry.py) -----------
# Proxies (CIDRs) whose X-Forwarded-For is believed: nginx's address as the app sees it (loopback
# when nginx runs on the same machine; the compose network's range in deploy/compose.yaml). Match
# nginx's own set_real_ip_from (deploy/nginx/real-ip.conf) with the hops in front of nginx.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.0/8", "::1/128"])
# Clients /metrics answers (CIDRs): the Prometheus scraper's address.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.0/8", "::1/128"])
for _name, _cidrs in (("TRUSTED_PROXIES", TRUSTED_PROXIES), ("METRICS_ALLOWED_IPS", METRICS_ALLOWED_IPS)):
    try:
        parse_networks(_cidrs)
    except ValueError as _e:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{_name}: {_e}") from None
# Errors and their context to Sentry when a DSN is set (secrets removed before sending).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
