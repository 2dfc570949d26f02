//! Calendar-aware rate limiting for the tool calls of Highway workflows.
//!
//! A [`layer::RateLimitLayer`] wraps any tool [`tower::Service`]. For each call it reads who is
//! calling from the request's extensions, checks an availability report computed from a
//! TaskJuggler-style schedule (business hours, holidays, capacity by weekday or time slot), charges
//! the call to every limited window (minute to month) in one atomic step, and only then calls the
//! tool.
//!
//! A tool with business hours from a schedule, counted in process:
//!
//! ```
//! use std::sync::Arc;
//!
//! use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies, TenantId};
//! use highway_ratelimit::policy::{Policy, PolicySchedule};
//! use highway_ratelimit::report::ReportOptions;
//! use highway_ratelimit::store::MemoryStore;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let definition = r#"
//!     project mail "Mail" 2026-01-01 +1y { timezone "Europe/Paris" }
//!     resource smtp "SMTP relay" {
//!       workinghours mon - fri 08:00 - 19:00
//!       limits { dailymax 500  minutelymax 20 }
//!     }
//!     vacation "Bastille Day" 2026-07-14
//! "#;
//! let options = ReportOptions::new(chrono::Utc::now());
//! let schedule = PolicySchedule::render("mail.tjp", definition, &options)?;
//! let policies = StaticPolicies::new().with(Policy::scheduled("default", "tools.email.send", schedule));
//! let limits = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
//!     .tool("tools.email.send")
//!     .build();
//! let send_email = ServiceBuilder::new()
//!     .layer(limits)
//!     .service_fn(|_email: http::Request<String>| async { Ok::<_, std::io::Error>("sent") });
//!
//! let mut email = http::Request::new("Bonjour".to_owned());
//! email.extensions_mut().insert(TenantId::new("acme"));
//! match send_email.oneshot(email).await {
//!     Ok(_) => println!("sent"),
//!     Err(RateLimitError::Rejected(rejection)) => println!("not now: {rejection}"),
//!     Err(RateLimitError::Service(error)) => return Err(error.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The modules follow a call's path:
//! - [`schedule`]: the `.tjp` schedule language, parsed into a typed model.
//! - [`calendar`]: working time and capacity computed from the model.
//! - [`report`]: the availability report and its O(log n) queries.
//! - [`window`]: the calendar windows calls are counted in.
//! - [`store`]: token stores, in process and in PostgreSQL.
//! - [`policy`]: the limits of a tool for a tenant.
//! - [`layer`]: the Tower middleware, with [`clock`] for the instant it decides at.
//! - `http` and `grpc`: rejections as HTTP 429 responses (feature `axum`) and gRPC statuses
//!   (feature `tonic`).
//! - [`admin`]: managing limits, propagating changes, refreshing reports, cleaning up usage.

pub mod admin;
pub mod calendar;
#[doc(hidden)]
pub mod cli;
pub mod clock;
mod error_chain;
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "axum")]
pub mod http;
pub mod layer;
pub mod policy;
pub mod report;
pub mod schedule;
pub mod store;
pub mod window;

/// Compiles and runs the code sample of README.md with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
