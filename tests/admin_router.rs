//! The admin router over a real PostgreSQL: bearer-token checks and the JSON API.
#![cfg(feature = "admin-router")]

mod common;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use common::TestDatabase;
use highway_ratelimit::admin::router::admin_router;
use highway_ratelimit::admin::{Admin, LimitSpec};
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-admin-token";

async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, value)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn bad_tokens_touch_nothing() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    admin
        .upsert(&LimitSpec {
            per_minute: Some(5),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let router = admin_router(admin.clone(), TOKEN);

    let wrong_tokens = [
        None,
        Some("".to_owned()),
        Some(TOKEN.to_owned()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer{TOKEN}")),
        Some(format!("Bearers {TOKEN}")),
        Some(bearer("s3cret-admin-tokeN")),
        Some(bearer("s3cret-admin-token2")),
        Some(bearer("s3cret")),
        Some(bearer("")),
    ];
    let new_limit = json!({ "tenant": "globex", "tool": "tools.http", "per_minute": 1 });
    for token in &wrong_tokens {
        let token = token.as_deref();
        let requests = [
            (Method::GET, "/limits", None),
            (Method::PUT, "/limits", Some(new_limit.clone())),
            (Method::GET, "/limits/acme/tools.http", None),
            (Method::DELETE, "/limits/acme/tools.http", None),
            (Method::GET, "/usage/acme/tools.http", None),
            (
                Method::POST,
                "/reports/preview",
                Some(json!({ "schedule": "project x \"X\" 2026-01-01 +1y" })),
            ),
        ];
        for (method, uri, body) in requests {
            let (status, answer) = send(&router, method.clone(), uri, token, body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}"
            );
            assert_eq!(answer["error"], "missing or invalid bearer token");
        }
    }

    let limits = admin.list(None).await.unwrap();
    assert_eq!(limits.len(), 1, "nothing was written");
    assert_eq!(limits[0].tenant, "acme");
    assert_eq!(limits[0].per_minute, Some(5));

    // An empty configured token rejects even an empty presented one.
    let closed = admin_router(admin.clone(), "");
    let (status, _) = send(&closed, Method::GET, "/limits", Some("Bearer "), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn scheme_name_ignores_case() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin, TOKEN);

    for authorization in [
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR {TOKEN}"),
        format!("Bearer   {TOKEN}"),
    ] {
        let (status, answer) =
            send(&router, Method::GET, "/limits", Some(&authorization), None).await;
        assert_eq!(status, StatusCode::OK, "{authorization:?}: {answer}");
        assert_eq!(answer, json!([]));
    }
}

#[tokio::test]
async fn limit_life_over_http() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let spec = json!({ "tenant": "acme", "tool": "tools.email.send", "scope": "global", "per_hour": 50, "timezone": "Asia/Tokyo", "week_start": "sunday" });
    let (status, written) = send(&router, Method::PUT, "/limits", auth, Some(spec)).await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["limit"]["per_hour"], 50);
    assert_eq!(written["limit"]["scope"], "global");
    assert_eq!(written["limit"]["timezone"], "Asia/Tokyo");
    assert_eq!(written["limit"]["week_start"], "sunday");

    let (status, stored) = send(
        &router,
        Method::GET,
        "/limits/acme/tools.email.send",
        auth,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored, written["limit"]);

    let (status, listed) = send(&router, Method::GET, "/limits?tenant=acme", auth, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (_, others) = send(&router, Method::GET, "/limits?tenant=globex", auth, None).await;
    assert_eq!(others, json!([]));

    let (status, usage) = send(
        &router,
        Method::GET,
        "/usage/acme/tools.email.send",
        auth,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage, json!({ "counts": [], "next": null }));

    let invalid = json!({ "tenant": "acme", "tool": "tools.email.send", "scope": "everyone" });
    let (status, error) = send(&router, Method::PUT, "/limits", auth, Some(invalid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("invalid scope \"everyone\""),
        "{error}"
    );
    let orphan = json!({ "tenant": "acme", "tool": "tools.email.send", "resource": "smtp" });
    let (status, error) = send(&router, Method::PUT, "/limits", auth, Some(orphan)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("without a schedule"),
        "{error}"
    );

    let (status, _) = send(
        &router,
        Method::DELETE,
        "/limits/acme/tools.email.send",
        auth,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, missing) = send(
        &router,
        Method::GET,
        "/limits/acme/tools.email.send",
        auth,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        missing["error"].as_str().unwrap().contains("PUT /limits"),
        "{missing}"
    );
    assert!(admin.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn preview_stores_nothing() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let schedule = "project mail \"Mail\" 2026-03-01 - 2026-04-01 {\n  timezone \"Europe/Berlin\"\n}\n\n\
                    resource smtp \"SMTP relay\" {\n  workinghours mon - fri 09:00 - 17:00\n  \
                    workinghours sat, sun off\n  limits { dailymax 500 }\n}\n";
    let request = json!({ "schedule": schedule, "from": "2026-03-02T00:00:00Z", "days": 7 });
    let (status, preview) = send(
        &router,
        Method::POST,
        "/reports/preview",
        auth,
        Some(request),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["report"]["timezone"], "Europe/Berlin");
    assert_eq!(preview["report"]["valid_until"], "2026-03-09T00:00:00Z");
    let windows = preview["report"]["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 5, "Monday to Friday: {preview}");
    assert_eq!(windows[0]["start"], "2026-03-02T08:00:00Z");
    assert_eq!(windows[0]["end"], "2026-03-02T16:00:00Z");
    assert_eq!(windows[0]["capacity"]["per_day"], 500);

    let broken = json!({ "schedule": schedule.replace("sun off", "sun offf") });
    let (status, error) = send(
        &router,
        Method::POST,
        "/reports/preview",
        auth,
        Some(broken),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"].as_str().unwrap().contains("preview.tjp:7:"),
        "{error}"
    );

    assert!(admin.list(None).await.unwrap().is_empty());
}

/// A preview of a horizon that started in the past is stamped with its start, so
/// that `generated_at` does not lie after `valid_until`.
#[tokio::test]
async fn preview_of_past_horizon() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin, TOKEN);
    let auth = bearer(TOKEN);

    let schedule = "project mail \"Mail\" 2026-03-01 - 2026-04-01 {\n  timezone \"UTC\"\n}\n\
                    resource smtp \"SMTP relay\" {\n  limits { dailymax 500 }\n}\n";
    let request = json!({ "schedule": schedule, "from": "2026-03-02T00:00:00Z", "days": 1 });
    let (status, preview) = send(
        &router,
        Method::POST,
        "/reports/preview",
        Some(auth.as_str()),
        Some(request),
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["report"]["generated_at"], "2026-03-02T00:00:00Z");
    assert_eq!(preview["report"]["valid_until"], "2026-03-03T00:00:00Z");
}

/// A misspelled field is rejected, because ignoring it would replace the stored limit with one
/// that lacks the limit the caller meant to set.
#[tokio::test]
async fn put_rejects_unknown_field() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let limit = json!({ "tenant": "acme", "tool": "tools.http", "per_minute": 5 });
    let (status, body) = send(&router, Method::PUT, "/limits", auth, Some(limit)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let misspelled = json!({ "tenant": "acme", "tool": "tools.http", "per_minut": 1 });
    let (status, error) = send(&router, Method::PUT, "/limits", auth, Some(misspelled)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("per_minut"), "{message}");

    let stored = admin.get("acme", "tools.http").await.unwrap();
    assert_eq!(stored.per_minute, Some(5));
}

/// The preview's body errors are JSON with status 400, like those of `PUT /limits`.
#[tokio::test]
async fn preview_rejects_invalid_body() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin, TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let schedule = "project mail \"Mail\" 2026-03-01 - 2026-04-01 {}\nresource smtp \"SMTP\" {}\n";
    let bodies = [
        ("from", json!({ "schedule": schedule, "from": "monday" })),
        ("days", json!({ "schedule": schedule, "days": -1 })),
        ("dyas", json!({ "schedule": schedule, "dyas": 3 })),
        ("schedule", json!({ "from": "2026-03-02T00:00:00Z" })),
    ];
    for (field, body) in bodies {
        let (status, error) =
            send(&router, Method::POST, "/reports/preview", auth, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(field), "{field}: {message}");
    }
}

/// A stored limit as `GET` returns it, sent back to `PUT /limits`, gets a message that explains
/// how the body differs, and changes nothing.
#[tokio::test]
async fn put_of_get_output_explains() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let schedule = "project mail \"Mail\" 2026-03-01 - 2027-03-01 {}\nresource smtp \"SMTP\" {}\n";
    let bodies = [
        json!({ "tenant": "acme", "tool": "tools.http", "per_minute": 5 }),
        json!({ "tenant": "acme", "tool": "tools.mail", "schedule": schedule }),
    ];
    for body in bodies {
        let (status, stored) = send(&router, Method::PUT, "/limits", auth, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        let path = format!("/limits/acme/{}", stored["limit"]["tool"].as_str().unwrap());
        let (status, read) = send(&router, Method::GET, &path, auth, None).await;
        assert_eq!(status, StatusCode::OK, "{read}");

        let (status, error) = send(&router, Method::PUT, "/limits", auth, Some(read.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains("LimitSpec"), "{message}");
        assert!(message.contains("leave out created_at"), "{message}");

        let (_, after) = send(&router, Method::GET, &path, auth, None).await;
        assert_eq!(
            after["updated_at"], read["updated_at"],
            "nothing was written"
        );

        // A scheduled limit's `schedule` is an object in the output and text in the body.
        if read["schedule"].is_object() {
            let mut without_times = read.clone();
            let object = without_times.as_object_mut().unwrap();
            object.remove("created_at");
            object.remove("updated_at");
            let (status, error) =
                send(&router, Method::PUT, "/limits", auth, Some(without_times)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
            let message = error["error"].as_str().expect("an error message");
            assert!(message.contains("schedule as the .tjp text"), "{message}");
        }
    }
}

/// A `from` that is neither a date nor an RFC 3339 instant gets a message that shows the value
/// and the expected form, rather than the parser's "premature end of input".
#[tokio::test]
async fn preview_from_error_names_value() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin, TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let schedule = "project mail \"Mail\" 2026-03-01 - 2026-04-01 {}\nresource smtp \"SMTP\" {}\n";
    let cases = [
        ("monday", "RFC 3339"),
        ("2026-03-02T09:00", "RFC 3339"),
        ("2026-02-30T00:00:00Z", "no such date"),
        ("2026-02-30", "no such date"),
    ];
    for (from, expected) in cases {
        let body = json!({ "schedule": schedule, "from": from });
        let (status, error) =
            send(&router, Method::POST, "/reports/preview", auth, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{from}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.contains(&format!("invalid \"from\" value {from:?}")),
            "{from}: {message}"
        );
        assert!(message.contains(expected), "{from}: {message}");
        assert!(!message.contains("premature"), "{from}: {message}");
    }
}

/// A body over axum's default limit of 2 MB gets 413 with a JSON error, on both endpoints that
/// read a body, and stores nothing.
#[tokio::test]
async fn oversized_body_is_413() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let filler = "x".repeat(2 * 1024 * 1024);
    let bodies = [
        (
            Method::PUT,
            "/limits",
            json!({ "tenant": "acme", "tool": "tools.http", "per_minute": 5, "pad": filler }),
        ),
        (
            Method::POST,
            "/reports/preview",
            json!({ "schedule": filler }),
        ),
    ];
    for (method, uri, body) in bodies {
        let (status, error) = send(&router, method, uri, auth, Some(body)).await;

        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains("too large"), "{uri}: {message}");
        assert!(message.contains("2 MB"), "{uri}: {message}");
    }

    assert!(admin.list(None).await.unwrap().is_empty());
}

/// A path or query string that axum cannot decode gets 400 with the JSON error body of the other
/// errors, not axum's plain-text rejection.
#[tokio::test]
async fn invalid_path_or_query_is_json() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin, TOKEN);
    let cases = [
        (
            Method::GET,
            "/limits?tenant=a&tenant=b",
            "invalid query string",
        ),
        (Method::GET, "/limits/%FF/tools.http", "invalid path"),
        (Method::DELETE, "/limits/%FF/tools.http", "invalid path"),
        (Method::GET, "/usage/%FF/tools.http", "invalid path"),
        (
            Method::GET,
            "/usage/acme/tools.http?workflow=a&workflow=b",
            "invalid query string",
        ),
    ];
    for (method, uri, expected) in cases {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, bearer(TOKEN))
            .body(Body::empty())
            .unwrap();

        let response = router.clone().oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(
            content_type.as_ref().and_then(|value| value.to_str().ok()),
            Some("application/json"),
            "{uri}"
        );
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let error: Value = serde_json::from_slice(&bytes).unwrap();
        let message = error["error"].as_str().expect("an error message");
        assert!(message.starts_with(expected), "{uri}: {message}");
    }
}

/// A database that cannot be reached gives 503 with the reason, not only "error connecting to
/// server".
#[tokio::test]
async fn unreachable_database_gives_reason() {
    let config = PostgresConfig::new("postgres://nobody@127.0.0.1:1/none");
    let store = PostgresStore::new(config).expect("a valid connection string");
    let router = admin_router(Admin::from_store(&store), TOKEN);
    let auth = bearer(TOKEN);

    let (status, error) = send(&router, Method::GET, "/limits", Some(auth.as_str()), None).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("Connection refused"), "{message}");
}

/// A missing limit points to the endpoint that creates one, not to the command line.
#[tokio::test]
async fn missing_limit_points_to_put() {
    let database = TestDatabase::new().await;
    let router = admin_router(Admin::from_store(&database.store().await), TOKEN);
    let auth = bearer(TOKEN);

    for method in [Method::GET, Method::DELETE] {
        let (status, error) = send(
            &router,
            method.clone(),
            "/limits/acme/tools.http",
            Some(auth.as_str()),
            None,
        )
        .await;

        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.contains("create one with PUT /limits"),
            "{method}: {message}"
        );
    }
}

/// An ambiguous or unknown resource names the body field that chooses one, for both endpoints
/// that take a schedule.
#[tokio::test]
async fn resource_errors_name_the_field() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let schedule = "project p \"P\" 2026-03-01 +1y\nresource smtp \"SMTP\"\nresource sms \"SMS\"\n";

    let cases = [
        (
            "/reports/preview",
            Method::POST,
            json!({ "schedule": schedule }),
            "several resources (smtp, sms)",
        ),
        (
            "/reports/preview",
            Method::POST,
            json!({ "schedule": schedule, "resource": "fax" }),
            "unknown resource \"fax\"",
        ),
        (
            "/limits",
            Method::PUT,
            json!({ "tenant": "acme", "tool": "tools.mail", "schedule": schedule }),
            "several resources (smtp, sms)",
        ),
        (
            "/limits",
            Method::PUT,
            json!({
                "tenant": "acme", "tool": "tools.mail", "schedule": schedule, "resource": "fax"
            }),
            "unknown resource \"fax\"",
        ),
    ];
    for (uri, method, body, reason) in cases {
        let (status, error) = send(&router, method, uri, Some(auth.as_str()), Some(body)).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(reason), "{uri}: {message}");
        assert!(message.contains("\"resource\" field"), "{uri}: {message}");
    }
    assert!(admin.list(None).await.unwrap().is_empty());
}

/// An unknown or miscapitalized zone in `PUT /limits` gets the messages of `limits set
/// --timezone`, not chrono-tz's "failed to parse timezone".
#[tokio::test]
async fn put_names_unknown_timezone() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);

    let cases = [
        (
            "Mars/Base",
            "unknown time zone \"Mars/Base\": expected an IANA name such as Europe/Berlin",
        ),
        (
            "europe/berlin",
            "zone names are case-sensitive; write Europe/Berlin",
        ),
        ("EST", "time zone \"EST\" is not a Region/City name"),
    ];
    for (zone, expected) in cases {
        let body =
            json!({ "tenant": "acme", "tool": "tools.http", "per_day": 5, "timezone": zone });
        let (status, error) = send(
            &router,
            Method::PUT,
            "/limits",
            Some(auth.as_str()),
            Some(body),
        )
        .await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{zone}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(expected), "{zone}: {message}");
    }
    assert!(admin.list(None).await.unwrap().is_empty());
}

/// Sends a request with the admin token and the given `Content-Type`, and returns the status,
/// the response's `Content-Type` and `Allow` fields, and the JSON body.
async fn send_raw(
    router: &Router,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Option<String>, Option<String>, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, bearer(TOKEN));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let field = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value: &header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = field(header::CONTENT_TYPE);
    let allow = field(header::ALLOW);
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, allow, value)
}

/// A body sent without `Content-Type: application/json` gets 415, which shows the client that
/// the media type is at fault, not the JSON it sent.
#[tokio::test]
async fn body_without_json_type_is_415() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let limit = json!({ "tenant": "acme", "tool": "tools.http", "per_minute": 5 }).to_string();
    let preview = json!({ "schedule": "project p \"P\" 2026-03-01 +1y\nresource r \"R\"\n" });
    let preview = preview.to_string();

    let cases = [
        (Method::PUT, "/limits", None, limit.as_str()),
        (Method::PUT, "/limits", Some("text/plain"), limit.as_str()),
        (Method::POST, "/reports/preview", None, preview.as_str()),
        (
            Method::POST,
            "/reports/preview",
            Some("application/x-www-form-urlencoded"),
            preview.as_str(),
        ),
    ];
    for (method, uri, content_type, body) in cases {
        let (status, response_type, _, error) =
            send_raw(&router, method, uri, content_type, body).await;

        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{uri} {content_type:?}: {error}"
        );
        assert_eq!(response_type.as_deref(), Some("application/json"), "{uri}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains("application/json"), "{uri}: {message}");
    }
    assert!(admin.list(None).await.unwrap().is_empty());
}

/// A misspelled query parameter is an error naming it, not a filter silently left out: a
/// `GET /limits?tenat=acme` would otherwise list every tenant's limits, and a usage query with
/// `workflow_run` the tenant's counters instead of the run's.
#[tokio::test]
async fn unknown_query_parameter_is_400() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);

    let cases = [
        ("/limits?tenat=acme", "tenat"),
        ("/usage/acme/tools.http?workflow_run=run-1", "workflow_run"),
    ];
    for (uri, parameter) in cases {
        let (status, _, _, error) = send_raw(&router, Method::GET, uri, None, "").await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.starts_with("invalid query string"),
            "{uri}: {message}"
        );
        assert!(message.contains(parameter), "{uri}: {message}");
    }
}

/// An unknown path gets 404 and a method the path lacks gets 405 with `Allow`, both with the
/// JSON error body of the other errors, and a 405 still needs the token.
#[tokio::test]
async fn unrouted_requests_get_json_errors() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let limit = json!({ "tenant": "acme", "tool": "tools.http", "per_minute": 5 }).to_string();

    let (status, content_type, _, error) = send_raw(&router, Method::GET, "/limit", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("/limit"), "{message}");

    let cases = [
        (Method::POST, "/limits", "GET,HEAD,PUT"),
        (Method::PATCH, "/limits/acme/tools.http", "GET,HEAD,DELETE"),
        (Method::GET, "/reports/preview", "POST"),
    ];
    for (method, uri, allowed) in cases {
        let (status, content_type, allow, error) = send_raw(
            &router,
            method.clone(),
            uri,
            Some("application/json"),
            &limit,
        )
        .await;

        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(allow.as_deref(), Some(allowed), "{method} {uri}");
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.contains(method.as_str()),
            "{method} {uri}: {message}"
        );
        assert!(message.contains(uri), "{method} {uri}: {message}");
    }

    let (status, _) = send(&router, Method::POST, "/limits", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let nested = Router::new().nest("/admin", router);
    let (status, content_type, _, error) =
        send_raw(&nested, Method::GET, "/admin/limit", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let (status, content_type, allow, error) =
        send_raw(&nested, Method::POST, "/admin/limits", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(allow.as_deref(), Some("GET,HEAD,PUT"));
    assert!(admin.list(None).await.unwrap().is_empty());
}

/// Under `nest`, as the module documentation mounts the router, the 404 and 405 messages name the
/// path that the client sent, prefix included.
#[tokio::test]
async fn nested_errors_name_full_path() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let nested = Router::new().nest("/admin", admin_router(admin, TOKEN));

    let (status, _, _, error) = send_raw(&nested, Method::GET, "/admin/limit", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("at /admin/limit:"), "{message}");

    let (status, _, _, error) = send_raw(&nested, Method::POST, "/admin/limits", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("for /admin/limits:"), "{message}");
}

/// `PUT /limits` without any limit or schedule stores a limit that admits every call, which the
/// response's warnings report, as `limits set` does on the command line.
#[tokio::test]
async fn put_without_limits_warns() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let limited = json!({ "tenant": "acme", "tool": "tools.http", "per_day": 5 });
    let (status, written) = send(&router, Method::PUT, "/limits", auth, Some(limited)).await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["warnings"], json!([]));

    let unlimited = json!({ "tenant": "acme", "tool": "tools.http", "fail_open": true });
    let (status, written) = send(&router, Method::PUT, "/limits", auth, Some(unlimited)).await;
    assert_eq!(status, StatusCode::OK, "{written}");
    let warnings = written["warnings"].as_array().expect("a list of warnings");
    assert_eq!(warnings.len(), 1, "{written}");
    let warning = warnings[0].as_str().expect("a warning message");
    assert!(warning.contains("admits every call"), "{warning}");
    assert!(warning.contains("\"per_day\""), "{warning}");

    let disabled = json!({ "tenant": "acme", "tool": "tools.http", "enabled": false });
    let (status, written) = send(&router, Method::PUT, "/limits", auth, Some(disabled)).await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(
        written["warnings"],
        json!([]),
        "a disabled limit is meant to count nothing"
    );
}

/// PostgreSQL's text cannot hold a NUL character, so an id or schedule with one is invalid input
/// (400), not a database outage (503) that a client would retry.
#[tokio::test]
async fn nul_in_input_is_400() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let auth = bearer(TOKEN);
    let auth = Some(auth.as_str());

    let cases = [
        (Method::GET, "/limits/a%00b/tools.http", "tenant"),
        (Method::DELETE, "/limits/acme/tools%00http", "tool"),
        (Method::GET, "/usage/a%00b/tools.http", "tenant"),
        (Method::GET, "/limits?tenant=a%00b", "tenant"),
    ];
    for (method, uri, field) in cases {
        let (status, error) = send(&router, method.clone(), uri, auth, None).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.starts_with(&format!("invalid {field}")),
            "{message}"
        );
        assert!(message.contains("NUL"), "{message}");
    }

    let schedule = "project p \"P\" 2026-03-01 +1y\nresource r \"R\u{0}\"\n";
    let body = json!({ "tenant": "acme", "tool": "tools.http", "schedule": schedule });
    let (status, error) = send(&router, Method::PUT, "/limits", auth, Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.starts_with("invalid schedule"), "{message}");
    assert!(message.contains("NUL"), "{message}");
    assert!(admin.list(None).await.unwrap().is_empty());
}

/// A token read from a file or a secret often ends in a newline, which no `Authorization` field
/// can carry, because HTTP strips whitespace around field values. Such a configured token is
/// trimmed, so that the router accepts the token itself rather than rejecting every request.
#[tokio::test]
async fn configured_token_is_trimmed() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);

    for configured in [format!("{TOKEN}\n"), format!(" {TOKEN}\r\n")] {
        let router = admin_router(admin.clone(), configured.as_str());
        let authorization = bearer(TOKEN);

        let (status, answer) =
            send(&router, Method::GET, "/limits", Some(&authorization), None).await;

        assert_eq!(status, StatusCode::OK, "{configured:?}: {answer}");
    }

    let blank = admin_router(admin, " \n");
    let (status, _) = send(&blank, Method::GET, "/limits", Some("Bearer "), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a blank token rejects every request"
    );
}

/// A 401 challenges with `Bearer` and, when a bearer token was presented but is wrong, adds
/// `error="invalid_token"` (RFC 6750, section 3), so that a client can tell a token to replace
/// from one it forgot to send.
#[tokio::test]
async fn challenge_names_invalid_token() {
    let database = TestDatabase::new().await;
    let router = admin_router(Admin::from_store(&database.store().await), TOKEN);

    let cases = [
        (None, "Bearer"),
        (Some(format!("Basic {TOKEN}")), "Bearer"),
        (Some(bearer("wrong")), "Bearer error=\"invalid_token\""),
        (Some(bearer("")), "Bearer error=\"invalid_token\""),
    ];
    for (authorization, expected) in cases {
        let mut request = Request::builder().uri("/limits");
        if let Some(authorization) = &authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers().get(header::WWW_AUTHENTICATE);
        assert_eq!(
            challenge.and_then(|value| value.to_str().ok()),
            Some(expected),
            "{authorization:?}"
        );
    }
}

/// Sends a request with the admin token and returns the status, the `Location` field and the
/// JSON body.
async fn send_located(
    router: &Router,
    method: Method,
    uri: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, bearer(TOKEN))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, location, serde_json::from_slice(&bytes).unwrap())
}

/// `PUT /limits` returns 201 with the limit's `GET` path in `Location` when it creates the limit,
/// and 200 without `Location` when it replaces one. The path keeps an id with `/`, `?`, `%` or a
/// space in one segment, and names the prefix the router is nested under.
#[tokio::test]
async fn put_creates_with_location() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let nested = Router::new().nest("/admin", admin_router(admin.clone(), TOKEN));

    let cases = [
        ("acme", "tools.http", "/admin/limits/acme/tools.http"),
        (
            "ac me/1",
            "tools?x=%",
            "/admin/limits/ac%20me%2F1/tools%3Fx%3D%25",
        ),
        (
            "zürich",
            "tools.mail",
            "/admin/limits/z%C3%BCrich/tools.mail",
        ),
    ];
    for (tenant, tool, expected) in cases {
        let body = json!({ "tenant": tenant, "tool": tool, "per_minute": 5 });
        let (status, location, written) =
            send_located(&nested, Method::PUT, "/admin/limits", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{tenant}: {written}");
        assert_eq!(location.as_deref(), Some(expected), "{tenant}");

        let (status, read) = send(&nested, Method::GET, expected, Some(&bearer(TOKEN)), None).await;
        assert_eq!(status, StatusCode::OK, "GET {expected}: {read}");
        assert_eq!(read, written["limit"], "{expected}");

        let (status, location, replaced) =
            send_located(&nested, Method::PUT, "/admin/limits", body).await;
        assert_eq!(status, StatusCode::OK, "{tenant}: {replaced}");
        assert_eq!(location, None, "{tenant}");
    }
}

/// Of concurrent `PUT`s that create one limit, exactly one gets 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_create_once() {
    let database = TestDatabase::new().await;
    let store = database.store_with(|config| config.pool_size(8)).await;
    let router = admin_router(Admin::from_store(&store), TOKEN);

    let puts = (1..=8).map(|n| {
        let router = router.clone();
        tokio::spawn(async move {
            let body = json!({ "tenant": "acme", "tool": "tools.http", "per_minute": n });
            send_located(&router, Method::PUT, "/limits", body).await.0
        })
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(puts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let created = statuses
        .iter()
        .filter(|status| **status == StatusCode::CREATED);
    assert_eq!(created.count(), 1, "{statuses:?}");
    let replaced = statuses.iter().filter(|status| **status == StatusCode::OK);
    assert_eq!(replaced.count(), 7, "{statuses:?}");
}

/// `GET /usage` returns pages of `page_size` counters with the cursor of the next page, which a
/// client passes back as `after` until `next` is null.
#[tokio::test]
async fn usage_pages_over_http() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    admin
        .upsert(&LimitSpec {
            scope: highway_ratelimit::policy::Scope::Workflow,
            per_day: Some(100),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let client = database.client().await;
    client
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count)
             SELECT 'acme', 'tools.http', 'workflow:acme:run-' || lpad(n::text, 2, '0'), 'day',
                    s.start_at, s.start_at + interval '1 day', n
             FROM generate_series(1, 12) AS n,
                  (SELECT date_trunc('day', now(), 'UTC') + interval '1 day' AS start_at) AS s",
            &[],
        )
        .await
        .unwrap();
    let auth = bearer(TOKEN);
    let router = admin_router(admin, TOKEN);

    let mut uri = "/usage/acme/tools.http?page_size=5".to_owned();
    let mut sizes = Vec::new();
    let mut used = Vec::new();
    loop {
        let (status, page) = send(&router, Method::GET, &uri, Some(&auth), None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        let counts = page["counts"].as_array().expect("a list of counts");
        sizes.push(counts.len());
        used.extend(counts.iter().map(|count| count["used"].as_u64().unwrap()));
        match page["next"].as_str() {
            Some(next) => uri = format!("/usage/acme/tools.http?page_size=5&after={next}"),
            None => break,
        }
    }
    assert_eq!(sizes, [5, 5, 2]);
    assert_eq!(used, (1..=12).collect::<Vec<u64>>());

    // Without `page_size`, a page holds up to 100 counters.
    let (_, page) = send(
        &router,
        Method::GET,
        "/usage/acme/tools.http",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(page["counts"].as_array().map(Vec::len), Some(12));
    assert_eq!(page["next"], Value::Null);
}

/// A page size out of range or a cursor that no page returned is a 400 that names the value.
#[tokio::test]
async fn usage_page_errors_are_400() {
    let database = TestDatabase::new().await;
    let router = admin_router(Admin::from_store(&database.store().await), TOKEN);
    let auth = bearer(TOKEN);
    let nul_cursor = "ZGF5LjAudGVuYW50OmEAYg"; // "day.0.tenant:a\0b"
    let long_cursor = format!("/usage/acme/tools.http?after={}", "A".repeat(9000));

    let cases = [
        ("/usage/acme/tools.http?page_size=0", "invalid page size 0"),
        (
            "/usage/acme/tools.http?page_size=1001",
            "invalid page size 1001",
        ),
        ("/usage/acme/tools.http?page_size=-1", "page_size"),
        ("/usage/acme/tools.http?page_size=99999999999", "page_size"),
        ("/usage/acme/tools.http?page_size=ten", "page_size"),
        (
            "/usage/acme/tools.http?after=%21%21",
            "invalid cursor \"!!\"",
        ),
        (
            "/usage/acme/tools.http?after=bW9uZGF5",
            "invalid cursor \"bW9uZGF5\"",
        ),
        (
            &format!("/usage/acme/tools.http?after={nul_cursor}"),
            "NUL character",
        ),
        (&long_cursor, "longer than any cursor"),
        (
            "/usage/acme/tools.http?after=a&after=b",
            "invalid query string",
        ),
    ];
    for (uri, expected) in cases {
        let (status, error) = send(&router, Method::GET, uri, Some(&auth), None).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri:.80}: {error}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(expected), "{uri:.80}: {message}");
    }
}

/// `from` accepts the forms of `report --from`: a date is local midnight in the zone of the
/// report's resource, its own `timezone` or else the project's.
#[tokio::test]
async fn preview_accepts_plain_date() {
    let database = TestDatabase::new().await;
    let router = admin_router(Admin::from_store(&database.store().await), TOKEN);
    let auth = bearer(TOKEN);
    let schedule = "project p \"P\" 2026-01-01 +1y {\n  timezone \"Europe/Berlin\"\n}\n\
                    resource berlin \"Berlin\"\n\
                    resource york \"New York\" {\n  timezone \"America/New_York\"\n}\n";

    let cases = [
        ("berlin", "2026-03-02", "2026-03-01T23:00:00Z"),
        ("york", "2026-03-02", "2026-03-02T05:00:00Z"),
        // The clocks of New York go forward at 02:00 on 2026-03-08, after midnight.
        ("york", "2026-03-08", "2026-03-08T05:00:00Z"),
        ("york", "2026-03-09", "2026-03-09T04:00:00Z"),
        ("york", "2026-03-02T09:00:00+01:00", "2026-03-02T08:00:00Z"),
    ];
    for (resource, from, expected) in cases {
        let body = json!({ "schedule": schedule, "resource": resource, "from": from, "days": 1 });
        let (status, preview) = send(
            &router,
            Method::POST,
            "/reports/preview",
            Some(&auth),
            Some(body),
        )
        .await;

        assert_eq!(status, StatusCode::OK, "{resource} {from}: {preview}");
        assert_eq!(
            preview["report"]["generated_at"], expected,
            "{resource} {from}"
        );
    }

    // A date needs the resource to know its zone, so a schedule of several resources needs one.
    let body = json!({ "schedule": schedule, "from": "2026-03-02" });
    let (status, error) = send(
        &router,
        Method::POST,
        "/reports/preview",
        Some(&auth),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("\"resource\" field"), "{message}");
}

/// Returns a valid schedule of about `bytes` bytes: one resource with an hour of vacation on
/// each of many days, which takes hundreds of milliseconds to parse and render in a debug build.
fn heavy_schedule(bytes: usize) -> String {
    let mut schedule = String::from(
        "project p \"P\" 2026-01-01 +20y {\n  timezone \"Europe/Berlin\"\n}\n\
         resource r \"R\" {\n  workinghours mon - sun 00:00 - 24:00\n  limits { minutelymax 2 }\n",
    );
    let first = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
    let mut line = 0_u64;
    while schedule.len() < bytes {
        let date = first + chrono::Days::new(line % 3650);
        schedule.push_str(&format!(
            "  vacation {date}-{:02}:00 +1h\n",
            line / 3650 % 24
        ));
        line += 1;
    }
    schedule.push_str("}\n");
    schedule
}

/// Runs `request` on this single-threaded runtime beside a task that ticks every 5 ms, and
/// returns the status, how long the request took and the longest time between two ticks.
async fn time_beside_ticker(
    router: &Router,
    method: Method,
    uri: &str,
    body: Value,
) -> (StatusCode, std::time::Duration, std::time::Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut longest = std::time::Duration::ZERO;
            let mut last = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                longest = longest.max(last.elapsed());
                last = std::time::Instant::now();
            }
            longest
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let started = std::time::Instant::now();
    let (status, _, _) = send_located(router, method, uri, body).await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (status, took, ticker.await.unwrap())
}

/// Rendering a large schedule runs off the runtime's threads, so that the other tasks of a
/// single-threaded runtime, such as the tool calls of the same service, keep running meanwhile.
#[tokio::test]
async fn heavy_render_leaves_runtime_free() {
    let database = TestDatabase::new().await;
    let router = admin_router(Admin::from_store(&database.store().await), TOKEN);
    let schedule = heavy_schedule(1_000_000);

    let cases = [
        (
            Method::POST,
            "/reports/preview",
            json!({ "schedule": schedule, "from": "2026-01-01", "days": 3660 }),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/limits",
            json!({ "tenant": "acme", "tool": "tools.http", "schedule": schedule }),
            StatusCode::CREATED,
        ),
    ];
    for (method, uri, body, expected) in cases {
        let (status, took, longest_gap) = time_beside_ticker(&router, method, uri, body).await;

        assert_eq!(status, expected, "{uri}");
        assert!(
            longest_gap < took / 2,
            "{uri}: the runtime stalled for {longest_gap:?} of the request's {took:?}"
        );
    }
}

/// A schedule with a warning or an error on every line gets a response that lists the first 100
/// and counts the rest, rather than one several times the size of the request.
#[tokio::test]
async fn diagnostics_listed_up_to_100() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);
    let lines = 3000;
    let repeated = |line: &str| {
        let mut schedule = String::from("project p \"P\" 2026-01-01 +1y\nresource r \"R\" {\n");
        for _ in 0..lines {
            schedule.push_str(line);
        }
        schedule.push_str("}\n");
        schedule
    };
    let warned = format!(
        "project p \"P\" 2026-01-01 +1y\nresource r \"R\" {{\n  limits {{\n{}  }}\n}}\n",
        "    dailymax 8h\n".repeat(lines)
    );
    let broken = repeated("  vacation 2026-02-30\n");

    for (method, uri, body) in [
        (
            Method::POST,
            "/reports/preview",
            json!({ "schedule": warned, "from": "2026-03-02" }),
        ),
        (
            Method::PUT,
            "/limits",
            json!({ "tenant": "acme", "tool": "tools.http", "schedule": warned }),
        ),
    ] {
        let (status, _, answer) = send_located(&router, method, uri, body).await;

        assert!(status.is_success(), "{uri}: {status}");
        let warnings = answer["warnings"].as_array().expect("a list of warnings");
        assert_eq!(warnings.len(), 101, "{uri}");
        assert!(
            warnings[0].as_str().unwrap().contains("dailymax 8h"),
            "{uri}"
        );
        let last = warnings[100].as_str().unwrap();
        assert!(
            last.starts_with(&format!("{} more warnings not listed", lines - 100)),
            "{uri}: {last}"
        );
    }

    for (method, uri, body) in [
        (
            Method::POST,
            "/reports/preview",
            json!({ "schedule": broken }),
        ),
        (
            Method::PUT,
            "/limits",
            json!({ "tenant": "acme", "tool": "tools.mail", "schedule": broken }),
        ),
    ] {
        let (status, _, error) = send_located(&router, method, uri, body).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.starts_with("invalid schedule:\n"), "{uri}");
        assert_eq!(message.lines().count(), 102, "{uri}");
        let last = message.lines().last().unwrap();
        assert!(
            last.starts_with(&format!("{} more errors not listed", lines - 100)),
            "{uri}: {last}"
        );
        assert!(
            message.len() < broken.len(),
            "{uri}: {} bytes",
            message.len()
        );
    }
}

/// A tenant or tool named `.` or `..` is rejected: clients resolve such a path segment of
/// `/limits/{tenant}/{tool}`, so the limit's `Location` and its GET and DELETE would reach
/// another path.
#[tokio::test]
async fn dot_segment_names_are_400() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let router = admin_router(admin.clone(), TOKEN);

    let cases = [(".", "tools.http", "tenant"), ("acme", "..", "tool")];
    for (tenant, tool, field) in cases {
        let body = json!({ "tenant": tenant, "tool": tool, "per_minute": 5 });
        let (status, location, error) = send_located(&router, Method::PUT, "/limits", body).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{tenant}/{tool}: {error}");
        assert_eq!(location, None);
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.starts_with(&format!("invalid {field}")),
            "{message}"
        );
        assert!(message.contains("path segments"), "{message}");
    }
    for tenant in ["..a", ".acme", "a.b"] {
        let body = json!({ "tenant": tenant, "tool": "tools.http", "per_minute": 5 });
        let (status, _, written) = send_located(&router, Method::PUT, "/limits", body).await;
        assert_eq!(status, StatusCode::CREATED, "{tenant}: {written}");
    }
    assert_eq!(admin.list(None).await.unwrap().len(), 3);
}
