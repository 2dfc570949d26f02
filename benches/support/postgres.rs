//! PostgreSQL connections shared by the store and lease benchmarks.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Returns a pool whose sessions find the original per-window function's table without a
/// schema name, as that function expects.
pub fn original_pool(url: &str, size: usize) -> Pool {
    let mut config: tokio_postgres::Config = url.parse().expect("valid connection string");
    config.options("-c search_path=seed");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .build()
        .expect("pool builds")
}

/// Connects one client outside any pool, for set-up and for reading counters.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!("could not connect to {url}: {error}; set DATABASE_URL to a PostgreSQL server")
        });
    tokio::spawn(connection);
    client
}

/// Returns `url` with its database replaced by `database`, for URLs and key-value strings.
pub fn with_database(url: &str, database: &str) -> String {
    match url.rfind('/') {
        Some(slash) if url.contains("://") && slash > url.find("://").unwrap_or(0) + 2 => {
            let query = url[slash..]
                .find('?')
                .map(|index| &url[slash + index..])
                .unwrap_or("");
            format!("{}/{database}{query}", &url[..slash])
        }
        _ if url.contains("://") => format!("{url}/{database}"),
        _ => format!("{url} dbname={database}"),
    }
}

/// Returns the seconds each case measures: `BENCH_SECONDS`, 3 when unset. Exits with a message
/// when it is not a positive number.
pub fn bench_seconds() -> f64 {
    let Ok(value) = std::env::var("BENCH_SECONDS") else {
        return 3.0;
    };
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => seconds,
        _ => {
            eprintln!("BENCH_SECONDS={value:?} is not a number of seconds such as 3 or 0.5");
            std::process::exit(2);
        }
    }
}
