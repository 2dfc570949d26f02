//! Calendar-aware rate limiting for the tool calls of Highway workflows.
//!
//! A [`layer::RateLimitLayer`] wraps any tool [`tower::Service`]. For each call it reads who is
//! calling from the request's extensions, checks an availability report computed from a
//! TaskJuggler-style schedule (business hours, holidays, capacity by weekday or time slot), charges
//! the call to every limited window (minute to month) in one atomic step, and only then calls the
//! tool.
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
