//! Who is calling: the tenant, workflow run, tool and cost of a call, read from the request's
//! extensions.
//!
//! The values are inserted by code the service trusts (the engine, an authentication layer),
//! never parsed from what a client sent, because they decide whose quota a call uses.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use http::Extensions;

/// The tenant a call is made for. Insert it into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(Arc<str>);

/// The workflow run a call is made from. Required when the policy's scope is `workflow`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowRunId(Arc<str>);

/// The tool called, such as `tools.email.send`. Not needed when the layer names its tool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolName(Arc<str>);

macro_rules! id_type {
    ($name:ident) => {
        impl $name {
            /// Creates the id from its text.
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                $name(id.into())
            }

            /// Returns the id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Returns the id's shared text, cheap to clone.
            pub fn shared(&self) -> &Arc<str> {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(TenantId);
id_type!(WorkflowRunId);
id_type!(ToolName);

/// How many units a call uses: recipients of an email, tokens of an LLM call. 1 when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cost(NonZeroU64);

impl Cost {
    /// The cost of a plain call.
    pub const ONE: Cost = Cost(NonZeroU64::MIN);

    /// Creates a cost; `None` for 0, because every call uses at least one unit.
    pub const fn new(units: u64) -> Option<Cost> {
        match NonZeroU64::new(units) {
            Some(units) => Some(Cost(units)),
            None => None,
        }
    }

    /// Returns the number of units.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl Default for Cost {
    fn default() -> Self {
        Cost::ONE
    }
}

/// A request whose extensions say who is calling.
///
/// Implemented for `http::Request`, `tonic::Request` (with the `tonic` feature) and
/// `http::Extensions` itself; the engine's own request types implement it by returning the
/// extensions they carry.
pub trait CallerIdentity {
    /// Returns the extensions that hold [`TenantId`], [`WorkflowRunId`], [`ToolName`] and
    /// [`Cost`].
    fn extensions(&self) -> &Extensions;
}

impl<B> CallerIdentity for http::Request<B> {
    fn extensions(&self) -> &Extensions {
        self.extensions()
    }
}

#[cfg(feature = "tonic")]
impl<T> CallerIdentity for tonic::Request<T> {
    fn extensions(&self) -> &Extensions {
        self.extensions()
    }
}

impl CallerIdentity for Extensions {
    fn extensions(&self) -> &Extensions {
        self
    }
}

/// The identity of one call, as read from its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant the call is made for.
    pub tenant: TenantId,
    /// The workflow run the call is made from, when the request carries one.
    pub workflow_run: Option<WorkflowRunId>,
    /// The tool called.
    pub tool: ToolName,
    /// The units the call uses.
    pub cost: Cost,
}

impl Caller {
    /// The maximum length of a tenant id, tool name or workflow run id, in bytes. A longer id is an
    /// [`IdentityError::IdTooLong`]: PostgreSQL cannot index a usage row whose ids pass about
    /// 2.7 KB, so such a call could never be counted there.
    pub const MAX_ID_BYTES: usize = 512;

    /// Reads the caller from `extensions`; `fixed_tool`, when given, names the tool instead of a
    /// [`ToolName`] extension.
    pub fn from_extensions(
        extensions: &Extensions,
        fixed_tool: Option<&ToolName>,
    ) -> Result<Caller, IdentityError> {
        CallerRef::from_extensions(extensions, fixed_tool).map(|caller| caller.to_owned())
    }

    /// Borrows the caller's ids.
    pub(crate) fn as_ref(&self) -> CallerRef<'_> {
        CallerRef {
            tenant: &self.tenant,
            workflow_run: self.workflow_run.as_ref(),
            tool: &self.tool,
            cost: self.cost,
        }
    }
}

/// A [`Caller`] whose ids are borrowed from the request: what a call decided at once needs,
/// without touching the ids' reference counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerRef<'a> {
    pub(crate) tenant: &'a TenantId,
    pub(crate) workflow_run: Option<&'a WorkflowRunId>,
    pub(crate) tool: &'a ToolName,
    pub(crate) cost: Cost,
}

impl<'a> CallerRef<'a> {
    pub(crate) fn from_extensions(
        extensions: &'a Extensions,
        fixed_tool: Option<&'a ToolName>,
    ) -> Result<CallerRef<'a>, IdentityError> {
        let tenant = extensions
            .get::<TenantId>()
            .ok_or(IdentityError::MissingTenant)?;
        let tool = match fixed_tool {
            Some(tool) => tool,
            None => extensions
                .get::<ToolName>()
                .ok_or(IdentityError::MissingTool)?,
        };

        let workflow_run = extensions.get::<WorkflowRunId>();
        within_limit("tenant", tenant.as_str())?;
        within_limit("tool name", tool.as_str())?;
        without_nul("tenant", tenant.as_str())?;
        without_nul("tool name", tool.as_str())?;
        if let Some(run) = workflow_run {
            within_limit("workflow run", run.as_str())?;
        }

        Ok(CallerRef {
            tenant,
            workflow_run,
            tool,
            cost: extensions.get::<Cost>().copied().unwrap_or_default(),
        })
    }

    pub(crate) fn to_owned(self) -> Caller {
        Caller {
            tenant: self.tenant.clone(),
            workflow_run: self.workflow_run.cloned(),
            tool: self.tool.clone(),
            cost: self.cost,
        }
    }
}

/// A request that lacks an extension the rate limiter needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No [`TenantId`] extension.
    #[error(
        "the request has no tenant: insert a highway_ratelimit::layer::TenantId into its extensions before the rate limit layer"
    )]
    MissingTenant,
    /// No [`ToolName`] extension and no tool named by the layer.
    #[error(
        "the request has no tool name: insert a highway_ratelimit::layer::ToolName into its extensions, or name the tool with RateLimitBuilder::tool"
    )]
    MissingTool,
    /// The policy counts per workflow run and the request has no [`WorkflowRunId`].
    #[error(
        "the policy of tool {tool:?} counts per workflow run, but the request has no workflow run: insert a highway_ratelimit::layer::WorkflowRunId into its extensions"
    )]
    MissingWorkflowRun {
        /// The tool whose policy needs the workflow run.
        tool: String,
    },
    /// An id is empty.
    #[error(
        "the {id} is empty: callers without one would all share one counter; set the {id} to a non-empty id"
    )]
    EmptyId {
        /// The id: `tenant`, `tool name` or `workflow run`.
        id: &'static str,
    },
    /// A tenant id or tool name contains a NUL character. PostgreSQL's text cannot hold one, so
    /// no stored policy can name such an id, and reading its policy there would fail on every
    /// call.
    #[error(
        "the {id} contains a NUL character, which no policy stored in PostgreSQL can name: remove it from the id"
    )]
    NulInId {
        /// The id: `tenant` or `tool name`.
        id: &'static str,
    },
    /// An id is longer than [`Caller::MAX_ID_BYTES`].
    #[error(
        "the {id} is {length} bytes long, over the limit of {max} bytes: use a shorter id, such as a hash of this one"
    )]
    IdTooLong {
        /// The id: `tenant`, `tool name` or `workflow run`.
        id: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The limit, [`Caller::MAX_ID_BYTES`].
        max: usize,
    },
}

/// Returns `text` when it is not empty and at most [`Caller::MAX_ID_BYTES`] long, and otherwise an
/// error that names it as `id`.
pub(super) fn within_limit<'a>(id: &'static str, text: &'a str) -> Result<&'a str, IdentityError> {
    if text.is_empty() {
        return Err(IdentityError::EmptyId { id });
    }
    if text.len() > Caller::MAX_ID_BYTES {
        return Err(IdentityError::IdTooLong {
            id,
            length: text.len(),
            max: Caller::MAX_ID_BYTES,
        });
    }
    Ok(text)
}

/// Returns an error that names `text` as `id` when it contains a NUL character. Checked whatever
/// the policy source, so that a call is decided alike in process and with PostgreSQL. A workflow
/// run id may contain one, because the store encodes it in the counter's key.
pub(super) fn without_nul(id: &'static str, text: &str) -> Result<(), IdentityError> {
    if text.as_bytes().contains(&0) {
        return Err(IdentityError::NulInId { id });
    }
    Ok(())
}
