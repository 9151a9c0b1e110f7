from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from mlops.store import Store
from mlops.store.migrate import HEAD, alembic_config, current_revision
from mlops.store.schema import metadata


def test_head_constant_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_first_use_migrates_and_the_schema_matches_the_tables(store_url: str) -> None:
    store = Store(store_url)
    assert current_revision(store.engine) == HEAD
    engine = create_engine(store_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []
    with store.read() as tx:
        assert tx.change_seq() == 0
    Store(store_url).dispose()  # a second open is a no-op
    store.dispose()
