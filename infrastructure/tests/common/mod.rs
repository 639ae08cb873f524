//! What the store tests share: a fresh SQLite store, and a fresh Postgres database when the test
//! services are up (`HERALD_TEST_DATABASE_URL`, set by scripts/test.sh).
use herald_infrastructure::db::{create_scratch_database, Db};

/// A fresh SQLite store named after `test`, then a fresh Postgres database when available.
pub async fn stores(test: &str) -> Vec<Db> {
    let path = std::env::temp_dir().join(format!(
        "herald_{test}_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let mut stores = vec![Db::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap()];
    if let Ok(admin) = std::env::var("HERALD_TEST_DATABASE_URL") {
        let (url, _) = create_scratch_database(&admin, "herald_test")
            .await
            .expect("create a test database");
        stores.push(Db::connect(&url, 4).await.unwrap());
    }
    stores
}
