//! The shared PostgreSQL harness of the integration tests: a fresh database per test.
//!
//! Use it from any `tests/*.rs` with `mod common;`. [`TestDatabase::new`] creates a database with a
//! unique name on the server named by `DATABASE_URL`. When that is unset, it uses a throwaway server
//! started once per test process from the local PostgreSQL binaries (`initdb`, `pg_ctl`), which
//! stops when the process exits.
#![allow(dead_code)]

mod server;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use highway_ratelimit::store::postgres::{MIGRATIONS, PostgresConfig, PostgresStore};
use tokio_postgres::{Client, NoTls, Transaction};

pub use self::server::ThrowawayServer;

/// A database of its own for one test, dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    ///
    /// # Panics
    ///
    /// When no server can be had: `DATABASE_URL` is unset and the PostgreSQL server binaries are
    /// missing, or the server rejects `CREATE DATABASE`. The message names what to install or set.
    pub async fn new() -> TestDatabase {
        let admin_url = server_url().unwrap_or_else(|message| panic!("{message}"));
        Self::on_server(admin_url).await
    }

    /// Creates an empty database with a unique name on the server at `admin_url`.
    pub async fn on_server(admin_url: &str) -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "highway_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );

        let admin = connect(admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| {
                panic!("CREATE DATABASE {name} failed on {admin_url}: {error}")
            });

        TestDatabase {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        }
    }

    /// Returns the connection string of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a plain connection to this database, for setup and assertions.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Returns the number of other sessions of this database that wait for a lock.
    pub async fn lock_waiters(&self, client: &Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
                &[&self.name],
            )
            .await
            .unwrap_or_else(|error| {
                panic!("could not read the lock waiters of {}: {error}", self.name)
            })
            .get(0)
    }

    /// Begins a transaction on `client` that locks every usage row of this database, so that
    /// statements on those rows wait until it ends.
    pub async fn lock_usage_rows<'a>(&self, client: &'a mut Client) -> Transaction<'a> {
        let transaction = client.transaction().await.unwrap();
        transaction
            .execute(
                "SELECT 1 FROM highway.tool_rate_limit_usage FOR UPDATE",
                &[],
            )
            .await
            .unwrap_or_else(|error| {
                panic!("could not lock the usage rows of {}: {error}", self.name)
            });
        transaction
    }

    /// Returns the process id and start of each session that a store opened in this database,
    /// known by its default `application_name`, in the order of their process ids.
    pub async fn store_sessions(&self, client: &Client) -> Vec<(i32, std::time::SystemTime)> {
        client
            .query(
                "SELECT pid, backend_start FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = 'highway-ratelimit'
                 ORDER BY pid",
                &[&self.name],
            )
            .await
            .unwrap_or_else(|error| panic!("could not read the sessions of {}: {error}", self.name))
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Waits until at least `count` other sessions of this database wait for a lock, and panics
    /// after 10 s.
    pub async fn wait_for_lock_waiters(&self, count: i64) {
        let client = self.client().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.lock_waiters(&client).await < count {
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {count} statements waited for a lock within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Applies the migrations up to `version` and records them, as a database of an earlier
    /// release has them, and returns the connection that applied them.
    pub async fn migrate_to(&self, version: i32) -> Client {
        let client = self.client().await;
        client
            .batch_execute(
                "CREATE SCHEMA highway;
                 CREATE TABLE highway.ratelimit_migrations (
                     version INT PRIMARY KEY,
                     name TEXT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 );",
            )
            .await
            .unwrap_or_else(|error| panic!("creating the migrations table failed: {error}"));
        for migration in MIGRATIONS
            .iter()
            .filter(|migration| migration.version <= version)
        {
            client
                .batch_execute(migration.sql)
                .await
                .unwrap_or_else(|error| panic!("migration {} failed: {error}", migration.name));
            client
                .execute(
                    "INSERT INTO highway.ratelimit_migrations (version, name) VALUES ($1, $2)",
                    &[&migration.version, &migration.name],
                )
                .await
                .unwrap_or_else(|error| {
                    panic!("recording migration {} failed: {error}", migration.name)
                });
        }
        client
    }

    /// Returns a store on this database with the migrations applied.
    pub async fn store(&self) -> PostgresStore {
        self.store_with(|config| config).await
    }

    /// Returns a store on this database, with settings changed by `configure`, with the
    /// migrations applied.
    pub async fn store_with(
        &self,
        configure: impl FnOnce(PostgresConfig) -> PostgresConfig,
    ) -> PostgresStore {
        let store = PostgresStore::new(configure(PostgresConfig::new(self.url.clone())))
            .expect("the test database's connection string is valid");
        store
            .migrate()
            .await
            .expect("migrations apply to an empty database");
        store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();

        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own. A failure only leaves a database behind.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!(
                "could not drop test database {}; drop it by hand",
                self.name
            );
        }
    }
}

/// Returns the connection string of the server the tests use: `DATABASE_URL`, else the throwaway
/// server of this process, started on first use.
pub fn server_url() -> Result<&'static str, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => ThrowawayServer::start_for_process().map(|server| server.url()),
    })
    .as_ref()
    .map(String::as_str)
    .map_err(String::clone)
}

/// Connects to `url`, panicking with the URL and the error when it fails.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("could not connect to {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// Returns `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        // A key=value connection string: a later key overrides an earlier one.
        return format!("{url} dbname={database}");
    };
    let scheme = &url[..url.len() - rest.len()];
    let (before_query, query) = match rest.find('?') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    format!("{scheme}{authority}/{database}{query}")
}

/// Background load for fault tests: one task locks every usage row for 20 ms at a time, and
/// another interrupts the store's active statements every 7 ms with `interrupt`
/// (`pg_cancel_backend` or `pg_terminate_backend`; `statement_timeout` interrupts nothing, and
/// leaves it to the store's statement timeout).
pub struct Interruptions {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    locker: tokio::task::JoinHandle<()>,
    interrupter: tokio::task::JoinHandle<i64>,
}

impl Interruptions {
    /// Starts both tasks on `database`, locking the rows through `holder`.
    pub async fn start(database: &TestDatabase, holder: Client, interrupt: &'static str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let locker = tokio::spawn({
            let stop = stop.clone();
            async move {
                while !stop.load(Ordering::Relaxed) {
                    holder
                        .batch_execute(
                            "BEGIN; SELECT 1 FROM highway.tool_rate_limit_usage FOR UPDATE",
                        )
                        .await
                        .unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    holder.batch_execute("COMMIT").await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        });
        let name = database.name().to_owned();
        let client = database.client().await;
        let interrupter = tokio::spawn({
            let stop = stop.clone();
            async move {
                if interrupt == "statement_timeout" {
                    return 0;
                }
                let sql = format!(
                    "SELECT count(*) FILTER (WHERE {interrupt}(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND application_name = 'highway-ratelimit'
                         AND state = 'active'"
                );
                let mut interrupted = 0_i64;
                while !stop.load(Ordering::Relaxed) {
                    let row = client.query_one(&sql, &[&name]).await.unwrap();
                    interrupted += row.get::<_, i64>(0);
                    tokio::time::sleep(std::time::Duration::from_millis(7)).await;
                }
                interrupted
            }
        });
        Interruptions {
            stop,
            locker,
            interrupter,
        }
    }

    /// Stops both tasks and returns the statements interrupted.
    pub async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        let interrupted = self.interrupter.await.unwrap();
        self.locker.await.unwrap();
        interrupted
    }
}
