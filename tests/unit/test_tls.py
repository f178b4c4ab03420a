"""TLS verification is never turned off, in code or by configuration."""

import asyncio
import re
import ssl
from pathlib import Path

from routera_archive.http.client import RouteraClient
from tests.conftest import client_config

CONNECTOR = Path(__file__).resolve().parents[2] / "connector"


def test_the_client_verifies_certificates_and_hostnames() -> None:
    async def contexts() -> list[ssl.SSLContext]:
        config = client_config(base_url="https://api.test", access_token="t", concurrency=32)
        async with RouteraClient(config) as c:
            return [http._transport._pool._ssl_context for http in c._pools]  # type: ignore[attr-defined]

    ssl_contexts = asyncio.run(contexts())

    assert len(ssl_contexts) == 4  # one per connection pool
    for ssl_context in ssl_contexts:
        assert ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert ssl_context.check_hostname is True


def test_no_code_in_the_connector_can_turn_verification_off() -> None:
    pattern = re.compile(r"verify\s*=\s*(False|0|None)|CERT_NONE|check_hostname\s*=\s*False")
    offenders = [
        f"{path.name}:{number}"
        for path in CONNECTOR.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
