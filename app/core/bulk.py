"""Writing many new rows at once, in the session's transaction.

psycopg 3 runs an ``executemany`` INSERT as one statement a row (pipelined): 40–90 µs a row
on a province's imports and allocations. ``COPY`` writes the same rows with the same checks
(constraints, unique keys, foreign keys, triggers) for a fraction of that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from psycopg import Error as PsycopgError
from psycopg import sql
from psycopg.types.json import Json
from sqlalchemy import JSON, Table, TypeDecorator, insert
from sqlalchemy.exc import DBAPIError

from app.extensions import db


def bulk_insert(
    table: Table, rows: Sequence[Mapping[str, object]], into: str | None = None
) -> None:
    """Insert these rows (dicts of column name -> value). Columns that no row gives take their
    defaults, as with ``insert()``; one that some rows give is NULL in the others. A broken
    constraint raises SQLAlchemy's ``IntegrityError``, as an INSERT would. ``into``
    (PostgreSQL): another table with these columns, such as a temporary one."""
    if not rows:
        return
    db.session.flush()  # rows these may refer to
    connection = db.session.connection()
    names = sorted(set().union(*rows))
    unknown = set(names) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    if connection.dialect.name != "postgresql":
        # One shape for all (an executemany takes its columns from the first row); NULLs
        # rendered, so the rows stay one batch.
        connection.execute(
            insert(table).execution_options(render_nulls=True),
            [{name: row.get(name) for name in names} for row in rows],
        )
        return
    defaults = _defaults(table, names)
    columns = [table.c[name] for name in names] + [column for column, _ in defaults]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(into or table.name),
        sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
    )
    adapters = [_adapter(column, connection.dialect) for column in columns]
    adapted = [(i, adapt) for i, adapt in enumerate(adapters) if adapt is not None]
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row.get(name) for name in names]
                values += [make() for _, make in defaults]
                for i, adapt in adapted:
                    if values[i] is not None:
                        values[i] = adapt(values[i])
                copy.write_row(values)
    except PsycopgError as error:
        raise DBAPIError.instance(statement.as_string(driver), None, error, PsycopgError) from error


def _defaults(table: Table, given: Iterable[str]) -> list[tuple]:
    """(column, maker) for the columns left out that have a Python-side default (COPY applies
    only the server's)."""
    found = []
    for column in table.c:
        if column.name in given or column.default is None:
            continue
        default = column.default
        if default.is_scalar:
            found.append((column, lambda value=default.arg: value))
        elif default.is_callable:
            found.append((column, lambda make=default.arg: make(None)))
        else:
            raise ValueError(f"{table.name}.{column.name}: a SQL default cannot be copied")
    return found


def _adapter(column, dialect):
    """What a value of this column needs before COPY: our type decorators' bind step (UTC
    timestamps), JSON wrapped as JSON."""
    kind = column.type
    if isinstance(kind, TypeDecorator):
        return lambda value: kind.process_bind_param(value, dialect)
    if isinstance(kind, JSON):
        return Json
    return None
