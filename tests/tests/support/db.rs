//! Looking straight into a test's database.
use sqlx::Row;

/// Every row of every table in the `public` schema of the Postgres database at `url`, as
/// `(table, row::text)`. `bytea` columns come out hex-encoded (`\x...`), so callers searching for
/// a secret should look for its hex form too.
pub async fn dump_postgres(url: &str) -> Vec<(String, String)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to the test database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(&pool)
    .await
    .expect("list the tables");
    assert!(!tables.is_empty(), "the test database has no tables");
    let mut rows = Vec::new();
    for table in tables {
        let texts: Vec<String> = sqlx::query(&format!("SELECT t::text AS row FROM \"{table}\" t"))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("dump {table}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("row"))
            .collect();
        rows.extend(texts.into_iter().map(|text| (table.clone(), text)));
    }
    pool.close().await;
    rows
}

/// Lower-case hex, as Postgres prints `bytea`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
