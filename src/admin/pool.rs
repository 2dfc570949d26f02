use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::AdminError;

/// Creates a connection pool of at most `max_size` connections to the database at `url`
/// (`postgres://user@host/db` or `host=… dbname=…`).
///
/// Connections are opened on first use, so a wrong address shows up at the first query. The
/// connections use no TLS.
pub fn connect_pool(url: &str, max_size: usize) -> Result<Pool, AdminError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|error| {
        AdminError::InvalidConfig(format!(
            "invalid database URL: {error}: expected postgres://USER@HOST:PORT/DATABASE"
        ))
    })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .build()
        .map_err(|error| {
            AdminError::InvalidConfig(format!("cannot build the connection pool: {error}"))
        })
}
