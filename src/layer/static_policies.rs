//! Policies held in memory, for services configured in code and for tests.

use std::collections::HashMap;
use std::sync::RwLock;

use futures_util::future::{self, BoxFuture};

use crate::policy::{Policy, PolicySource};
use crate::store::StoreError;

/// A [`PolicySource`] over policies held in memory.
///
/// After changing a policy of a running layer, call
/// [`RateLimitLayer::invalidate`](super::RateLimitLayer::invalidate) so that the layer stops
/// using its cached copy.
///
/// ```
/// use highway_ratelimit::layer::StaticPolicies;
/// use highway_ratelimit::policy::Policy;
/// use highway_ratelimit::report::Capacity;
///
/// let policies = StaticPolicies::new()
///     .with(Policy::new("default", "tools.email.send", Capacity { per_minute: Some(10), ..Capacity::UNLIMITED }))
///     .with(Policy::new("acme", "tools.email.send", Capacity { per_minute: Some(100), ..Capacity::UNLIMITED }));
/// ```
#[derive(Debug, Default)]
pub struct StaticPolicies {
    policies: RwLock<HashMap<(String, String), Policy>>,
}

impl StaticPolicies {
    /// Creates a source with no policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `policy`, replacing the one of the same tenant and tool.
    pub fn with(self, policy: Policy) -> Self {
        self.insert(policy);
        self
    }

    /// Adds `policy`, replacing and returning the one of the same tenant and tool.
    pub fn insert(&self, policy: Policy) -> Option<Policy> {
        let key = (policy.tenant.clone(), policy.tool.clone());
        self.write().insert(key, policy)
    }

    /// Removes and returns the policy of `tenant` for `tool`.
    pub fn remove(&self, tenant: &str, tool: &str) -> Option<Policy> {
        self.write().remove(&(tenant.to_owned(), tool.to_owned()))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), Policy>> {
        self.policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PolicySource for StaticPolicies {
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        let policies = self
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let policy = policies.get(&(tenant.to_owned(), tool.to_owned())).cloned();
        Box::pin(future::ready(Ok(policy)))
    }

    fn is_immediate(&self) -> bool {
        true
    }
}
