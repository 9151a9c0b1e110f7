"""`PostgresSnapshot`: the tables of one schema of a PostgreSQL database.

Snapshot: one `REPEATABLE READ READ ONLY` transaction (one MVCC snapshot, as pg_dump takes)
that holds ACCESS SHARE locks on the schema's tables (DDL on them waits; reads and writes do
not), records each table's definition and writes its rows with
`COPY (SELECT * FROM t ORDER BY <primary key>) TO STDOUT` into a file. Nobody is
disconnected.

Checksum: SHA-256 of the canonical JSON of, per table, its definition (columns with types,
defaults, NOT NULL, collation and identity; constraints; other indexes) and the SHA-256 of
that ordered COPY text (the snapshot's file has exactly those bytes). Sessions run with
fixed output settings (UTC, ISO dates, `extra_float_digits = 1`, hex bytea).

Restore: one transaction (see docs/snapshots.md for the method, the locks and why):
1. the snapshot's rows go into staging tables (temporary ones for tables whose definition
   is unchanged, new tables under temporary names in the schema for the others);
2. `LOCK TABLE ... IN EXCLUSIVE MODE` on the live tables: writers wait, readers do not;
3. the writes since the snapshot are counted (row by row, by primary key);
4. tables with an unchanged definition get back only the rows that differ (DELETE,
   UPDATE, INSERT); readers keep seeing the old rows (MVCC) until COMMIT;
5. rows are verified; tables whose definition changed, or that the release added, are
   swapped (DROP, RENAME) under ACCESS EXCLUSIVE locks held only for this last step, which
   readers of those tables wait for;
6. definitions are verified, then COMMIT. A crash before COMMIT undoes everything.

Modules: `session` (URL, connection, locks), `catalog` (definitions and the checksum),
`copy` (rows out to files and back into staging tables), `diff` (counting changes),
`sequences` and `restore` (putting a snapshot back), `driver` (the class composing them).
"""

from mlops.snapshots.postgresql.catalog import Catalog, compose_checksum, read_catalog
from mlops.snapshots.postgresql.driver import COUNTED_AS, PostgresSnapshot
from mlops.snapshots.postgresql.session import SESSION_SETTINGS, split_location

__all__ = [
    "COUNTED_AS",
    "SESSION_SETTINGS",
    "Catalog",
    "PostgresSnapshot",
    "compose_checksum",
    "read_catalog",
    "split_location",
]
