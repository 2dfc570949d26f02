use crate::report::ReportError;
use crate::schedule::ScheduleError;
use crate::store::StoreError;
use crate::store::postgres::database_error;

/// The error of an admin operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A field of the limit is invalid; the message names the field and the accepted values.
    #[error("{0}")]
    InvalidLimit(String),
    /// The page of a listing is invalid: a page size out of range. The message names the value
    /// and the accepted range.
    #[error("{0}")]
    InvalidPage(String),
    /// The schedule does not parse; every diagnostic reads `FILE:LINE:COL: message`.
    #[error("invalid schedule:\n{0}")]
    InvalidSchedule(#[from] ScheduleError),
    /// The schedule parses, but no report can be rendered from it.
    #[error("cannot render the availability report: {0}")]
    Report(#[from] ReportError),
    /// No limit is stored for the tenant and tool.
    #[error("no limit for tenant {tenant:?} and tool {tool:?}: create one with `limits set`")]
    NotFound {
        /// The tenant id.
        tenant: String,
        /// The tool name.
        tool: String,
    },
    /// A stored row cannot be read back: a value that this version does not understand.
    #[error(
        "invalid stored limit for tenant {tenant:?} and tool {tool:?}: {message}; write it again with `limits set`"
    )]
    InvalidRow {
        /// The tenant id of the row.
        tenant: String,
        /// The tool name of the row.
        tool: String,
        /// The problem found in the row.
        message: String,
    },
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No connection could be taken from the pool.
    #[error("cannot connect to PostgreSQL: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A query failed.
    #[error("PostgreSQL query failed: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl AdminError {
    pub(crate) fn invalid_row(tenant: &str, tool: &str, message: impl Into<String>) -> Self {
        AdminError::InvalidRow {
            tenant: tenant.to_owned(),
            tool: tool.to_owned(),
            message: message.into(),
        }
    }
}

impl From<AdminError> for StoreError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Store(error) => error,
            // A server error becomes its severity, message and SQLSTATE, as in a failed store
            // call. The layer prints the error in HTTP bodies and gRPC messages, and a server
            // error's DETAIL and HINT can carry row values.
            AdminError::Database(error) if error.as_db_error().is_some() => database_error(error),
            other => StoreError::Unavailable(Box::new(other)),
        }
    }
}
