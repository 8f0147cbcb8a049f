"""Every environment setting, in one validated object (pydantic-settings).

`tiering serve` validates them all before it starts the server, so a bad value (`TIERING_RELOAD_SECONDS=abc`, a
key with a line break in it, a misspelt `TIERING_API_KEYS`) stops it with one message naming the variable and
the fix, instead of workers failing and restarting in a loop. The service's modules read their settings here.

| variable | what | default |
|---|---|---|
| `TIERING_API_KEY` | the key clients send as `Authorization: Bearer <key>`; surrounding whitespace is trimmed | unset: open on loopback |
| `TIERING_RELOAD_SECONDS` | how often the service asks the registry which version is champion | 10 |
| `TIERING_BODY_TIMEOUT_SECONDS` | how long a client may take to send a request body (then 408) | 60 |
| `TIERING_ACCESS_LOG` | one log line per request (`tiering serve --access-log`) | off |
| `TIERING_CONFIG` | the tiering.yaml of rules-only scoring (`tiering serve --config`) | ./tiering.yaml, else built in |
| `TIERING_DEBUG` | tracebacks for unexpected errors | off |
| `TIERING_SESSION_SECRET` | signs the workspace's session cookies; set it so sessions outlive a restart | a random one per start |
| `TIERING_SSO_HEADER` | the header a reverse proxy sets to the signed-in user's name (single sign-on) | unset: no single sign-on |
| `TIERING_SSO_PROXIES` | the proxy addresses (IPs or networks, comma-separated) trusted to set that header | unset: none |
| `TIERING_DATA`, `TIERING_MAPPING`, `TIERING_MODEL`, `TIERING_AS_OF`, `TIERING_BUDGET` | the notebooks' inputs | see the notebooks |
| `TIERING_PAST_AS_OF`, `TIERING_UNTIL` | the quarterly review notebook's past scoring date and period end | see the notebook |
| `TIERING_DATABASE_URL` | the workspace store (a SQLAlchemy URL, e.g. `postgresql+psycopg://user@host:5432/tiering`) | `sqlite:///models/workspace.db` |
| `MLFLOW_TRACKING_URI` | the MLflow store or team server | `sqlite:///models/mlflow.db` |
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "TIERING_"
SECRETS = ("api_key", "session_secret")  # never echoed in a message


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP address; any other name may resolve to anything, so it is not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SettingsError(ValueError):
    """One line per bad environment variable, each naming it and the fix (never the API key's value)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    api_key: SecretStr | None = Field(None, description="clients send it as 'Authorization: Bearer <key>'")
    reload_seconds: float = Field(
        10.0, gt=0, le=86_400, allow_inf_nan=False, description="a number of seconds, e.g. 10"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, le=3_600, allow_inf_nan=False, description="a number of seconds, e.g. 60"
    )
    access_log: bool = Field(False, description="1 or 0 (also true/false, yes/no, on/off)")
    config: Path | None = Field(None, description="the path of an existing tiering.yaml")
    debug: bool = Field(False, description="1 or 0")
    session_secret: SecretStr | None = Field(None, description="a random text of at least 32 characters")
    sso_header: str | None = Field(None, description="a header name such as X-Forwarded-User")
    sso_proxies: str | None = Field(None, description="IP addresses or networks, e.g. 10.0.0.5,10.1.0.0/16")
    data: str | None = None
    mapping: str | None = None
    model: str | None = None
    as_of: str | None = Field(None, description="a date such as 2026-07-01")
    past_as_of: str | None = Field(None, description="a date such as 2026-03-01")
    until: str | None = Field(None, description="a date such as 2026-07-01")
    budget: float | None = Field(None, ge=0, allow_inf_nan=False, description="a finite amount of at least 0")
    database_url: str | None = Field(
        None, description="a SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/tiering"
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="e.g. sqlite:///models/mlflow.db or http://mlflow.example:5000",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _trimmed_key(cls, value):
        if value is None:
            return None
        text = str(value).strip()  # a key read from a file keeps its trailing newline
        if not text:
            raise ValueError("is blank: unset it, or give the key")
        if any(not character.isprintable() for character in text):
            raise ValueError("holds a line break or another control character, which no client can send in a header")
        return text

    @field_validator("session_secret", mode="before")
    @classmethod
    def _long_secret(cls, value):
        if value is not None and len(str(value).strip()) < 32:
            raise ValueError("is shorter than 32 characters: anyone could guess it")
        return value

    @field_validator("sso_header")
    @classmethod
    def _header_name(cls, value: str | None):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+", value.strip()):
            raise ValueError("is not a header name (letters, digits and dashes)")
        return None if value is None else value.strip()

    @field_validator("sso_proxies")
    @classmethod
    def _networks(cls, value: str | None):
        if value is not None:
            for part in value.split(","):
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP address or network") from None
        return value

    @field_validator("config")
    @classmethod
    def _existing_file(cls, value: Path | None):
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @field_validator("as_of", "past_as_of", "until")
    @classmethod
    def _a_date(cls, value: str | None):
        from features.dates import NotADate, parse_moment

        if value is not None:
            try:
                parse_moment(value)
            except NotADate as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("mlflow_tracking_uri", "database_url")
    @classmethod
    def _a_uri(cls, value: str | None):
        if value is not None and not value.strip():
            raise ValueError("is blank")
        return value


def variable(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else PREFIX + field.upper()


KNOWN = {variable(name) for name in Settings.model_fields}


def load_settings() -> Settings:
    """The settings from the environment now; SettingsError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        lines = []
        for problem in error.errors(include_url=False):
            field = str(problem["loc"][0]) if problem["loc"] else ""
            name = variable(field) if field in Settings.model_fields else field
            shown = "" if field in SECRETS else f"={os.environ.get(name, '')!r}"
            hint = Settings.model_fields[field].description if field in Settings.model_fields else None
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{name}{shown}: {message}" + (f"; expected {hint}" if hint and field not in SECRETS else ""))
        raise SettingsError("\n".join(lines)) from None


def debugging() -> bool:
    """`TIERING_DEBUG` set to a true value (1, true, yes, on); false too when the environment does not validate, since
    this is asked while another error is reported."""
    try:
        return load_settings().debug
    except SettingsError:
        return False


def secret(name: str) -> str:
    """The value of the environment variable a configuration names for a secret (`alerts.secret_env`); "" if unset.
    Secrets live in the environment only, never in tiering.yaml, so the file can be shared."""
    return os.environ.get(name, "")


def unknown_variables() -> list[str]:
    """TIERING_* variables that no setting reads (a typo such as TIERING_API_KEYS leaves the service open)."""
    found = []
    for name in sorted(os.environ):
        if name.upper().startswith(PREFIX) and name.upper() not in KNOWN:
            guess = difflib.get_close_matches(name.upper(), sorted(KNOWN), n=1, cutoff=0.7)
            found.append(
                f"{name}: no such setting"
                + (f" (did you mean {guess[0]}?)" if guess else "")
                + f"; known: {', '.join(sorted(k for k in KNOWN if k.startswith(PREFIX)))}"
            )
    return found


def check_environment() -> Settings:
    """Every setting valid and none unknown, or SettingsError with one line per problem (at `tiering serve` start)."""
    problems = unknown_variables()
    try:
        settings = load_settings()
    except SettingsError as error:
        problems = str(error).splitlines() + problems
        settings = None
    if problems or settings is None:
        raise SettingsError("\n".join(problems))
    return settings
