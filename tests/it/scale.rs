//! Speed at a million members, as far as tests can show it (the figures are bench/million.sh's).

use crate::harness;

// ---------------------------------------------------------------- statement timeout

#[tokio::test]
async fn pool_connections_carry_the_configured_statement_timeout_and_migrations_do_not() {
    let (_pool, opts) = harness::fresh_db().await;
    let mut config = shoal::Config::defaults();
    assert_eq!(config.database.statement_timeout_ms, 25_000, "the default");
    assert!(config.database.statement_timeout_ms < config.http.request_timeout_secs * 1000);
    config.database.url = harness::url_of(&opts);
    config.database.statement_timeout_ms = 300;
    config.database.max_connections = 2;
    let db = shoal::db::Database::open(&config).await.expect("open");

    let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&db.pool).await.unwrap();
    assert_eq!(shown, "300ms");
    let err = sqlx::query("SELECT pg_sleep(3)").execute(&db.pool).await.expect_err("cancelled");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {err}");

    // Migrations lift the timeout for themselves and put it back.
    shoal::db::migrate(&db.pool).await.expect("migrate");
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(db.pool.acquire().await.unwrap());
    }
    for conn in &mut conns {
        let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&mut **conn).await.unwrap();
        assert_eq!(shown, "300ms");
    }
    drop(conns);
    db.close().await;
}
