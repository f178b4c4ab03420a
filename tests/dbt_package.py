"""The dbt package's analyses (`dbt/analyses/`), made from the shipped audit queries
(`connector/routera_archive/audit/sql/`): the same SQL with each table of the dataset read as a
source of the package (`{{ source('routera_archive', 'archive_log') }}`), so that `dbt compile`
writes them for whichever dataset and warehouse the profile names.
`tests/integration/test_dbt.py` checks the files hold exactly this, and `python -m
tests.dbt_package` writes them again after a shipped query changed.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUDIT_DIR = ROOT / "connector" / "routera_archive" / "audit" / "sql"
DBT_DIR = ROOT / "dbt"
ANALYSES_DIR = DBT_DIR / "analyses"
# The shipped queries name the default dataset: `routera_archive.<table>`.
DATASET_TABLE = re.compile(r"\broutera_archive\.([a-z_]+)\b")


def analysis(name: str) -> str:
    """The analysis of the shipped query `name` (`01_who_archived_what.sql`)."""
    shipped = (AUDIT_DIR / name).read_text(encoding="utf-8")
    body = DATASET_TABLE.sub(r"{{ source('routera_archive', '\1') }}", shipped)
    return (
        f"-- connector/routera_archive/audit/sql/{name}, the dataset's tables read as\n"
        "-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).\n"
        f"{body}"
    )


def analyses() -> dict[str, str]:
    """Every analysis by file name: one per shipped query."""
    return {path.name: analysis(path.name) for path in sorted(AUDIT_DIR.glob("*.sql"))}


if __name__ == "__main__":
    ANALYSES_DIR.mkdir(exist_ok=True)
    for old in ANALYSES_DIR.glob("*.sql"):
        old.unlink()
    for name, text in analyses().items():
        (ANALYSES_DIR / name).write_text(text, encoding="utf-8")
