"""Shared plumbing of the ClickHouse schema tests: the migration files and how they are applied (the same
rules as the Rust runner in aggregator/sinks/src/clickhouse/migrations.rs), the analyst queries parsed out of
docs/analytics.md, and two backends that run SQL and return TabSeparated text: chdb (ClickHouse 26.x in
process) and a ClickHouse server over HTTP (the local 18.16)."""

from __future__ import annotations

import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO / "clickhouse" / "migrations"
ANALYTICS_DOC = REPO / "docs" / "analytics.md"
TTL_TEMPLATE = REPO / "clickhouse" / "retention_ttl.sql"
RUST_SINK = REPO / "aggregator" / "sinks" / "src" / "clickhouse" / "migrations.rs"


def modern_since() -> tuple[int, int]:
    """The first server version that gets the modern overlays, read from the Rust runner (one source)."""
    m = re.search(r"MODERN_SINCE: \(u32, u32\) = \((\d+), (\d+)\);", RUST_SINK.read_text())
    assert m, "MODERN_SINCE not found in the ClickHouse sink"
    return int(m.group(1)), int(m.group(2))


def parse_version(text: str) -> tuple[int, int]:
    parts = text.strip().split(".")
    return int(parts[0]), int(parts[1])


def statements(sql: str) -> list[str]:
    """Splits a migration on ';' at line ends and drops comment lines, like the Rust runner."""
    out = []
    for chunk in sql.split(";\n"):
        body = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("--"))
        body = body.strip().rstrip(";").strip()
        if body:
            out.append(body)
    return out


def migrations() -> list[tuple[int, str, Path, Path | None]]:
    """(version, name, base file, modern overlay or None), in version order."""
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.endswith(".modern.sql"):
            continue
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        assert m, f"unexpected migration file name {path.name}"
        overlay = path.with_name(path.name[: -len(".sql")] + ".modern.sql")
        out.append((int(m.group(1)), m.group(2), path, overlay if overlay.exists() else None))
    return out


def analyst_queries() -> dict[str, str]:
    """name -> SQL of every `<!-- query: name -->` block of docs/analytics.md."""
    text = ANALYTICS_DOC.read_text()
    found = re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, re.S)
    queries = dict(found)
    assert len(queries) == len(found), "duplicate query names in docs/analytics.md"
    return queries


def ttl_statement(table: str, column: str, months: int) -> str:
    template = TTL_TEMPLATE.read_text()
    body = statements(template)
    assert len(body) == 1, "retention_ttl.sql holds one statement"
    return body[0].replace("{table}", table).replace("{column}", column).replace("{months}", str(months))


class QueryError(Exception):
    pass


class Backend:
    """Runs SQL in one database and returns TabSeparated text."""

    name = "?"

    def query(self, sql: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def version(self) -> tuple[int, int]:
        return parse_version(self.query("SELECT version()"))

    def is_modern(self) -> bool:
        return self.version() >= modern_since()

    def migrate(self, since: int = 1) -> list[str]:
        """Applies every base migration from version `since` on and, on a modern server, its overlay.
        Returns what ran."""
        ran = []
        modern = self.is_modern()
        for version, name, base, overlay in migrations():
            if version < since:
                continue
            for statement in statements(base.read_text()):
                self.query(statement)
            ran.append(f"{version}:{name}")
            if modern and overlay is not None:
                for statement in statements(overlay.read_text()):
                    self.query(statement)
                ran.append(f"{version}:{name}.modern")
        return ran

    def rows(self, sql: str) -> list[tuple[str, ...]]:
        text = self.query(sql)
        return [tuple(line.split("\t")) for line in text.splitlines()]

    def close(self) -> None:
        pass


class ChdbBackend(Backend):
    name = "chdb"

    def __init__(self, database: str) -> None:
        from chdb import session

        self._dir = tempfile.TemporaryDirectory(prefix="sluice-chdb-")
        self._session = session.Session(self._dir.name)
        self._session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._session.query(f"USE {database}")

    def query(self, sql: str) -> str:
        try:
            result = self._session.query(sql, "TabSeparated")
        except Exception as e:  # chdb raises its own error type
            raise QueryError(f"{e}\nin:\n{sql}") from e
        return result.bytes().decode() if result is not None else ""

    def close(self) -> None:
        self._session.close()
        self._dir.cleanup()


class HttpBackend(Backend):
    name = "http"

    def __init__(self, url: str, database: str) -> None:
        self._url = url.rstrip("/")
        self._database = database
        self._post(f"CREATE DATABASE IF NOT EXISTS {database}", with_database=False)

    def _post(self, sql: str, with_database: bool = True) -> str:
        params = {"default_format": "TabSeparated"}
        if with_database:
            params["database"] = self._database
        url = f"{self._url}/?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=sql.encode()), timeout=60) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise QueryError(f"{e.read().decode()}\nin:\n{sql}") from e

    def query(self, sql: str) -> str:
        return self._post(sql)

    def close(self) -> None:
        self._post(f"DROP DATABASE IF EXISTS {self._database}", with_database=False)


def server_reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/ping", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
