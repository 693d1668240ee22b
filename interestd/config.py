"""Settings: one TOML file validated once at start-up into frozen models; secrets come from env or files."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from interestd.card import PARSED_FIELDS
from interestd.errors import ConfigError

SYSTEM_CONFIG_PATH = Path("/etc/interestd/config.toml")
APP_NAME = "interestd"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_duration(value: Any) -> timedelta:
    """Read "90s", "15m", "2h", "1d" or a number of seconds as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "60s", "15m" or "2h"')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f'expected a duration such as "60s", "15m" or "2h", got {value!r}')
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_size(value: Any) -> int:
    """Read "25MB", "512k", "1GB" or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError('expected a size such as "25MB"')
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f'expected a size such as "25MB" or "512KB", got {value!r}')
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


Size = Annotated[int, BeforeValidator(parse_size)]


def check_zone(value: str) -> str:
    """An IANA zone name (or "local"), or a ValueError saying what is wrong."""
    if value != "local":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Moscow)") from exc
    return value


class Section(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneralSettings(Section):
    timezone: str = "local"
    phone_region: str = "RU"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("phone_region")
    @classmethod
    def _region_code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(f"expected a two-letter country code such as RU, got {value!r}")
        return value.upper()


class DatabaseSettings(Section):
    url: str | None = None
    url_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    busy_timeout: Duration = timedelta(seconds=30)
    pool_size: int = Field(default=5, ge=1, le=100)
    allow_insecure: bool = False

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str | None) -> str | None:
        if value and re.search(r"://[^/@]*:[^/@]+@", value):
            raise ValueError("the URL carries a password: put it in password_env / password_file (or url_env)")
        return value


class PathsSettings(Section):
    data_dir: Path | None = None
    attachments_dir: Path | None = None


# Notification robots legitimately send many messages: they are exempt from the per-sender limit.
_NOTIFICATION_SENDERS = [
    "notify.vk.com",
    "vk.com",
    "vk.ru",
    "facebookmail.com",
    "business.facebook.com",
    "mail.instagram.com",
    "ok.ru",
    "odnoklassniki.ru",
    "tilda.ws",
    "tilda.cc",
    "forms.yandex.ru",
    "jivosite.com",
    "jivo.ru",
    "tawk.to",
    "chatra.io",
    "tidio.net",
    "chaport.com",
    "google.com",
]


class LimitsSettings(Section):
    max_message_bytes: Size = Field(default=25 * 1024 * 1024, ge=1024)
    # A batch is a few transactions whatever its size: fewer, larger ones cost the main process less CPU per
    # message (the poll's CPU on 10,000 messages, measured with 200 and 1,000). batch_bytes bounds the memory.
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    batch_bytes: Size = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    max_attempts: int = Field(default=3, ge=1, le=100)
    sender_limit: int = Field(default=20, ge=0)
    sender_window: Duration = timedelta(hours=2)
    sender_allow: list[str] = Field(default_factory=lambda: list(_NOTIFICATION_SENDERS))
    workers: int | Literal["auto"] = "auto"
    message_timeout: Duration = timedelta(seconds=60)
    worker_memory: Size = Field(default=1024**3, ge=64 * 1024 * 1024)

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 64:
            raise ValueError('expected "auto" or 0 to 64 (0: evaluate messages in the process itself)')
        return value

    @property
    def worker_count(self) -> int:
        if self.workers == "auto":
            return max(os.cpu_count() or 1, 1)
        return int(self.workers)


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


_POST_ACTION = re.compile(r"^(?:none|seen|flag|keyword:[A-Za-z0-9_$.-]{1,64}|move:.+)$")
_SINCE = re.compile(r"^(?:now|all|\d{4}-\d{2}-\d{2})$")
_MAILBOX_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in LOOPBACK_HOSTS or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MailboxSettings(Section):
    """One IMAP mailbox: the single [imap] table, or one of [[mailboxes]]."""

    name: str = "default"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "ssl"
    verify: bool = True
    ca_file: Path | None = None
    user: str
    password_env: str | None = None
    password_file: Path | None = None
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    batch_size: int = Field(default=1000, ge=1, le=5000)  # and at most limits.batch_bytes of mail
    since: str = "now"
    interval: Duration = timedelta(seconds=60)
    idle: bool = False
    idle_timeout: Duration = timedelta(minutes=25)
    timeout: Duration = timedelta(seconds=30)
    post_action: str = "none"
    allow_insecure: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _MAILBOX_NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("since")
    @classmethod
    def _since(cls, value: str) -> str:
        if not _SINCE.match(value):
            raise ValueError('expected "now", "all" or a date YYYY-MM-DD')
        if value[0].isdigit():
            from datetime import date

            date.fromisoformat(value)
        return value

    @field_validator("post_action")
    @classmethod
    def _post_action(cls, value: str) -> str:
        if not _POST_ACTION.match(value):
            raise ValueError('expected "none", "seen", "flag", "keyword:NAME" or "move:FOLDER"')
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1:
            raise ValueError("the poll interval must be at least 1s")
        return value

    @field_validator("idle_timeout")
    @classmethod
    def _idle_timeout(cls, value: timedelta) -> timedelta:
        if not 1 <= value.total_seconds() <= 29 * 60:
            raise ValueError("IDLE must be renewed within 29 minutes (RFC 2177)")
        return value

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> MailboxSettings:
        if self.security == "none" and not is_loopback(self.host) and not self.allow_insecure:
            raise ValueError(
                f'security = "none" sends the password in clear: refused for {self.host}, which is '
                "not a loopback address (use ssl or starttls)"
            )
        return self

    @model_validator(mode="after")
    def _has_password(self) -> MailboxSettings:
        if not self.password_env and not self.password_file:
            raise ValueError("set password_env or password_file for the IMAP login")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.security == "ssl" else 143


class AwayPeriod(Section):
    """A stretch of days (inclusive) a manager is away: no new cards go to them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: date = Field(alias="from")
    end: date = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> AwayPeriod:
        if self.end < self.start:
            raise ValueError("an away period must end on or after its start")
        return self


class ManagerSettings(Section):
    """[[managers]]: a person who works the queue."""

    login: str
    name: str | None = None
    emails: list[str] = Field(default_factory=list)
    os_users: list[str] = Field(default_factory=list)
    capacity: int | None = Field(default=None, ge=1)
    groups: list[str] = Field(default_factory=list)
    active: bool = True
    away: list[AwayPeriod] = Field(default_factory=list)

    @field_validator("login")
    @classmethod
    def _login(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,99}", value):
            raise ValueError("use lower-case letters, digits, '.', '_' and '-' (starting with a letter)")
        return value

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        cleaned = [address.strip().lower() for address in value]
        bad = next((a for a in cleaned if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a)), None)
        if bad is not None:
            raise ValueError(f"not an e-mail address: {bad!r}")
        return cleaned

    def is_away(self, day: date) -> bool:
        return any(period.start <= day <= period.end for period in self.away)


class RouteSettings(Section):
    """[[assignment.routes]]: cards of these source types / actions / products go to a group of managers."""

    group: str
    source_types: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _matches_something(self) -> RouteSettings:
        if not (self.source_types or self.actions or self.products):
            raise ValueError("a route needs source_types, actions or products")
        return self

    def matches(self, source_type: str, action: str, product: str | None) -> bool:
        return (
            (not self.source_types or source_type in self.source_types)
            and (not self.actions or action in self.actions)
            and (not self.products or (product or "").casefold() in {p.casefold() for p in self.products})
        )


class AssignmentSettings(Section):
    policy: Literal["first_claim", "least_loaded", "round_robin"] = "first_claim"
    claim_timeout: Duration | None = None
    fallback: Literal["least_loaded", "round_robin"] = "least_loaded"
    one_owner_per_person: bool = True
    require_proof: bool = True
    routes: list[RouteSettings] = Field(default_factory=list)


_DEFAULT_PROOF_HOSTS = [
    "joxi.ru",
    "joxi.net",
    "prnt.sc",
    "prntscr.com",
    "img.lightshot.app",
    "dropbox.com",
    "dl.dropboxusercontent.com",
    "disk.yandex.ru",
    "disk.yandex.com",
    "yadi.sk",
    "drive.google.com",
    "photos.app.goo.gl",
    "imgur.com",
    "i.imgur.com",
    "ibb.co",
    "i.ibb.co",
    "snipboard.io",
    "gyazo.com",
    "i.gyazo.com",
    "monosnap.com",
    "cloud.mail.ru",
]


class ProofSettings(Section):
    """Reply screenshots: where they are accepted from and how large they may be."""

    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    url_hosts: list[str] = Field(default_factory=lambda: list(_DEFAULT_PROOF_HOSTS))


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ReportSettings(Section):
    """The summary report: what period, when the daemon mails it, in which language and zone."""

    enabled: bool = True
    period: Literal["day", "week", "month"] = "day"
    at: str = "07:00"
    timezone: str | None = None
    language: Literal["ru", "en"] = "ru"
    queue_top: int = Field(default=20, ge=0, le=500)
    silent_lookback_days: int = Field(default=28, ge=7, le=365)
    silent_min_active_days: int = Field(default=7, ge=1, le=365)

    @field_validator("at")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError('expected a time of day such as "07:00"')
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_zone(value) if value is not None else None


class SmtpSettings(Section):
    """Where the report is mailed from."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "starttls"
    verify: bool = True
    ca_file: Path | None = None
    user: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=30)
    retries: int = Field(default=5, ge=0, le=50)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    allow_insecure: bool = False

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> SmtpSettings:
        if self.security == "none" and not is_loopback(self.host) and not self.allow_insecure:
            raise ValueError(
                f'security = "none" refused for {self.host}, which is not a loopback address '
                "(use ssl or starttls, or allow_insecure = true)"
            )
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.security]


class ProductRule(Section):
    """[[products]]: a product named when a card's link, the community/page named in the mail, or its words match."""

    name: str = Field(min_length=1, max_length=300)
    url: str | None = None
    url_prefixes: list[str] = Field(default_factory=list)
    pages: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _matches_something(self) -> ProductRule:
        if not (self.url_prefixes or self.pages or self.keywords):
            raise ValueError("a product rule needs url_prefixes, pages or keywords to match on")
        return self


class FieldRule(Section):
    """How a custom parser reads one card field: by label, by regular expression, by CSS selector, or a constant."""

    label: list[str] = Field(default_factory=list)
    regex: str | None = None
    css: str | None = None
    value: str | None = None
    source: Literal["text", "html", "subject"] = "text"

    @model_validator(mode="after")
    def _one_way(self) -> FieldRule:
        ways = [bool(self.label), self.regex is not None, self.css is not None, self.value is not None]
        if sum(ways) != 1:
            raise ValueError("give exactly one of label, regex, css or value")
        if self.regex is not None:
            try:
                compiled = re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
            if compiled.groups > 1:
                raise ValueError("the regex may have at most one capturing group (the value)")
        if self.css is not None:
            try:
                from cssselect import GenericTranslator, SelectorError

                GenericTranslator().css_to_xpath(self.css)
            except SelectorError as exc:
                raise ValueError(f"invalid CSS selector {self.css!r}: {exc}") from None
        return self


# What a custom parser may read out of a message: the source type and action are given by its rules.
CUSTOM_FIELDS = tuple(name for name in PARSED_FIELDS if name not in ("source_type", "action"))


class CustomParserSettings(Section):
    """[[custom_parsers]]: a site's own form or an unusual sender described without Python."""

    name: str
    source_type: str = "site_form"
    action: str = "request"
    priority: int = 90
    match_from: str | None = None
    match_subject: str | None = None
    match_body: str | None = None
    fields: dict[str, FieldRule] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,49}", value):
            raise ValueError("use lower-case letters, digits and _ (starting with a letter)")
        return value

    @field_validator("source_type", "action")
    @classmethod
    def _word(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,49}", value):
            raise ValueError("use lower-case letters, digits and _")
        return value

    @field_validator("match_from", "match_subject", "match_body")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, FieldRule]) -> dict[str, FieldRule]:
        unknown = sorted(set(value) - set(CUSTOM_FIELDS))
        if unknown:
            raise ValueError(f"unknown card field {unknown[0]!r} (one of {', '.join(CUSTOM_FIELDS)})")
        return value

    @model_validator(mode="after")
    def _matches_something(self) -> CustomParserSettings:
        if not (self.match_from or self.match_subject or self.match_body):
            raise ValueError("a custom parser needs match_from, match_subject or match_body")
        return self


class SecuritySettings(Section):
    """Who is trusted: proofs only with the receiving server's authentication verdict, when asked."""

    require_authenticated_proof: bool = False
    authserv_id: str | None = None

    @model_validator(mode="after")
    def _needs_server(self) -> SecuritySettings:
        if self.require_authenticated_proof and not self.authserv_id:
            raise ValueError(
                "require_authenticated_proof needs authserv_id: the name your mail server writes at "
                "the start of its Authentication-Results header"
            )
        return self


class Settings(Section):
    general: GeneralSettings = GeneralSettings()
    database: DatabaseSettings = DatabaseSettings()
    paths: PathsSettings = PathsSettings()
    limits: LimitsSettings = LimitsSettings()
    logging: LoggingSettings = LoggingSettings()
    imap: MailboxSettings | None = None
    mailboxes: list[MailboxSettings] = Field(default_factory=list)
    products: list[ProductRule] = Field(default_factory=list)
    custom_parsers: list[CustomParserSettings] = Field(default_factory=list)
    managers: list[ManagerSettings] = Field(default_factory=list)
    assignment: AssignmentSettings = AssignmentSettings()
    proofs: ProofSettings = ProofSettings()
    report: ReportSettings = ReportSettings()
    smtp: SmtpSettings | None = None
    security: SecuritySettings = SecuritySettings()

    _source: Path | None = PrivateAttr(default=None)
    _data_dir: Path = PrivateAttr(default=Path("."))
    _database_url: str = PrivateAttr(default="")
    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The file these settings were read from (None: built-in defaults)."""
        return self._source

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def attachments_dir(self) -> Path:
        return self.paths.attachments_dir or self._data_dir / "attachments"

    @property
    def database_url(self) -> str:
        """The effective database URL, password included: never print it, use `masked_database_url`."""
        return self._database_url

    @property
    def masked_database_url(self) -> str:
        return mask_url(self._database_url)

    @property
    def zone(self) -> ZoneInfo:
        return resolve_zone(self.general.timezone)

    @property
    def report_zone(self) -> ZoneInfo:
        return resolve_zone(self.report.timezone or self.general.timezone)

    def secret(self, name: str) -> str | None:
        """A resolved secret by its dotted key (e.g. "imap.password"), or None when none is configured."""
        return self._secrets.get(name)

    def all_mailboxes(self) -> list[MailboxSettings]:
        """The [imap] mailbox (if any) and every [[mailboxes]] entry."""
        return ([self.imap] if self.imap is not None else []) + list(self.mailboxes)

    def mailbox(self, name: str) -> MailboxSettings | None:
        return next((m for m in self.all_mailboxes() if m.name == name), None)

    def mailbox_password(self, mailbox: MailboxSettings) -> str | None:
        if self.imap is mailbox:
            return self.secret("imap.password")
        for index, candidate in enumerate(self.mailboxes):
            if candidate is mailbox:
                return self.secret(f"mailboxes[{index + 1}].password")
        return None

    def manager(self, login: str) -> ManagerSettings | None:
        return next((m for m in self.managers if m.login == login), None)

    @model_validator(mode="after")
    def _unique_managers_and_known_groups(self) -> Settings:
        logins = [m.login for m in self.managers]
        duplicate = next((login for login in logins if logins.count(login) > 1), None)
        if duplicate:
            raise ValueError(f"two [[managers]] have the login {duplicate!r}")
        addresses = [a for m in self.managers for a in m.emails]
        shared = next((a for a in addresses if addresses.count(a) > 1), None)
        if shared:
            raise ValueError(f"the e-mail address {shared} belongs to two managers")
        groups = {g for m in self.managers for g in m.groups}
        for route in self.assignment.routes:
            if route.group not in groups:
                raise ValueError(f"assignment.routes: no manager is in group {route.group!r}")
        return self

    @model_validator(mode="after")
    def _unique_mailbox_names(self) -> Settings:
        names = [m.name for m in self.all_mailboxes()]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"two mailboxes are named {duplicate!r}: give each [[mailboxes]] entry its own name")
        return self


def resolve_zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, or the machine's own zone for "local"."""
    if name != "local":
        return ZoneInfo(name)
    try:
        import tzlocal

        zone = tzlocal.get_localzone()
        if isinstance(zone, ZoneInfo):
            return zone
        return ZoneInfo(str(zone))
    except Exception:
        return ZoneInfo("UTC")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^/@:]*:)[^/@]+@", r"\1***@", url)


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    """Where the config is looked for when --config is not given; None when no file exists."""
    if environ.get("INTERESTD_CONFIG"):
        return Path(environ["INTERESTD_CONFIG"])
    xdg = _xdg_dir(environ, "XDG_CONFIG_HOME", ".config") / APP_NAME / "config.toml"
    if xdg.is_file():
        return xdg
    if SYSTEM_CONFIG_PATH.is_file():
        return SYSTEM_CONFIG_PATH
    return None


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """systemd's StateDirectory when running as a service, else the XDG data dir."""
    state = environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    return _xdg_dir(environ, "XDG_DATA_HOME", ".local/share") / APP_NAME


def _xdg_dir(environ: Mapping[str, str], variable: str, fallback: str) -> Path:
    value = environ.get(variable)
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / fallback


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Find, read and validate the configuration; raise ConfigError with a one-line message on any problem."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = default_config_path(environ)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(path, exc)) from None
    settings._source = path
    settings._data_dir = (settings.paths.data_dir or default_data_dir(environ)).expanduser()
    settings._secrets = _resolve_secrets(settings, path, environ)
    settings._database_url = _database_url(settings, environ)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def config_file_warnings(path: Path | None) -> list[str]:
    """Warnings about the config file itself (for example: readable by other users)."""
    if path is None:
        return []
    warnings = []
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRWXO):
        warnings.append(f"{path} is readable by other users (chmod o-rwx {path})")
    return warnings


_SECRET_KEY_NAMES = re.compile(r"(^|_)(password|passwd|secret|token|api_key)$")


def _describe_validation_error(path: Path | None, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    key = _format_loc(first["loc"])
    if first["type"] == "extra_forbidden":
        last = str(first["loc"][-1]) if first["loc"] else key
        if _SECRET_KEY_NAMES.search(last):
            message = f"unknown key (secrets are never read from the file: use {last}_env or {last}_file)"
        else:
            message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    else:
        message = first["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        value = first.get("input")
        short = isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) < 80
        if short and repr(value) not in message:
            shown = mask_url(value) if isinstance(value, str) else value
            message = f"{message} (got {shown!r})"
    where = f"{path}: " if path else ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}{key}: {message}{more}"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _secret_fields(settings: BaseModel, prefix: str = "") -> list[tuple[str, BaseModel, str]]:
    """Every (dotted name, section, base name) for which a section has `<base>_env` / `<base>_file` keys."""
    found: list[tuple[str, BaseModel, str]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            found.extend(_secret_fields(value, dotted + "."))
        elif isinstance(value, tuple | list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(_secret_fields(item, f"{dotted}[{index + 1}]."))
        elif name.endswith("_env") and f"{name[:-4]}_file" in type(settings).model_fields:
            found.append((f"{prefix}{name[:-4]}", settings, name[:-4]))
    return found


def _resolve_secrets(settings: Settings, path: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for dotted, section, base in _secret_fields(settings):
        env_name = getattr(section, f"{base}_env")
        file_path = getattr(section, f"{base}_file")
        if env_name and file_path:
            raise ConfigError(f"{_where(path)}{dotted}_env / {dotted}_file: set one of them, not both")
        if env_name:
            value = environ.get(env_name)
            if value is None:
                raise ConfigError(f"{_where(path)}{dotted}_env: environment variable {env_name} is not set")
            secrets[dotted] = value
        elif file_path:
            secrets[dotted] = _read_secret_file(path, dotted, Path(file_path), environ)
    return secrets


def _read_secret_file(path: Path | None, dotted: str, file_path: Path, environ: Mapping[str, str]) -> str:
    # A bare name is looked up among systemd's credentials (LoadCredential=), so the unit's
    # credential name can be written as it is.
    if not file_path.is_absolute() and environ.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / file_path
        if candidate.exists():
            file_path = candidate
    try:
        value = file_path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{_where(path)}{dotted}_file: cannot read {file_path}: {exc.strerror or exc}") from None
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{_where(path)}{dotted}_file: {file_path} is empty")
    return value


def secret_file_warnings(settings: Settings) -> list[str]:
    """Warnings for secret files that other users can read."""
    warnings = []
    for dotted, section, base in _secret_fields(settings):
        file_path = getattr(section, f"{base}_file")
        if not file_path:
            continue
        try:
            mode = Path(file_path).expanduser().stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IRWXO:
            warnings.append(f"{dotted}_file {file_path} is readable by other users (chmod o-rwx {file_path})")
    return warnings


def _where(path: Path | None) -> str:
    return f"{path}: " if path else ""


def _database_url(settings: Settings, environ: Mapping[str, str]) -> str:
    url = environ.get("INTERESTD_DATABASE_URL") or None
    if url is None and settings.database.url_env:
        url = environ.get(settings.database.url_env)
        if not url:
            raise ConfigError(f"database.url_env: environment variable {settings.database.url_env} is not set")
    if url is None:
        url = settings.database.url
    if url is None:
        return f"sqlite:///{settings.data_dir / 'interestd.db'}"
    password = settings.secret("database.password")
    if password is not None:
        url = _with_password(url, password)
    _check_database_tls(url, settings.database.allow_insecure)
    return url


def _check_database_tls(url: str, allow_insecure: bool) -> None:
    """A PostgreSQL server off this machine is reached over TLS only, unless explicitly allowed."""
    from urllib.parse import parse_qs, urlsplit

    if not url.startswith("postgresql") or allow_insecure:
        return
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    hosts = [parts.hostname or ""] + [h.split(":")[0] for h in query.get("host", [])]
    if all(not host or host.startswith("/") or is_loopback(host) for host in hosts):
        return
    if (query.get("sslmode") or [""])[0] in ("require", "verify-ca", "verify-full"):
        return
    raise ConfigError(
        f"database.url: {parts.hostname} is not this machine: add sslmode=verify-full (or require) "
        "to the URL, or set [database] allow_insecure = true"
    )


def _with_password(url: str, password: str) -> str:
    from urllib.parse import quote

    match = re.match(r"^([^:]+://)([^@/:]+)(@.*)$", url)
    if not match:
        raise ConfigError(
            "database.password_env/_file needs a URL with a user name, e.g. postgresql+psycopg://user@host/db"
        )
    return f"{match.group(1)}{match.group(2)}:{quote(password, safe='')}{match.group(3)}"


def settings_for_display(settings: Settings) -> dict[str, Any]:
    """The validated settings as plain data for `check-config`, with secrets masked and derived values added."""
    data = settings.model_dump(mode="json", exclude_none=False, by_alias=True)
    data["database"]["effective_url"] = settings.masked_database_url
    data["paths"]["effective_data_dir"] = str(settings.data_dir)
    data["paths"]["effective_attachments_dir"] = str(settings.attachments_dir)
    for dotted, _section, _base in _secret_fields(settings):
        _set_dotted(data, dotted, "***" if settings.secret(dotted) is not None else None)
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = data
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    for part in parts[:-1]:
        node = node[int(part[1:-1]) - 1] if part.startswith("[") else node[part]
    node[parts[-1]] = value
