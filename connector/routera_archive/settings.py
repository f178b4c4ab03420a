"""Constants and defaults in one place, so a reader can see every knob the connector has."""

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.routera.io"
TOKEN_PATH: Final = "/oauth2/token"
CONTACTS_PATH: Final = "/contacts"

PIPELINE_NAME: Final = "routera_archive"
DATASET_NAME: Final = "routera_archive"
# Not `routera_archive.duckdb`: DuckDB names the catalog after the file, and a catalog named like
# the dataset makes every `routera_archive.<table>` ambiguous ("Ambiguous reference to catalog or
# schema"), which fails dlt's loads on dlt 1.31 / duckdb 2.0.
DUCKDB_FILE: Final = "routera_audit.duckdb"
SOURCE_NAME: Final = "routera"
SOURCE_SECTION: Final = "routera"
QUEUE_SCHEMA_NAME: Final = "routera_queue"

QUEUE_TABLE: Final = "archive_queue"
ARCHIVES_TABLE: Final = "contact_archives"
LOG_TABLE: Final = "archive_log"
RUNS_TABLE: Final = "archive_runs"
FIELDS_TABLE: Final = "custom_fields"

# Requests in flight at once. The API's latency, not our CPU, decides throughput: 16 keeps a
# 50 ms API busy at ~300 requests/s while staying polite to an API whose limits are unpublished.
DEFAULT_CONCURRENCY: Final = 16
# Requests per second across the whole run (retries and GETs included). Routera publishes no
# limit; 0 would mean "no limit", which we do not default to for a destructive call.
DEFAULT_RPS: Final = 50.0
# A run refuses to start when more requests than this are pending, unless forced: a queue that
# suddenly holds the whole CRM is far more likely a bad dbt model than an intent.
DEFAULT_MAX_ARCHIVES: Final = 1000
# Requests per load: a crash costs at most this many records' *loading* (never the knowledge:
# the journal and the GET recovery bring them back).
DEFAULT_CHUNK_SIZE: Final = 500

# Connections per httpx pool; a run opens ceil(concurrency / this) pools. httpcore's per-request
# bookkeeping grows with the connections in a pool: with 32 in one pool a bare loop spent 1.9 ms
# of CPU per request at latency 0, with four pools of 8 0.8 ms (bench/RESULTS.md).
HTTP_CONNECTIONS_PER_POOL: Final = 8

# The call worker holds up to this many requests per connection (sent to it, not yet answered):
# about 0.2 s of work at full speed, so a load in the run's process never leaves it idle.
CALL_WORKER_WINDOW_PER_CONNECTION: Final = 4
# The thread that loads chunks runs this much nicer than the rest of the run (Linux): on a busy
# machine the calls get the CPU first. Measured on 2 cores with the sandbox beside the run:
# 560-577 archives/s at 0, 569-593/s at 10 (bench/RESULTS.md).
LOADER_THREAD_NICENESS: Final = 10
# When a run ends early, the worker gets this long to finish (and journal) the calls in flight.
CALL_WORKER_STOP_TIMEOUT_S: Final = 60.0

CONNECT_TIMEOUT_S: Final = 10.0
READ_TIMEOUT_S: Final = 30.0
WRITE_TIMEOUT_S: Final = 30.0
POOL_TIMEOUT_S: Final = 60.0

DEFAULT_MAX_ATTEMPTS: Final = 5
# Total time one call may spend waiting between attempts before it is given up as `failed`.
DEFAULT_MAX_RETRY_WAIT_S: Final = 120.0
BACKOFF_INITIAL_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0

# An OAuth token is renewed this long before `expires_in` runs out, so no call races the expiry.
TOKEN_REFRESH_MARGIN_S: Final = 60.0

# Routera ids are UUIDs or short external keys; anything longer is a data error, not an id.
MAX_CONTACT_ID_LENGTH: Final = 256

# Bodies kept in error messages and logs are cut to this many characters.
MAX_ERROR_BODY_CHARS: Final = 2000
