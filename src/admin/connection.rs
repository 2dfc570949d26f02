//! The pooled connection of one admin operation.

use std::ops::{Deref, DerefMut};

use deadpool_postgres::{Object, Pool, PoolError};

/// A pooled connection for one admin operation, which goes back to the pool only through
/// [`release`](Self::release), once the operation has ended.
///
/// Dropped otherwise, when its caller stopped waiting (an HTTP client that disconnected, a
/// timeout) or the operation failed, the connection is closed. An abandoned statement may still
/// run or wait for a lock on it, and the pool may be the token store's (`Admin::from_store`),
/// whose next consume to get the connection would wait behind that statement.
pub(super) struct AdminConnection(Option<Object>);

impl AdminConnection {
    /// Gets a connection from `pool`.
    pub(super) async fn get(pool: &Pool) -> Result<Self, PoolError> {
        Ok(AdminConnection(Some(pool.get().await?)))
    }

    /// Returns the connection to the pool.
    pub(super) fn release(mut self) {
        self.0.take();
    }
}

impl Deref for AdminConnection {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.0
            .as_ref()
            .expect("a connection holds its client until it is released or dropped")
    }
}

impl DerefMut for AdminConnection {
    fn deref_mut(&mut self) -> &mut Object {
        self.0
            .as_mut()
            .expect("a connection holds its client until it is released or dropped")
    }
}

impl Drop for AdminConnection {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            tracing::debug!("an admin operation was abandoned or failed; closing its connection");
            drop(Object::take(object));
        }
    }
}
