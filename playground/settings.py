"""The site's settings: every value comes from a ``PLAYGROUND_*`` environment variable (this
module and the engine's CLI are the only readers of ``os.environ``). Secrets may be given as
``NAME_FILE`` (a path whose content is the value), as Docker secrets are. Bad values fail
loudly at start-up; ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Lets admin.ModelAdmin[Model] and friends be subscripted at run time, as the stubs type them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
PREFIX = "PLAYGROUND_"


def env_str(name: str, default: str | None = None) -> str:
    """The variable, or the content of the file named by ``NAME_FILE``, or ``default``."""
    key = PREFIX + name
    path = os.environ.get(key + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{key}_FILE: cannot read {path}: {exc}") from exc
    value = os.environ.get(key)
    if value is not None:
        return value
    if default is None:
        raise ImproperlyConfigured(f"{key} is not set")
    return default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name, "1" if default else "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{PREFIX}{name}: expected a boolean, got {value!r}")


def env_int(name: str, default: int, *, low: int = 0, high: int = 1 << 62) -> int:
    raw = env_str(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{PREFIX}{name}: {value} is not in [{low}, {high}]")
    return value


def env_float(name: str, default: float) -> float:
    raw = env_str(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name}: expected a number, got {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_duration(name: str, default: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``4h`` or ``1d``."""
    raw = env_str(name, default).strip().lower()
    match = re.fullmatch(r"(\d+)([smhd]?)", raw)
    if not match:
        raise ImproperlyConfigured(f"{PREFIX}{name}: expected a duration like 4h, got {raw!r}")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"])


_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def env_size(name: str, default: str) -> int:
    """``268435456``, ``256m`` or ``1g``."""
    raw = env_str(name, default).strip().lower()
    match = re.fullmatch(r"(\d+)([kmg]?)b?", raw)
    if not match:
        raise ImproperlyConfigured(f"{PREFIX}{name}: expected a size like 256m, got {raw!r}")
    return int(match[1]) * _SIZES[match[2]]


# -- core -----------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key" if DEBUG else None)
if not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured(f"{PREFIX}SECRET_KEY must be at least 32 characters")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite creates files, not folders

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "playground.accounts",
    "playground.catalog",
    "playground.labs",
]

# Django's own, declared synchronous only (see playground/middleware.py).
MIDDLEWARE = [
    "playground.middleware.SecurityMiddleware",
    "playground.middleware.SessionMiddleware",
    "playground.middleware.CommonMiddleware",
    "playground.middleware.CsrfViewMiddleware",
    "playground.middleware.AuthenticationMiddleware",
    "playground.middleware.MessageMiddleware",
    "playground.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "playground.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "playground.asgi.application"

TEMPLATES: list[dict[str, Any]] = [
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

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env_str("DATABASE_PATH", str(VAR_DIR / "db.sqlite3")),
        # Keep connections: opening one (and setting its pragmas) costs milliseconds, paid
        # on every request and WebSocket handshake otherwise.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": ("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"),
        },
        # A file, not memory: the Celery worker and the live server of the tests are other
        # processes and must see the test database.
        "TEST": {"NAME": env_str("TEST_DATABASE_PATH", str(VAR_DIR / "test-db.sqlite3"))},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# -- security -------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 14 * 86400
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Trust X-Forwarded-For for the client's address only behind a proxy that sets it.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# -- Redis: live state, channel layer, Celery broker -----------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6390/0")
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "pg:asgi", "expiry": 30},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": "pg:celery:", "visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
EXPIRE_INTERVAL = env_duration("EXPIRE_INTERVAL", "15s")
RECONCILE_INTERVAL = env_duration("RECONCILE_INTERVAL", "5m")

# -- the engine -----------------------------------------------------------------------------

ENGINE_SOCKET = env_str("ENGINE_SOCKET", str(VAR_DIR / "engine" / "engine.sock"))
# An instance's resources: these defaults, per user class below, per image in the catalog.
INSTANCE_MEMORY = env_size("INSTANCE_MEMORY", "512m")
INSTANCE_CPUS = env_float("INSTANCE_CPUS", 1.0)
INSTANCE_PIDS = env_int("INSTANCE_PIDS", 256, low=8)

# -- limits ---------------------------------------------------------------------------------

# The whole host: instances running at once; beyond it, starts wait in a queue.
CAPACITY = env_int("CAPACITY", 40, low=1)
LIMITS: dict[str, dict[str, Any]] = {
    "anonymous": {
        "labs": env_int("ANON_LABS", 1, low=1),
        "instances": env_int("ANON_INSTANCES", 3, low=1, high=5),
        "lifetime": env_duration("ANON_LIFETIME", "4h"),
        "max_lifetime": env_duration("ANON_MAX_LIFETIME", "6h"),
        "memory": env_size("ANON_MEMORY", str(INSTANCE_MEMORY)),
        "cpus": env_float("ANON_CPUS", INSTANCE_CPUS),
        "pids": env_int("ANON_PIDS", INSTANCE_PIDS, low=8),
    },
    "user": {
        "labs": env_int("USER_LABS", 3, low=1),
        "instances": env_int("USER_INSTANCES", 5, low=1, high=5),
        "lifetime": env_duration("USER_LIFETIME", "4h"),
        "max_lifetime": env_duration("USER_MAX_LIFETIME", "12h"),
        "memory": env_size("USER_MEMORY", str(INSTANCE_MEMORY)),
        "cpus": env_float("USER_CPUS", INSTANCE_CPUS),
        "pids": env_int("USER_PIDS", INSTANCE_PIDS, low=8),
    },
}
EXTEND_STEP = env_duration("EXTEND_STEP", "1h")
WARN_BEFORE_END = env_duration("WARN_BEFORE_END", "10m")
ANON_STARTS_PER_HOUR = env_int("ANON_STARTS_PER_HOUR", 20, low=1)

# -- logging --------------------------------------------------------------------------------

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {"daphne": {"level": "WARNING"}},
}
