"""The connector's settings: one dlt configuration spec, resolved the dlt way.

Every setting is one field here, with its default and a docstring, and is validated once, in
`on_resolved`. The CLI, the runner and the dlt-native source all resolve this spec, so
`SOURCES__ROUTERA__RPS`, `rps` under `[sources.routera]` in `.dlt/config.toml` and `--rps`
mean the same everywhere. The HTTP client's settings are made from it in one place
(`client_config`). The credentials are dlt secrets: dlt keeps them out of its traces and state,
and no message here ever quotes one.
"""

import math
import re
from typing import Any, Final, NoReturn, TypeVar
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
WAITS: Final = ("max_retry_wait", "backoff_initial", "backoff_max", "token_refresh_margin")


TSpec = TypeVar("TSpec", bound=BaseConfiguration)


def setting_key(name: str) -> str:
    """How a user sets `name`: its environment variable and its TOML key."""
    return f"SOURCES__ROUTERA__{name.upper()} / [sources.routera] {name}"


def _refuse(name: str, problem: str) -> NoReturn:
    raise ConfigurationError(f"{problem}; set {setting_key(name)}")


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
    properties: list[str] | None = None
    """Internal names of the custom fields to keep. Routera's reference says a DELETE answer
    holds only the default properties; with this set, each contact is first read with
    `?properties=` (a snapshot, one more request per contact, counted in `rps`) and its
    record is the snapshot overlaid with the DELETE's answer. Unset: the DELETE's answer alone."""

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
            properties=tuple(self.properties or ()),
        )

    def _check_properties(self) -> None:
        """Names as Routera's `?properties=a,b` can carry them: a comma or a control character
        would change the list the API reads, so such a name is refused, not sent."""
        if self.properties is None:
            return
        names: Any = self.properties  # set in code after resolution, it may be anything
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            _refuse(
                "properties",
                'properties must be a list of field names (TOML: properties = ["lead_score"];'
                " environment: a JSON list, '[\"lead_score\"]')",
            )
        seen: set[str] = set()
        for name in self.properties:
            if not name.strip() or name != name.strip():
                _refuse("properties", f"properties holds {name!r}: a name without spaces around it")
            if "," in name or any(ord(char) < 32 or ord(char) == 127 for char in name):
                _refuse(
                    "properties",
                    f"properties holds {name!r}: a name cannot hold a comma or a control "
                    "character (Routera separates names with commas)",
                )
            if name in seen:
                _refuse("properties", f"properties names {name!r} twice")
            seen.add(name)
        self.properties = list(self.properties)

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
            found[name] = deserialize_value(name, value, extract_inner_hint(hint))
            break
    return found


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
