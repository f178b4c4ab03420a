"""The connector's settings: one dlt configuration spec, resolved the dlt way.

Every setting is one field here, with its default and a docstring, and is validated once, in
`on_resolved`. The CLI, the runner and the dlt-native source all resolve this spec, so
`SOURCES__ROUTERA__RPS`, `rps` under `[sources.routera]` in `.dlt/config.toml` and `--rps`
mean the same everywhere. The HTTP client's settings are made from it in one place
(`client_config`). The credentials are dlt secrets: dlt keeps them out of its traces and state,
and no message here ever quotes one.
"""

import contextlib
import math
import re
from typing import Any, Final, NoReturn, TypeVar, get_args
from urllib.parse import urlsplit

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import (
    ConfigurationException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.base_configuration import extract_inner_hint, is_secret_hint
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.configuration.utils import deserialize_value
from dlt.common.typing import TSecretStrValue

from routera_archive.errors import ConfigurationError
from routera_archive.http.auth import is_header_safe_token
from routera_archive.http.config import AccessToken, ClientConfig, ClientCredentials, Credentials
from routera_archive.names import QUEUE_TABLE, SOURCE_NAME
from routera_archive.objects import ObjectType

CONFIG_SECTIONS: Final = ("sources", SOURCE_NAME, SOURCE_NAME)
"""Where dlt's own source lookup puts `routera`'s settings: `sources.<section>.<name>`."""
STRICT_PATHS: Final = (CONFIG_SECTIONS, CONFIG_SECTIONS[:2])
"""The only places a setting is read from (see `_configured_values`)."""
DEFAULT_BASE_URL: Final = "https://api.routera.io"
SCHEMA_CONTRACTS: Final = ("evolve", "freeze", "discard")
TIMEOUTS: Final = (
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "pool_timeout",
    "call_deadline",
)
# Bounds a user can reach by a typo (`--concurrency 10000000` once took 2 GB before any call).
CONCURRENCY_MAX: Final = 256
MAX_BODY_BYTES_RANGE: Final = (1024, 1024**3)
SECRET_FIELDS: Final = ("access_token", "client_id", "client_secret")
DEFAULT_PERSONAL_FIELDS: Final = ("email", "first_name", "last_name", "phone")
"""The contact fields that name or reach a person: what `redact` removes by default."""
WAITS: Final = ("max_retry_wait", "backoff_initial", "backoff_max", "token_refresh_margin")


TSpec = TypeVar("TSpec", bound=BaseConfiguration)


def setting_key(name: str) -> str:
    """How a user sets `name`: its environment variable and its TOML key."""
    return f"SOURCES__ROUTERA__{name.upper()} / [sources.routera] {name}"


def _refuse(name: str, problem: str) -> NoReturn:
    raise ConfigurationError(f"{problem}; set {setting_key(name)}")


def properties_key(object_type: ObjectType) -> str:
    """How a user sets one type's `properties`: contacts by the flat list (as before types
    existed) or the table, every other type by the table only."""
    table = f"[sources.routera.properties] {object_type.value}"
    if object_type is ObjectType.CONTACTS:
        return f"{setting_key('properties')} (a list), or {table}"
    return f"{table} (SOURCES__ROUTERA__PROPERTIES as a JSON object)"


def shown_url(url: str) -> str:
    """A URL as a message may quote it: without user info, query or fragment, any of which
    may hold a password or a key (`http://<credentials>@host/path?<query>`)."""
    shown = re.sub(r"(?<=//)[^/?#]*@", "<credentials>@", url)
    base = re.split(r"[?#]", shown, maxsplit=1)[0]
    return base + ("?<query>" if base != shown else "")


def _given(value: str | None) -> str | None:
    """A setting counts as given only if it holds more than whitespace."""
    return value if value and value.strip() else None


@configspec
class DatasetConfig(BaseConfiguration):
    """The settings that tell where a dataset's requests are: all that `status` and `report`
    need, so they work without API credentials."""

    queue_table: str = QUEUE_TABLE
    """The table of archive requests in the dataset (made by `enqueue`, dbt or SQL)."""
    personal_fields: list[str] | None = None
    """The fields `redact` removes, by the API's names (`email`, a custom field's internal
    name); not set: `DEFAULT_PERSONAL_FIELDS`.
    Setting it replaces that list: name them too to keep them."""
    redact_after_days: int | None = None
    """Redact every audit row archived more than this many days ago at the end of each run
    (an unsharded one); not set: records are kept whole until `redact` is run."""

    def on_resolved(self) -> None:
        """Runs first of the `on_resolved` checks (dlt calls them base class first): every
        field holds its declared type, so the checks after it can compare values. A value set
        in code after resolution (`config.rps = "abc"`) is caught here too (`validate`)."""
        for name, hint in self.get_resolvable_fields().items():
            kind = extract_inner_hint(hint)
            value = getattr(self, name)
            if kind not in (int, float, str, bool) or value is None:
                continue
            wrong = isinstance(value, bool) != (kind is bool) or not isinstance(
                value, (int, float) if kind is float else kind
            )
            if wrong:
                shown = "" if name in SECRET_FIELDS else f", got {value!r}"
                _refuse(name, f"{name} must be of type {kind.__name__}{shown}")
        if not self.queue_table.strip():
            _refuse("queue_table", "queue_table must name a table")
        if self.redact_after_days is not None and self.redact_after_days < 1:
            _refuse(
                "redact_after_days",
                f"redact_after_days must be at least 1, got {self.redact_after_days}",
            )
        given: Any = self.personal_fields
        if given is not None and (
            not isinstance(given, list)
            or not given
            or not all(isinstance(name, str) and name.strip() for name in given)
        ):
            _refuse(
                "personal_fields",
                "personal_fields must be a non-empty list of field names, like "
                '["email", "first_name", "last_name", "phone", "mobile"]',
            )

    @property
    def redacted_fields(self) -> tuple[str, ...]:
        """The fields a redaction removes (`personal_fields`, or the default list)."""
        if self.personal_fields is None:
            return DEFAULT_PERSONAL_FIELDS
        return tuple(name.strip() for name in self.personal_fields)

    def validate(self) -> None:
        """Check every rule again (all `on_resolved`s): for a spec whose values were changed in
        code after it was resolved. The same rules, not a second copy of them."""
        self.call_method_in_mro("on_resolved")


@configspec
class RouteraSourceConfig(DatasetConfig):
    """Every setting of an archive run (and of the dlt-native source)."""

    base_url: str = DEFAULT_BASE_URL
    """Routera's API root (the sandbox's URL for a rehearsal); it never holds credentials."""
    access_token: TSecretStrValue | None = None
    """A static bearer token. Give it, or `client_id` and `client_secret`; never both."""
    client_id: TSecretStrValue | None = None
    """OAuth client-credentials id; with it the connector fetches and renews its own tokens."""
    client_secret: TSecretStrValue | None = None
    """OAuth client secret, given with `client_id`."""

    concurrency: int = 16
    """Requests in flight at once, 1 to 256. Throughput is rate x latency: 16 keeps 50
    requests/s going for calls of up to 320 ms (raise it with `rps`: at least `rps` x
    latency)."""
    rps: float = 50.0
    """Requests per second across the run, retries, GETs and token calls included; 0 turns the
    limit off. Routera publishes no limit and an archive cannot be undone: a polite default."""
    max_attempts: int = 5
    """Attempts per call for 429, 408, 5xx, timeouts and connection errors (400, 404 are final)."""
    max_retry_wait: float = 120.0
    """Seconds one call may spend waiting between its attempts in all; then it is `failed`."""
    backoff_initial: float = 0.5
    """Seconds: the first retry waits up to this long (full jitter, doubling each time)."""
    backoff_max: float = 30.0
    """Seconds: the longest wait between two attempts, unless `Retry-After` asks for more."""
    connect_timeout: float = 10.0
    """Seconds to open a connection."""
    read_timeout: float = 30.0
    """Seconds to wait for an answer once the request is sent."""
    write_timeout: float = 30.0
    """Seconds to send a request."""
    pool_timeout: float = 60.0
    """Seconds a request may wait for a free connection of its pool."""
    call_deadline: float = 120.0
    """Seconds one attempt may take in all, from sending the request to the last byte of its
    answer: `read_timeout` bounds each wait between two bytes, so an answer trickled a byte at
    a time would otherwise hold a call for ever. Past it the attempt counts as a timeout."""
    max_body_bytes: int = 8 * 1024 * 1024
    """The largest answer body read, in bytes (8 MiB: a contact with a thousand custom fields
    is a few hundred KB). A longer one is not read further: the call is `failed`, and asked
    about again next run (a body that never ends would otherwise fill the memory)."""
    token_refresh_margin: float = 60.0
    """Seconds before an OAuth token's `expires_in` runs out that it is renewed, so no call
    races the expiry."""

    max_archives: int = 1000
    """A run with more requests to handle than this is refused unless forced: a queue that
    suddenly holds the whole CRM is far more likely a bad dbt model than an intent."""
    max_share: float = 0.5
    """A run that would archive more than this share of the account's active contacts is
    refused unless forced (one `GET /contacts?limit=1` tells how many are active); 0 turns the
    check off."""
    chunk_size: int = 500
    """Outcomes per load: a crash costs at most this many records' loading, never the records
    (the journal and the GET recovery bring them back)."""
    schema_contract: str = "evolve"
    """`evolve`: new custom fields become columns. `freeze`: they stay in `raw_response` only
    and the run exits 1 so someone looks. `discard`: the same, reported but not failed."""
    call_worker: bool = True
    """Make the HTTP calls in a child process, so dlt's loads do not slow them; false keeps
    them in the run's process (for hosts that forbid subprocesses)."""
    properties: dict[str, list[str]] | list[str] | None = None
    """Internal names of the custom fields to keep, per object type: a table keyed by type
    (`[sources.routera.properties]` with `contacts = [...]`, `companies = [...]`; a JSON object
    in SOURCES__ROUTERA__PROPERTIES), or a flat list, which names contact fields (as it did
    before types existed). A type's fields are unknown on another's, and Routera answers 400
    to them, so one list cannot serve every type. Routera's reference says a DELETE answer
    holds only the default properties; for a type with names set, each record is first read
    with `?properties=` (a snapshot, one more request per record, counted in `rps`) and its
    record is the snapshot overlaid with the DELETE's answer. Unset for a type: the DELETE's
    answer alone."""

    def on_resolved(self) -> None:
        """Every rule on a setting's value, checked once, naming the key as a user sets it."""
        self._check_base_url()
        self.credentials  # noqa: B018  (raises ConfigurationError when they cannot work)
        if not 1 <= self.concurrency <= CONCURRENCY_MAX:
            _refuse(
                "concurrency",
                f"concurrency must be between 1 and {CONCURRENCY_MAX}, got {self.concurrency}",
            )
        low, high = MAX_BODY_BYTES_RANGE
        if not low <= self.max_body_bytes <= high:
            _refuse(
                "max_body_bytes",
                f"max_body_bytes must be between {low} and {high} (1 GiB), "
                f"got {self.max_body_bytes}",
            )
        if not (self.rps >= 0 and math.isfinite(self.rps)):
            _refuse("rps", f"rps must be a number >= 0 (0: no limit), got {self.rps}")
        if self.max_attempts < 1:
            _refuse("max_attempts", f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in TIMEOUTS:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                _refuse(name, f"{name} must be a number of seconds > 0, got {value}")
        for name in WAITS:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                _refuse(name, f"{name} must be a number of seconds >= 0, got {value}")
        if self.max_archives < 0:
            _refuse("max_archives", f"max_archives must be 0 or more, got {self.max_archives}")
        if not 0 <= self.max_share <= 1:
            _refuse("max_share", f"max_share must be between 0 (off) and 1, got {self.max_share}")
        if self.chunk_size < 1:
            _refuse("chunk_size", f"chunk_size must be at least 1, got {self.chunk_size}")
        self._check_properties()
        if self.schema_contract not in SCHEMA_CONTRACTS:
            _refuse(
                "schema_contract",
                f"schema_contract must be one of {', '.join(SCHEMA_CONTRACTS)}, "
                f"not {self.schema_contract!r}",
            )

    @property
    def credentials(self) -> Credentials:
        """The one identity this configuration archives as; ConfigurationError when there is
        none, when there are both, or when half of the OAuth pair is missing."""
        token = _given(self.access_token)
        client_id, secret = _given(self.client_id), _given(self.client_secret)
        if token and (client_id or secret):
            raise ConfigurationError(
                "both an access_token and OAuth client credentials are set: keep only one of "
                "SOURCES__ROUTERA__ACCESS_TOKEN or SOURCES__ROUTERA__CLIENT_ID + "
                "SOURCES__ROUTERA__CLIENT_SECRET, so it is clear which identity archives"
            )
        if token:
            if not is_header_safe_token(token):
                _refuse(
                    "access_token",
                    "access_token contains spaces, line breaks or other characters a bearer "
                    "token cannot have (a stray newline from copying it?)",
                )
            return AccessToken(token)
        if client_id and secret:
            return ClientCredentials(client_id, secret)
        if client_id or secret:
            present, missing = (
                ("client_id", "client_secret") if client_id else ("client_secret", "client_id")
            )
            raise ConfigurationError(
                f"{present} is set but {missing} is not: OAuth needs both "
                "(SOURCES__ROUTERA__CLIENT_ID and SOURCES__ROUTERA__CLIENT_SECRET)"
            )
        raise ConfigurationError(
            "no Routera credentials: set SOURCES__ROUTERA__ACCESS_TOKEN (access_token), or "
            "SOURCES__ROUTERA__CLIENT_ID and SOURCES__ROUTERA__CLIENT_SECRET (client_id and "
            "client_secret) for OAuth client credentials, in the environment or "
            ".dlt/secrets.toml"
        )

    def client_config(self) -> ClientConfig:
        """The HTTP client's settings: the one place they are made from this spec."""
        return ClientConfig(
            base_url=self.base_url,
            credentials=self.credentials,
            concurrency=self.concurrency,
            rps=self.rps,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            write_timeout=self.write_timeout,
            pool_timeout=self.pool_timeout,
            call_deadline=self.call_deadline,
            max_body_bytes=self.max_body_bytes,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
            backoff_initial=self.backoff_initial,
            backoff_max=self.backoff_max,
            token_refresh_margin=self.token_refresh_margin,
            properties=tuple(self.properties_by_type.items()),
        )

    @property
    def properties_by_type(self) -> dict[ObjectType, tuple[str, ...]]:
        """The names to snapshot, per type that has any (a flat list: contacts'), in the
        types' order. Read after `on_resolved`, which refused every other shape."""
        given: Any = self.properties
        if not given:
            return {}
        if isinstance(given, list | tuple):
            return {ObjectType.CONTACTS: tuple(given)}
        return {kind: tuple(given[kind.value]) for kind in ObjectType if given.get(kind.value)}

    def _check_properties(self) -> None:
        """The shape (a list, or a table keyed by type names exactly: a key that names no type
        would be a type's fields silently never read), and names as Routera's
        `?properties=a,b` can carry them: a comma or a control character would change the
        list the API reads, so such a name is refused, not sent."""
        given: Any = self.properties  # from the environment or code, it may be anything
        if given is None:
            return
        shape = (
            'properties must be a list of contact field names (properties = ["lead_score"]) '
            "or a table of lists by object type ([sources.routera.properties] companies = "
            '["tier"]; environment: JSON, \'{"companies": ["tier"]}\' or \'["lead_score"]\')'
        )
        if isinstance(given, list | tuple):
            self.properties = _checked_names(given, ObjectType.CONTACTS, shape)
            return
        if not isinstance(given, dict):
            _refuse("properties", shape)
        known = ", ".join(kind.value for kind in ObjectType)
        checked: dict[str, list[str]] = {}
        for key, names in given.items():
            try:
                kind = ObjectType(key)
            except ValueError:
                _refuse(
                    "properties",
                    f"properties has a key {str(key)[:40]!r} that names no object type (the "
                    f"keys are {known}, spelled exactly)",
                )
            checked[kind.value] = _checked_names(names, kind, shape)
        self.properties = checked

    def _check_base_url(self) -> None:
        try:
            parts = urlsplit(self.base_url)
            host = parts.hostname
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except (ValueError, TypeError, AttributeError):
            parts, host = None, None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            _refuse(
                "base_url",
                f"base_url {shown_url(self.base_url)!r} is not an absolute http(s) URL with a "
                f"host (e.g. {DEFAULT_BASE_URL!r})",
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                "base_url must not contain a user name or password; put credentials in "
                "SOURCES__ROUTERA__ACCESS_TOKEN or the OAuth client settings"
            )
        if parts.query or parts.fragment or "?" in self.base_url or "#" in self.base_url:
            _refuse(
                "base_url",
                f"base_url {shown_url(self.base_url)!r} must not have a query or fragment",
            )


def _checked_names(names: Any, kind: ObjectType, shape: str) -> list[str]:
    """One type's names, as a list, each one a name `?properties=a,b` can carry."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{shape}; set {properties_key(kind)}")
    seen: set[str] = set()
    what = "properties" if kind is ObjectType.CONTACTS else f"properties.{kind.value}"
    for name in names:
        problem = None
        if not name.strip() or name != name.strip():
            problem = f"{what} holds {name!r}: a name without spaces around it"
        elif "," in name or any(ord(char) < 32 or ord(char) == 127 for char in name):
            problem = (
                f"{what} holds {name!r}: a name cannot hold a comma or a control character "
                "(Routera separates names with commas)"
            )
        elif name in seen:
            problem = f"{what} names {name!r} twice"
        if problem is not None:
            raise ConfigurationError(f"{problem}; set {properties_key(kind)}")
        seen.add(name)
    return list(names)


def resolve_source_config(**overrides: Any) -> RouteraSourceConfig:
    """Every setting, from dlt's providers (environment, `.dlt/*.toml`), explicit values first
    (see `resolve_settings`)."""
    return resolve_settings(RouteraSourceConfig(), **overrides)


def resolve_dataset_config(**overrides: Any) -> DatasetConfig:
    """The dataset's settings alone (no credentials needed), as `resolve_settings` does."""
    return resolve_settings(DatasetConfig(), **overrides)


def resolve_settings(spec: TSpec, **overrides: Any) -> TSpec:
    """Resolve `spec` from dlt's providers (environment, `.dlt/*.toml`), explicit values first.

    `None` overrides are ignored (a CLI option not given). dlt's own errors (a value it cannot
    coerce, an unreadable file) become one ConfigurationError that names the key; dlt never
    prints a secret's value.
    """
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        values = (
            {name: getattr(spec, name) for name in spec.get_resolvable_fields()}
            | _configured_values(spec)
            | explicit
        )
        # Every field has its value here, so dlt looks up none by itself (see above).
        return resolve_configuration(spec, sections=CONFIG_SECTIONS, explicit_value=values)
    except ConfigValueCannotBeCoercedException as exc:
        got = "" if exc.field_name in SECRET_FIELDS else f", got {exc.field_value!r}"
        raise ConfigurationError(
            f"{exc.field_name} must be of type {getattr(exc.hint, '__name__', exc.hint)}{got}; "
            f"set {setting_key(exc.field_name)}"
        ) from None
    except ConfigurationException as exc:
        raise ConfigurationError(f"the [sources.routera] configuration is invalid: {exc}") from None


def _configured_values(spec: BaseConfiguration) -> dict[str, Any]:
    """Each field's value from dlt's providers (the environment, `.dlt/secrets.toml`,
    `.dlt/config.toml`, in dlt's order), looked up as `[sources.routera.routera]` (where dlt's
    own source lookup starts) and `[sources.routera]` only.

    dlt would go on to shorter keys: `SOURCES__RPS`, then a bare `RPS` or `BASE_URL` in the
    environment, which a container often sets for something else entirely and which then beats
    `.dlt/config.toml`. For a call that cannot be undone, only our own keys count.
    """
    providers = Container()[PluggableRunContext].providers.providers
    found: dict[str, Any] = {}
    for name, hint in spec.get_resolvable_fields().items():
        secret = is_secret_hint(hint)
        for provider in providers:
            if provider.is_empty:
                continue
            value = next(
                (
                    value
                    for path in STRICT_PATHS
                    if (value := provider.get_value(name, hint, None, *path)[0]) is not None
                ),
                None,
            )
            if value is None:
                continue
            if secret and not provider.supports_secrets:
                raise ConfigurationError(
                    f"{name} is a secret and cannot be read from {provider.name}: put it in "
                    f".dlt/secrets.toml or the environment ({setting_key(name)})"
                )
            # As dlt does with a value it found: the environment's text becomes the field's type.
            found[name] = _deserialized(name, value, hint)
            break
    return found


def _deserialized(name: str, value: Any, hint: Any) -> Any:
    """`value` as the field's type, the way dlt makes it, for a field of one type or of
    several (`properties`: a table or a list). dlt tries only a union's first member, so a
    JSON list in SOURCES__ROUTERA__PROPERTIES would be refused as not a table; here each
    member is tried in turn, and a value none of them takes is left to the field's own check
    in `on_resolved`, which says what shapes it takes."""
    members = [arg for arg in get_args(hint) if arg is not type(None)]
    if len(members) < 2:
        return deserialize_value(name, value, extract_inner_hint(hint))
    for member in members:
        with contextlib.suppress(ConfigValueCannotBeCoercedException):
            return deserialize_value(name, value, extract_inner_hint(member))
    return value


def with_contact_properties(
    config: RouteraSourceConfig, names: list[str]
) -> dict[str, list[str]] | list[str]:
    """`properties` with the contacts' names replaced by `names` and every other type's kept:
    what `--properties` sets, over the configuration's table."""
    others = {
        kind.value: list(given)
        for kind, given in config.properties_by_type.items()
        if kind is not ObjectType.CONTACTS
    }
    return {ObjectType.CONTACTS.value: names, **others} if others else names


def as_resolved(config: RouteraSourceConfig | None) -> RouteraSourceConfig:
    """The settings a run or the dlt source works with: resolved the one way (an unresolved
    spec's values count as defaults), then every rule checked again, since a resolved spec's
    values may have been changed in code."""
    if config is None:
        config = resolve_source_config()
    elif not config.is_resolved():
        config = resolve_settings(config)
    config.validate()
    return config


def settings_from_values(**values: Any) -> RouteraSourceConfig:
    """A spec from these values and the defaults alone, no provider read, validated like a
    resolved one: for callers that must not pick up the environment (the demo, tests)."""
    return RouteraSourceConfig(**values).resolve()
