//! The admin API as JSON over HTTP, for axum (cargo feature `admin-router`).
//!
//! | method and path                   | does                                   |
//! |-----------------------------------|----------------------------------------|
//! | `GET /limits[?tenant=T]`          | lists limits, of one tenant if given   |
//! | `PUT /limits`                     | creates (201, with `Location`) or replaces (200) the [`LimitSpec`] in the body |
//! | `GET /limits/{tenant}/{tool}`     | returns one limit                      |
//! | `DELETE /limits/{tenant}/{tool}`  | deletes one limit (204)                |
//! | `GET /usage/{tenant}/{tool}[?workflow=RUN&page_size=N&after=CURSOR]` | returns a page of the current counters |
//! | `POST /reports/preview`           | renders a schedule's report without storing it |
//!
//! Every request needs `Authorization: Bearer TOKEN` (the scheme's name in any case). Without
//! it, or with another token, the response is `401 Unauthorized` and nothing is read or written.
//! Errors are `{"error": "message"}`, with these statuses:
//!
//! - 400: invalid input, such as a malformed body, an unknown query parameter or a usage cursor
//!   that no page returned;
//! - 404: no such limit, or no such path;
//! - 405: a method the path does not accept, with the `Allow` field listing those it does;
//! - 413: a body over the size limit, 2 MB by default;
//! - 415: a body without `Content-Type: application/json`;
//! - 503: the database is unavailable.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use highway_ratelimit::admin::{Admin, router::admin_router};
//! use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
//!
//! let store = PostgresStore::new(PostgresConfig::new("postgres://postgres@127.0.0.1/highway"))?;
//! let admin = Admin::from_store(&store);
//! let app = axum::Router::new().nest("/admin", admin_router(admin, std::env::var("ADMIN_TOKEN")?));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::render::off_runtime;
use super::{
    Admin, AdminError, DEFAULT_USAGE_PAGE_SIZE, HorizonStart, LimitSpec, UsageCursor, UsageQuery,
};
use crate::error_chain::ErrorChain;
use crate::report::ReportError;

struct AdminState {
    admin: Admin,
    token: Vec<u8>,
}

/// Returns the router of the admin API, accepting requests that carry `Authorization: Bearer
/// {token}`.
///
/// The router has a fallback of its own for the JSON 404 above, so mount it under a prefix with
/// `Router::nest`, as in the module's example. axum 0.8's `Router::merge` panics when both routers
/// have a fallback, and an application without one would get the admin 404 for its own unknown
/// paths.
///
/// The token is compared in constant time. Whitespace around it is trimmed, because HTTP strips
/// it from field values, so that a token read with a trailing newline still matches. An empty
/// token rejects every request.
pub fn admin_router(admin: Admin, token: impl Into<String>) -> Router {
    let token = token.into();
    let trimmed = token.trim();
    if trimmed.len() != token.len() {
        tracing::warn!(
            "the admin token has leading or trailing whitespace, which an Authorization field \
             cannot carry, so the router compares the token without it"
        );
    }
    if trimmed.is_empty() {
        tracing::warn!("the admin token is empty, so the admin router rejects every request");
    }
    let state = Arc::new(AdminState {
        admin,
        token: trimmed.as_bytes().to_vec(),
    });
    Router::new()
        .route("/limits", get(list_limits).put(put_limit))
        .route(
            "/limits/{tenant}/{tool}",
            get(get_limit).delete(delete_limit),
        )
        .route("/usage/{tenant}/{tool}", get(usage))
        .route("/reports/preview", post(preview))
        // Set before `route_layer`, so that the token check wraps it too: a request with a
        // method the path lacks needs the token, like every other request to a known path.
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .fallback(not_found)
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| bearer_credentials(value.as_bytes()));
    match presented {
        Some(presented) if token_matches(&state.token, presented) => next.run(request).await,
        _ => {
            tracing::warn!(path = %request.uri().path(), "admin request without a valid bearer token");
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token".into(),
            );
            // RFC 6750, section 3: no error code when no bearer token was sent.
            let challenge = if presented.is_some() {
                "Bearer error=\"invalid_token\""
            } else {
                "Bearer"
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
            );
            response
        }
    }
}

/// Returns the token of an `Authorization: Bearer TOKEN` value. The scheme's name is
/// case-insensitive in HTTP, and one or more spaces separate it from the token.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(b"Bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest
        .iter()
        .position(|&byte| byte != b' ')
        .unwrap_or(rest.len());
    Some(&rest[start..])
}

/// Compares in a time that depends only on the expected token's length.
fn token_matches(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let same_length = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    let padded: Vec<u8> = (0..expected.len())
        .map(|i| presented.get(i).copied().unwrap_or(0))
        .collect();
    bool::from(same_length & expected.ct_eq(&padded))
}

/// The query of `GET /limits`. An unknown parameter is an error, so that a misspelled filter
/// does not list every tenant's limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFilter {
    tenant: Option<String>,
}

async fn list_limits(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<TenantFilter>, QueryRejection>,
) -> Response {
    let Query(filter) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid_query(rejection),
    };
    respond(
        state.admin.list(filter.tenant.as_deref()).await,
        StatusCode::OK,
    )
}

async fn put_limit(
    State(state): State<Arc<AdminState>>,
    OriginalUri(uri): OriginalUri,
    body: Result<Json<LimitSpec>, JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(rejection) if is_stored_limit_body(&rejection) => {
            let message = format!(
                "invalid request body: {}; the body is a LimitSpec, not the stored limit that GET \
                 returns: leave out created_at and updated_at, and give schedule as the .tjp text \
                 with resource beside it",
                rejection.body_text()
            );
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        Err(rejection) => return invalid_body(rejection),
    };
    let mut outcome = match state.admin.upsert(&spec).await {
        Ok(outcome) => outcome,
        Err(error) => return admin_error_response(error),
    };
    // `PUT` replaces the whole limit, so a body meant to change only `fail_open`, say, drops
    // the limits.
    if spec.admits_every_call() {
        outcome.warnings.push(format!(
            "the limit of tenant {:?} for tool {:?} has no \"per_minute\", \"per_hour\", \
             \"per_day\" or \"schedule\", so it admits every call without counting it",
            spec.tenant, spec.tool
        ));
    }
    cap_messages(&mut outcome.warnings, "warnings");
    if !outcome.created {
        return (StatusCode::OK, Json(outcome)).into_response();
    }
    // The path of `GET /limits/{tenant}/{tool}` as the client sent this request's, prefix
    // included.
    let location = format!(
        "{}/{}/{}",
        uri.path().trim_end_matches('/'),
        encode_path_segment(&spec.tenant),
        encode_path_segment(&spec.tool)
    );
    let mut response = (StatusCode::CREATED, Json(outcome)).into_response();
    if let Ok(value) = header::HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Percent-encodes every byte of `text` but the unreserved characters of RFC 3986, so that an id
/// with `/`, `?`, `%` or a space stays one path segment.
fn encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

async fn get_limit(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((tenant, tool)) = match path {
        Ok(path) => path,
        Err(rejection) => return invalid_path(rejection),
    };
    respond(state.admin.get(&tenant, &tool).await, StatusCode::OK)
}

async fn delete_limit(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((tenant, tool)) = match path {
        Ok(path) => path,
        Err(rejection) => return invalid_path(rejection),
    };
    match state.admin.delete(&tenant, &tool).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error_response(error),
    }
}

/// The query of `GET /usage/{tenant}/{tool}`. An unknown parameter is an error, so that a
/// misspelled filter does not return the tenant's counters in place of the run's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParameters {
    workflow: Option<String>,
    page_size: Option<u32>,
    after: Option<String>,
}

async fn usage(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<UsageParameters>, QueryRejection>,
) -> Response {
    let Path((tenant, tool)) = match path {
        Ok(path) => path,
        Err(rejection) => return invalid_path(rejection),
    };
    let Query(parameters) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid_query(rejection),
    };
    let after = match parameters.after.as_deref().map(str::parse::<UsageCursor>) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(error)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("invalid query string: {error}"),
            );
        }
    };
    let query = UsageQuery {
        workflow: parameters.workflow,
        page_size: parameters.page_size.unwrap_or(DEFAULT_USAGE_PAGE_SIZE),
        after,
    };
    respond(
        state.admin.usage(&tenant, &tool, &query).await,
        StatusCode::OK,
    )
}

/// The body of `POST /reports/preview`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    schedule: String,
    resource: Option<String>,
    from: Option<String>,
    days: Option<u32>,
}

async fn preview(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<PreviewRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return invalid_body(rejection),
    };
    // A date is local midnight in the resource's zone, which only the parsed schedule gives.
    let from = match request.from.as_deref().map(HorizonStart::parse) {
        None => HorizonStart::Instant(Utc::now()),
        Some(Ok(from)) => from,
        Some(Err(error)) => {
            let message = format!("invalid request body: {}", error.describe("\"from\""));
            return error_response(StatusCode::BAD_REQUEST, message);
        }
    };
    let admin = state.admin.clone();
    let days = request.days.unwrap_or(admin.horizon_days());
    let result = off_runtime(move || {
        admin.preview(
            &request.schedule,
            "preview.tjp",
            request.resource.as_deref(),
            from,
            days,
        )
    })
    .await
    .map(|mut preview| {
        cap_messages(&mut preview.warnings, "warnings");
        preview
    });
    respond(result, StatusCode::OK)
}

/// Returns whether a `PUT /limits` body failed on a field of the stored limit that `GET`
/// returns, which a client that edits the `GET` output and sends it back would hit.
fn is_stored_limit_body(rejection: &JsonRejection) -> bool {
    let text = rejection.body_text();
    text.contains("unknown field `created_at`")
        || text.contains("unknown field `updated_at`")
        || text.contains("schedule: invalid type: map")
}

/// Returns 404 with the JSON error body of the other errors. The message names the path as the
/// client sent it, also when the router is nested under a prefix.
async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "no admin endpoint at {}: the paths are /limits, /limits/{{tenant}}/{{tool}}, \
             /usage/{{tenant}}/{{tool}} and /reports/preview",
            uri.path()
        ),
    )
}

/// Returns 405 with the JSON error body of the other errors. axum adds the `Allow` field. The
/// message names the path as the client sent it.
async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} is not allowed for {}: the Allow field lists the methods it accepts",
            uri.path()
        ),
    )
}

/// The number of a schedule's warnings or errors that a response lists. A schedule of 2 MB can
/// have a diagnostic on every line, and listing them all would make the response several times
/// larger than the request.
const MAX_LISTED_DIAGNOSTICS: usize = 100;

/// Keeps the first [`MAX_LISTED_DIAGNOSTICS`] of `messages` and replaces the rest with one
/// message that counts them.
fn cap_messages(messages: &mut Vec<String>, noun: &str) {
    if messages.len() > MAX_LISTED_DIAGNOSTICS {
        let left_out = messages.len() - MAX_LISTED_DIAGNOSTICS;
        messages.truncate(MAX_LISTED_DIAGNOSTICS);
        messages.push(format!(
            "{left_out} more {noun} not listed; run `highway-ratelimit check` on the schedule to \
             see them all"
        ));
    }
}

fn respond<T: serde::Serialize>(result: Result<T, AdminError>, status: StatusCode) -> Response {
    match result {
        Ok(value) => (status, Json(value)).into_response(),
        Err(error) => admin_error_response(error),
    }
}

fn admin_error_response(error: AdminError) -> Response {
    let status = match &error {
        // The report's own message names no way to choose the resource over HTTP.
        AdminError::Report(ReportError::ResourceRequired { .. }) => {
            let message = format!("{error}: set the \"resource\" field of the request body");
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        AdminError::Report(ReportError::UnknownResource { .. }) => {
            let message =
                format!("{error}; set the \"resource\" field of the request body to one of them");
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        AdminError::InvalidSchedule(error) => {
            let mut diagnostics: Vec<String> =
                error.diagnostics.iter().map(ToString::to_string).collect();
            cap_messages(&mut diagnostics, "errors");
            let message = format!("invalid schedule:\n{}", diagnostics.join("\n"));
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        AdminError::InvalidLimit(_) | AdminError::InvalidPage(_) | AdminError::Report(_) => {
            StatusCode::BAD_REQUEST
        }
        AdminError::NotFound { tenant, tool } => {
            // The error's own advice names the command line.
            let message = format!(
                "no limit for tenant {tenant:?} and tool {tool:?}: create one with PUT /limits"
            );
            return error_response(StatusCode::NOT_FOUND, message);
        }
        AdminError::InvalidRow { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        AdminError::Store(_) | AdminError::Pool(_) | AdminError::Database(_) => {
            // The causes carry the reason, such as "Connection refused".
            let message = ErrorChain(&error).to_string();
            tracing::error!(error = %message, "admin request failed");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, message);
        }
    };
    error_response(status, error.to_string())
}

/// Returns 415 for a body without `Content-Type: application/json`, 413 for a body over the size
/// limit, and 400 for a body that is not the expected JSON.
fn invalid_body(rejection: JsonRejection) -> Response {
    if let JsonRejection::MissingJsonContentType(_) = rejection {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type: send the body as JSON with `Content-Type: application/json`"
                .to_owned(),
        );
    }
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: {}; the limit is axum's DefaultBodyLimit, 2 MB unless the \
                 server sets another",
                rejection.body_text()
            ),
        );
    }
    error_response(
        StatusCode::BAD_REQUEST,
        format!("invalid request body: {}", rejection.body_text()),
    )
}

/// Returns axum's status for a path it cannot decode, such as one with invalid UTF-8, with the
/// JSON error body of the other errors.
fn invalid_path(rejection: PathRejection) -> Response {
    error_response(
        rejection.status(),
        format!("invalid path: {}", rejection.body_text()),
    )
}

/// Returns 400 for a query string that is not the expected one, such as a repeated field, with
/// the JSON error body of the other errors.
fn invalid_query(rejection: QueryRejection) -> Response {
    error_response(
        rejection.status(),
        format!("invalid query string: {}", rejection.body_text()),
    )
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"secret", b"secret"));
        assert!(!token_matches(b"secret", b"secreT"));
        assert!(!token_matches(b"secret", b"secret2"));
        assert!(!token_matches(b"secret", b"secre"));
        assert!(!token_matches(b"secret", b""));
        assert!(!token_matches(b"", b""));
    }
}
