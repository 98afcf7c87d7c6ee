//! A throw-away PostgreSQL database per test.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// Admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("CAIRN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn admin() -> PgConnection {
    let url = admin_url();
    let options = PgConnectOptions::from_str(&url).expect("CAIRN_TEST_PG_URL is a valid URL");
    options.connect().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at CAIRN_TEST_PG_URL ({}:{}): {e}. \
             Start it (scripts/test.sh does) or point CAIRN_TEST_PG_URL at a server.",
            options.get_host(),
            options.get_port()
        )
    })
}

/// A database that exists from `create` until drop.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Creates an empty database with a unique `cairn_test_` name.
    pub async fn create() -> Self {
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
        // The admin URL with the database swapped.
        let base = admin_url();
        let url = match base.rsplit_once('/') {
            Some((head, tail)) => {
                let query = tail.split_once('?').map(|(_, q)| format!("?{q}"));
                format!("{head}/{name}{}", query.unwrap_or_default())
            }
            None => base,
        };
        Self { name, url }
    }

    /// Connection URL of this database.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on async work: use a
        // short-lived runtime on its own thread.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = admin().await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
