use std::sync::Arc;

use tower_layer::Layer;

use super::config::RateLimitBuilder;
use super::limiter::Limiter;
use super::service::RateLimit;
use crate::policy::PolicySource;
use crate::store::TokenStore;

/// Applies calendar-aware rate limits to the calls of a service.
///
/// Every service this layer makes shares one limiter: its policy and report caches and its
/// token store. Clones of the layer share it too.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl RateLimitLayer {
    /// Starts a layer that reads policies from `policies` and counts calls in `store`.
    pub fn builder(
        policies: Arc<dyn PolicySource>,
        store: Arc<dyn TokenStore>,
    ) -> RateLimitBuilder {
        RateLimitBuilder::new(policies, store)
    }

    pub(crate) fn from_limiter(limiter: Arc<Limiter>) -> Self {
        RateLimitLayer { limiter }
    }

    /// Drops the cached policy and report of `tool` for `tenant`, so that the next call reads
    /// them again. For the default tenant, drops the entries of every tenant that used its
    /// policy. Call it when the admin side reports a change.
    pub fn invalidate(&self, tenant: &str, tool: &str) {
        self.limiter.invalidate(tenant, tool);
    }

    /// Drops every cached policy and report.
    pub fn invalidate_all(&self) {
        self.limiter.invalidate_all();
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_limiter(inner, self.limiter.clone())
    }
}
