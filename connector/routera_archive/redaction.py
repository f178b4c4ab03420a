"""Every secret this process knows, masked in every form it may come back in.

An API may echo what it was sent: a token endpoint's 400 quoting the form (the client secret
form-encoded: `+` as `%2B`, `/` as `%2F`), a 500 quoting the request, a 403 quoting the
headers (`Authorization: Bearer ...`, or Basic: base64 of `id:secret`). So a secret is looked
for raw, form- and percent-encoded (either hex case), JSON- and HTML-escaped, and in base64
(standard and URL-safe) at each of the three alignments it can have inside a longer base64
text, which covers HTTP Basic and any encoded body that holds it.

Process-wide on purpose: a secret must be masked wherever text leaves the process (a log line,
an exception's message, a table, the terminal), and those places do not share a client. A
secret is remembered when a client configuration is built (`http.config.ClientConfig`) and
when a token is issued (`http.auth`); `scrub` is applied where answers are read (the client),
where rows are made (`dataset.rows`), where errors are put on one line (`errors.one_line`) and
where log records are written (`RedactingFilter`).
"""

import base64
import html
import json
import logging
import re
import threading
from urllib.parse import quote, quote_plus

REDACTED = "<redacted>"
# Shorter encoded fragments could match ordinary text.
MIN_FRAGMENT = 8
# A secret shorter than this would mask ordinary words everywhere (a test's token "t"); no
# real credential is that short. The messages that quote an API's words still mask it raw.
MIN_SECRET = 8


def encodings(secret: str) -> set[str]:
    """The forms `secret` may be echoed in (see the module's docstring)."""
    percent = {quote_plus(secret, safe=""), quote(secret, safe=""), quote(secret, safe="/")}
    forms = {
        secret,
        *percent,
        *(_lower_hex(form) for form in percent),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
    }
    raw = secret.encode()
    for prefix in range(3):
        padded = b"\0" * prefix + raw
        first = -(-8 * prefix // 6)  # the first character made of the secret's bits alone
        last = 8 * len(padded) // 6  # past the last one (the rest depends on what follows)
        for encoded in (base64.b64encode(padded), base64.urlsafe_b64encode(padded)):
            forms.add(encoded.decode()[first:last])
    return {form for form in forms if len(form) >= MIN_FRAGMENT}


def _lower_hex(text: str) -> str:
    """Percent-encoding with lower-case hex digits (`%2f`), as some servers write it."""
    return re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), text)


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._forms: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def remember(self, *secrets: str | None) -> None:
        new = {secret for secret in secrets if secret and len(secret) >= MIN_SECRET}
        new -= self._secrets
        if not new:
            return
        with self._lock:
            self._secrets |= new
            forms = set().union(*(encodings(secret) for secret in self._secrets))
            # Longest first, so that a form holding another is masked whole.
            alternatives = tuple(sorted(forms, key=len, reverse=True))
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))
            self._forms = alternatives

    def scrub(self, text: str) -> str:
        """`text` with every form of every remembered secret masked. Applied to every answer
        body: a substring test per form first (about 1 µs each on a 2 KB body), the regular
        expression only when one is there (bench: 500 µs a body for the expression alone)."""
        pattern, forms = self._pattern, self._forms
        if pattern is None or not text or not any(form in text for form in forms):
            return text
        return pattern.sub(REDACTED, text)

    def forget_all(self) -> None:
        """For tests: a process that ran one configuration and goes on with another."""
        with self._lock:
            self._secrets, self._forms, self._pattern = set(), (), None


REDACTOR = Redactor()
remember = REDACTOR.remember
scrub = REDACTOR.scrub


class RedactingFilter(logging.Filter):
    """Masks known secrets in a log record's text (its message with its arguments, and the
    traceback), so that no handler writes one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            cleaned = scrub(formatted)
            if cleaned != formatted:
                record.exc_info, record.exc_text = None, cleaned
        return True
