"""Django settings for the SPID/CIE OIDC Federation reference implementation (`spid-cie-oidc`, from
PyPI) as the suite runs it: one process holding a trust anchor (at SPID_BASE) and an OpenID provider
in the SPID profile (at SPID_BASE/oidc/op), as the implementation's own federation example does.

Environment: SPID_BASE (http://127.0.0.1:<port>), SPID_DB (the SQLite file)."""

import os

import aiohttp

BASE = os.environ["SPID_BASE"]

SECRET_KEY = "interop-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
APPEND_SLASH = False
ROOT_URLCONF = "urls"
AUTH_USER_MODEL = "spid_cie_oidc_accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "Europe/Rome"
LANGUAGE_CODE = "it-it"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "spid_cie_oidc.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bootstrap_italia_template",
    "spid_cie_oidc.entity",
    "spid_cie_oidc.authority",
    "spid_cie_oidc.provider",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

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

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SPID_DB"]},
}

# The federation: this process's trust anchor is the only one.
OIDCFED_DEFAULT_TRUST_ANCHOR = BASE
OIDCFED_TRUST_ANCHORS = [BASE]
OIDCFED_PROVIDER_PROFILE = "spid"
OIDCFED_DEFAULT_PROVIDER_PROFILE = "spid"
# The provider admits a relying party only with the trust mark of a public-sector relying party.
OIDCFED_REQUIRED_TRUST_MARKS = ["https://registry.agid.gov.it/openid_relying_party/public/"]

# Plain http on loopback.
HTTPC_PARAMS = {
    "connection": {"ssl": False},
    "session": {"timeout": aiohttp.ClientTimeout(total=4)},
}

LOGIN_URL = "/oidc/op/landing"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "DEBUG"}},
    "loggers": {
        "spid_cie_oidc": {"handlers": ["console"], "level": os.environ.get("SPID_LOG", "WARNING")},
    },
}
