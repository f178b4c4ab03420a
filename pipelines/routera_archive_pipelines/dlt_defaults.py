"""Defaults this CLI gives dlt where the user's own dlt configuration says nothing.

- **Telemetry off.** dlt sends anonymous usage telemetry by default; a tool that runs beside
  customer data, often where outbound traffic is closed, makes no call its user did not ask for.
- **dlt's Airflow secrets provider off.** dlt turns it on whenever `airflow` can be imported,
  and then asks Airflow for every key it looks up. Outside a configured Airflow each ask fails
  and Airflow logs it: one `run --dry-run` wrote 32,944 lines of "Unable to retrieve variable
  from secrets backend", and `status` took 4.5 s instead of 1.7 s.

Turning either on in dlt's own configuration wins (`[runtime] dlthub_telemetry = true`,
`[providers] enable_airflow_secrets = true` in `.dlt/config.toml`, or `RUNTIME__DLTHUB_TELEMETRY`,
`PROVIDERS__ENABLE_AIRFLOW_SECRETS` in the environment). The files are read with dlt's own
providers, but without starting dlt's configuration: that would start the Airflow provider.
"""

import os
from typing import Any, Final

DEFAULTS: Final = {
    ("runtime", "dlthub_telemetry"): "false",
    ("providers", "enable_airflow_secrets"): "false",
}


def apply_dlt_defaults() -> None:
    """Set each default as an environment variable, unless the user configured the key."""
    missing = {
        (section, key): value
        for (section, key), value in DEFAULTS.items()
        if f"{section}__{key}".upper() not in os.environ
    }
    if not missing:
        return
    configured = _configured(list(missing))
    for (section, key), value in missing.items():
        if (section, key) not in configured:
            os.environ[f"{section}__{key}".upper()] = value


def _configured(keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of `keys` dlt's TOML files set. An unreadable file counts as setting nothing: the
    command reports it itself (exit 2) when it resolves its configuration."""
    try:
        from dlt.common.configuration import plugins

        context = plugins.manager().hook.plug_run_context(run_dir=None, runtime_kwargs=None)
        providers = context.initial_providers()
    except Exception:
        return set()
    found: set[tuple[str, str]] = set()
    for section, key in keys:
        for provider in providers:
            try:
                value, _ = provider.get_value(key, Any, None, section)
            except Exception:
                continue
            if value is not None:
                found.add((section, key))
                break
    return found
