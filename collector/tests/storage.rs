//! The storage suite against both backends: SQLite in a temp dir, and PostgreSQL started by
//! the harness (Debian `postgresql` binaries; the test fails when they are missing).

use mcpwarden_collector::pg_harness::TestPostgres;
use mcpwarden_collector::store::{self, postgres::PgStore, sqlite::SqliteStore, suite, Store};

#[test]
fn sqlite_passes_the_storage_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let s = SqliteStore::open(&path).expect("open");
    suite::run(&s, &|| Box::new(SqliteStore::open(&path).expect("reopen")));
    assert!(store::open(&format!("sqlite://{}", path.display())).is_ok());
    assert!(store::open("mysql://x").is_err());
}

#[test]
fn postgres_passes_the_storage_suite() {
    let pg = TestPostgres::start().expect("PostgreSQL test server");
    let url = pg.fresh_database("suite").expect("database");
    let s = PgStore::connect(&url).expect("connect");
    suite::run(&s, &|| -> Box<dyn Store> {
        Box::new(PgStore::connect(&url).expect("reconnect"))
    });
}
