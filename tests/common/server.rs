//! A throwaway PostgreSQL server in a temporary directory, from the local binaries.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The message for a machine with neither `DATABASE_URL` nor the PostgreSQL server binaries.
const INSTALL_HINT: &str = "the PostgreSQL tests need a server: set DATABASE_URL to one where they may create \
     databases (postgres://postgres@127.0.0.1:5432/postgres), or install the server binaries \
     (apt-get install postgresql) so that the tests can start a throwaway one with initdb and pg_ctl";

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1 on a free port, with trust
/// authentication for the role `postgres`. Dropping it stops the server and deletes the directory.
#[derive(Debug)]
pub struct ThrowawayServer {
    directory: Option<TempDir>,
    data: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    as_postgres_user: bool,
    /// Server options beyond the port, the addresses and the defaults of these tests.
    extra_options: String,
}

impl ThrowawayServer {
    /// Starts a server.
    ///
    /// # Errors
    ///
    /// When the binaries are missing or the server does not start. The message names what to
    /// install or contains the server log.
    pub fn start() -> Result<ThrowawayServer, String> {
        Self::start_with(|_| Ok(String::new()))
    }

    /// Starts a server that offers TLS with the PEM `certificate` and its `key`, as well as plain
    /// connections.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or when the files cannot be copied.
    pub fn start_with_tls(certificate: &Path, key: &Path) -> Result<ThrowawayServer, String> {
        Self::start_with(|directory| {
            let copy = |from: &Path, name: &str| {
                let to = directory.join(name);
                std::fs::copy(from, &to)
                    .map_err(|error| format!("could not copy {}: {error}", from.display()))?;
                // The server refuses a key that others may read.
                run(Command::new("chmod").arg("600").arg(&to), "chmod")?;
                if running_as_root() {
                    run(Command::new("chown").arg("postgres").arg(&to), "chown")?;
                }
                Ok::<_, String>(to)
            };
            let certificate = copy(certificate, "server.crt")?;
            let key = copy(key, "server.key")?;
            Ok(format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certificate.display(),
                key.display()
            ))
        })
    }

    /// Starts a server with the options that `extra_options` returns for its directory.
    fn start_with(
        extra_options: impl FnOnce(&Path) -> Result<String, String>,
    ) -> Result<ThrowawayServer, String> {
        let bin = find_binaries().ok_or_else(|| INSTALL_HINT.to_owned())?;
        // initdb and postgres refuse to run as root: run them as the `postgres` system user.
        let as_postgres_user = running_as_root();

        let directory = tempfile::Builder::new()
            .prefix("highway-pg-")
            .tempdir()
            .map_err(|error| {
                format!("could not create a temporary directory for PostgreSQL: {error}")
            })?;
        let data = directory.path().join("data");
        if as_postgres_user {
            run(
                Command::new("chown").arg("postgres").arg(directory.path()),
                "chown",
            )?;
        }

        let initdb = bin.join("initdb");
        run(
            command(as_postgres_user, &initdb)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]),
            "initdb",
        )?;

        let extra_options = extra_options(directory.path())?;
        let pg_ctl = bin.join("pg_ctl");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200{extra_options}",
                directory.path().display()
            );
            let started = run(
                command(as_postgres_user, &pg_ctl)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(directory.path().join("server.log"))
                    .args(["-o", &options, "-w", "-t", "60", "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(()) => {
                    return Ok(ThrowawayServer {
                        directory: Some(directory),
                        data,
                        port,
                        pg_ctl,
                        as_postgres_user,
                        extra_options,
                    });
                }
                Err(error) => last_error = error,
            }
        }
        let log = std::fs::read_to_string(directory.path().join("server.log")).unwrap_or_default();
        Err(format!("{last_error}\nserver log:\n{log}"))
    }

    /// Starts a server that lives as long as this process: a watchdog process stops it and deletes
    /// its directory when this process exits, however it exits.
    pub fn start_for_process() -> Result<ThrowawayServer, String> {
        let mut server = Self::start()?;
        let directory = server
            .directory
            .take()
            .map(TempDir::keep)
            .unwrap_or_default();

        let stop = format!(
            "{} {} -D '{}' -m immediate stop",
            if server.as_postgres_user {
                "runuser -u postgres --"
            } else {
                ""
            },
            server.pg_ctl.display(),
            server.data.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = directory.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!("could not start the watchdog of the throwaway server: {error}")
            })?;
        Ok(server)
    }

    /// Returns the connection string of the `postgres` database as the `postgres` role.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Returns the TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), closing every connection, for
    /// fault tests. [`restart`](Self::restart) starts it again on the same port.
    pub fn stop(&self) -> Result<(), String> {
        run(
            command(self.as_postgres_user, &self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Stops the server after ending every session (`pg_ctl stop -m fast`): each backend
    /// reports a FATAL error to its client and closes, for fault tests. [`restart`](Self::restart)
    /// starts it again on the same port.
    pub fn stop_fast(&self) -> Result<(), String> {
        run(
            command(self.as_postgres_user, &self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Suspends (`SIGSTOP`) or resumes (`SIGCONT`) the server's postmaster and every backend, so
    /// that connections stay open but nothing replies: a database that hangs, for fault tests.
    pub fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .map_err(|error| format!("could not read postmaster.pid: {error}"))?;
        let postmaster = pid_file
            .lines()
            .next()
            .ok_or_else(|| "postmaster.pid is empty".to_owned())?
            .trim()
            .to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .map_err(|error| format!("could not run pgrep: {error}"))?;
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        run(
            Command::new("kill").arg(format!("-{signal}")).args(&pids),
            "kill",
        )
    }

    /// Starts the stopped server again on the same port and waits until it accepts connections.
    pub fn restart(&self) -> Result<(), String> {
        let directory = self
            .data
            .parent()
            .ok_or_else(|| "the data directory has no parent".to_owned())?;
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200{}",
            self.port,
            directory.display(),
            self.extra_options
        );
        run(
            command(self.as_postgres_user, &self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(directory.join("server.log"))
                .args(["-o", &options, "-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
    }
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        if self.directory.is_some() {
            let _ = command(self.as_postgres_user, &self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Returns the directory of `initdb` and `pg_ctl`: the one on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`).
fn find_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or_default()
    });
    versions.pop()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn command(as_postgres_user: bool, program: &Path) -> Command {
    if as_postgres_user {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not run {what}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free local port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("no free local port: {error}"))
}
