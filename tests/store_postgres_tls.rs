//! TLS connections to PostgreSQL (feature `tls`). A throwaway server presents a certificate
//! signed by a certificate authority made for the test. The store, the change listener and the
//! command line connect to it, and a certificate they do not trust fails the connection.
//!
//! These tests start their own server from the local PostgreSQL binaries, whatever
//! `DATABASE_URL` contains, because its TLS settings are part of the test. They make their certificates
//! with the `openssl` command.
#![cfg(feature = "tls")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Weekday;
use highway_ratelimit::admin::ChangeListener;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore, root_certificates_config};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};
use tempfile::TempDir;

use common::{TestDatabase, ThrowawayServer};

/// A certificate authority, a server certificate it signed for `localhost` and `127.0.0.1`, and
/// a second authority that signed nothing of the server's.
struct Certificates {
    _directory: TempDir,
    authority: PathBuf,
    other_authority: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(directory)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| {
            panic!("the TLS tests need the openssl command (apt-get install openssl): {error}")
        });
    assert!(
        output.status.success(),
        "openssl {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_certificates() -> Certificates {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path();
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

    for name in ["ca", "other-ca"] {
        let mut arguments = vec!["req", "-x509", "-nodes", "-days", "2"];
        arguments.extend(key);
        let key_file = format!("{name}.key");
        let certificate_file = format!("{name}.crt");
        let subject = format!("/CN=highway test {name}");
        arguments.extend([
            "-keyout",
            &key_file,
            "-out",
            &certificate_file,
            "-subj",
            &subject,
        ]);
        openssl(path, &arguments);
    }

    let mut request = vec!["req", "-nodes"];
    request.extend(key);
    request.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(path, &request);

    std::fs::write(
        path.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        path,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    Certificates {
        authority: path.join("ca.crt"),
        other_authority: path.join("other-ca.crt"),
        certificate: path.join("server.crt"),
        key: path.join("server.key"),
        _directory: directory,
    }
}

fn start_server(certificates: &Certificates) -> ThrowawayServer {
    ThrowawayServer::start_with_tls(&certificates.certificate, &certificates.key)
        .unwrap_or_else(|message| panic!("{message}"))
}

/// Returns `url` with `sslmode=require`.
fn requiring_tls(url: &str) -> String {
    format!("{url}?sslmode=require")
}

fn capacity() -> Capacity {
    Capacity {
        per_minute: Some(2),
        ..Capacity::UNLIMITED
    }
}

fn key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "default".to_owned(),
    }
}

async fn consume(store: &PostgresStore, key: &ScopeKey, capacity: &Capacity) -> bool {
    let request = ConsumeRequest {
        key,
        cost: 1,
        capacity,
        timezone: chrono_tz::UTC,
        week_start: Weekday::Mon,
        at: None,
    };
    store
        .consume(request)
        .await
        .expect("the consume succeeds over TLS")
        .is_admitted()
}

/// Returns the messages of `error` and of its causes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(inner) = cause {
        messages.push(inner.to_string());
        cause = inner.source();
    }
    messages.join(": ")
}

#[tokio::test]
async fn store_counts_over_verified_tls() {
    let certificates = make_certificates();
    let server = start_server(&certificates);
    let database = TestDatabase::on_server(&server.url()).await;
    let tls = root_certificates_config(&certificates.authority).unwrap();
    let store = PostgresStore::new(PostgresConfig::new(requiring_tls(database.url())).tls(tls))
        .expect("the connection string is valid");

    store.migrate().await.expect("migrations apply over TLS");
    let (key, capacity) = (key(), capacity());
    assert!(consume(&store, &key, &capacity).await);
    assert!(consume(&store, &key, &capacity).await);
    assert!(
        !consume(&store, &key, &capacity).await,
        "the third call of 2 a minute"
    );

    // The server, not the client, reports which of the store's sessions use TLS.
    let observer = database.client().await;
    let row = observer
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'highway-ratelimit'",
            &[],
        )
        .await
        .unwrap();
    let (sessions, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(sessions > 0, "the store keeps pooled sessions");
    assert_eq!(encrypted, sessions, "every session of the store uses TLS");
}

#[tokio::test]
async fn untrusted_certificate_fails_connection() {
    let certificates = make_certificates();
    let server = start_server(&certificates);
    let database = TestDatabase::on_server(&server.url()).await;

    // `prefer` as well as `require`: a certificate that fails verification never falls back to
    // a plain connection.
    for url in [requiring_tls(database.url()), database.url().to_owned()] {
        let tls = root_certificates_config(&certificates.other_authority).unwrap();
        let store = PostgresStore::new(PostgresConfig::new(url.clone()).tls(tls))
            .expect("the connection string is valid");

        let error = store
            .migrate()
            .await
            .expect_err("a server certificate from an unknown authority is refused");

        let chain = error_chain(&error);
        assert!(
            chain.to_lowercase().contains("certificate"),
            "{url}: {chain}"
        );
    }
}

#[tokio::test]
async fn change_listener_connects_over_tls() {
    let certificates = make_certificates();
    let server = start_server(&certificates);
    let database = TestDatabase::on_server(&server.url()).await;
    let tls = root_certificates_config(&certificates.authority).unwrap();
    let config = requiring_tls(database.url()).parse().unwrap();

    let (changes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut handle = ChangeListener::new(config).tls(tls).spawn(move |change| {
        let changes = changes.clone();
        async move {
            let _ = changes.send(change);
        }
    });
    tokio::time::timeout(Duration::from_secs(10), handle.wait_connected(1))
        .await
        .expect("the listener connects over TLS");
    let first = received.recv().await.expect("a change after connecting");
    assert_eq!(first, highway_ratelimit::admin::Change::All);

    let observer = database.client().await;
    let encrypted: bool = observer
        .query_one(
            "SELECT bool_and(s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'highway-ratelimit listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the listener's session uses TLS");
    handle.shutdown().await;
}

#[test]
fn command_line_trusts_root_certificate_file() {
    let certificates = make_certificates();
    let server = start_server(&certificates);
    let url = requiring_tls(&server.url());
    let run = |extra: &[&Path]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"));
        command
            .args(["migrate", "--database-url", &url])
            .env_remove("DATABASE_URL")
            .env_remove("PGSSLROOTCERT");
        for file in extra {
            command.arg("--ssl-root-cert").arg(file);
        }
        command.output().unwrap()
    };

    let trusted = run(&[&certificates.authority]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );

    let untrusted = run(&[&certificates.other_authority]);
    assert_eq!(untrusted.status.code(), Some(1));
    let message = String::from_utf8_lossy(&untrusted.stderr);
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(
        message.contains("pass the certificate authority"),
        "{message}"
    );

    let missing = run(&[Path::new("/nonexistent/ca.crt")]);
    assert_eq!(missing.status.code(), Some(1));
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("/nonexistent/ca.crt") && message.contains("--ssl-root-cert"),
        "{message}"
    );
}
