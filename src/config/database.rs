//! Where the database is and how to talk to it, resolved from flags, a URL and the environment.
//!
//! Each setting comes from the first source that has it:
//! 1. its `checkpointd` flag (or that flag's `CHECKPOINTD_*` variable),
//! 2. `DATABASE_URL` (URL or keyword form, libpq meanings and units),
//! 3. its libpq variable (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, …),
//! 4. the original deployment's variable (`host`, `port`, `user`, `password`, `dbname`),
//! 5. the default, chosen for cloud networks.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Secret;
use crate::config::conninfo::{self, ConnParams};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, without verification (libpq's `allow` maps here too).
    Prefer,
    /// TLS, not verified unless a root certificate is given (then as verify-ca).
    Require,
    /// TLS with a certificate chain verified against the root certificates.
    VerifyCa,
    /// As verify-ca, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => {
                Err(format!("sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"))
            }
        }
    }
}

/// libpq's `target_session_attrs` values that tokio-postgres supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetSession {
    /// Any server.
    Any,
    /// Only a server that accepts writes (the primary), tried host by host.
    ReadWrite,
}

impl TargetSession {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "any" => Ok(TargetSession::Any),
            "read-write" | "primary" => Ok(TargetSession::ReadWrite),
            other => Err(format!("target_session_attrs {other:?} is not one of any, read-write, primary")),
        }
    }
}

/// TLS towards PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTls {
    /// How much TLS to insist on.
    pub mode: SslMode,
    /// PEM file of the certificate authorities to trust; the system roots when absent.
    pub root_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// Everything needed to open a connection, after resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// Host names or IP addresses, tried in order.
    pub hosts: Vec<String>,
    /// One port per host, or one port for all.
    pub ports: Vec<u16>,
    /// The role to log in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<Secret>,
    /// The database.
    pub dbname: String,
    /// TLS settings.
    pub tls: DatabaseTls,
    /// `application_name`, visible in `pg_stat_activity`.
    pub application_name: String,
    /// Time allowed to open one connection to one host.
    pub connect_timeout: Duration,
    /// TCP keepalive probes on idle connections.
    pub keepalives: bool,
    /// Idle time before the first keepalive probe.
    pub keepalives_idle: Duration,
    /// Time between keepalive probes.
    pub keepalives_interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub keepalives_retries: u32,
    /// Linux `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged (catches half-open
    /// connections that keepalives alone miss).
    pub tcp_user_timeout: Duration,
    /// Which of several hosts to accept.
    pub target_session: TargetSession,
    /// `SET LOCAL statement_timeout` in every transaction (capped by the call's deadline).
    pub statement_timeout: Duration,
    /// `SET LOCAL idle_in_transaction_session_timeout` in every transaction.
    pub idle_in_transaction_timeout: Duration,
    /// Keep prepared statements across transactions. Turn off behind PgBouncer or Supavisor in
    /// transaction mode, where a later transaction may run on another server connection.
    pub statement_cache: bool,
}

impl DatabaseConfig {
    /// `user@host:port/dbname`, for logs: never the password.
    pub fn describe(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!("{}@{}:{}/{}", self.user, self.hosts.join(","), ports.join(","), self.dbname)
    }
}

/// Settings given as flags; `None` defers to the URL, the environment and the defaults.
#[derive(Debug, Clone, Default)]
pub struct DatabaseFlags {
    /// `--database-url`.
    pub url: Option<Secret>,
    /// A file holding the password (for container secrets).
    pub password_file: Option<PathBuf>,
    /// `sslmode`.
    pub ssl_mode: Option<SslMode>,
    /// `sslrootcert`.
    pub ssl_root_cert: Option<PathBuf>,
    /// `sslcert`.
    pub ssl_cert: Option<PathBuf>,
    /// `sslkey`.
    pub ssl_key: Option<PathBuf>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `keepalives_idle`.
    pub keepalives_idle: Option<Duration>,
    /// `keepalives_interval`.
    pub keepalives_interval: Option<Duration>,
    /// `keepalives_count`.
    pub keepalives_retries: Option<u32>,
    /// `tcp_user_timeout`.
    pub tcp_user_timeout: Option<Duration>,
    /// `target_session_attrs`.
    pub target_session: Option<TargetSession>,
    /// `statement_timeout`.
    pub statement_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout`.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// The prepared statement cache.
    pub statement_cache: Option<bool>,
}

/// A database setting that cannot be used. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseConfigError {
    /// The connection string is malformed.
    #[error(transparent)]
    ConnInfo(#[from] conninfo::ConnInfoError),
    /// A value is out of range or unknown.
    #[error("database setting {name}: {problem}")]
    Invalid {
        /// The setting.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The password file cannot be read.
    #[error("cannot read the database password file {path}: {problem}")]
    PasswordFile {
        /// The file.
        path: String,
        /// The IO error.
        problem: String,
    },
}

/// Connection-string keywords checkpointd understands; anything else is refused, as libpq does.
const KNOWN_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "prepare_threshold",
];

/// Resolves the settings. `env` reads an environment variable (a closure, so tests need no
/// process environment).
pub fn resolve(
    flags: &DatabaseFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DatabaseConfig, DatabaseConfigError> {
    let url = match &flags.url {
        Some(url) => conninfo::parse(url.expose())?,
        None => ConnParams::new(),
    };
    if let Some(unknown) = url.keys().find(|k| !KNOWN_KEYWORDS.contains(&k.as_str())) {
        return Err(invalid(unknown, "is not a connection parameter checkpointd knows"));
    }
    let source = Sources { url: &url, env };
    let hosts =
        source.text(&["host", "hostaddr"], &["PGHOST", "PGHOSTADDR"], &["host"]).unwrap_or_else(|| "localhost".into());
    let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
    let user = source.text(&["user"], &["PGUSER"], &["user"]).unwrap_or_else(|| "postgres".into());
    let dbname = source.text(&["dbname"], &["PGDATABASE"], &["dbname"]).unwrap_or_else(|| user.clone());
    Ok(DatabaseConfig {
        ports: ports(&source, hosts.len())?,
        password: password(flags, &source)?,
        tls: tls(flags, &source)?,
        application_name: flags
            .application_name
            .clone()
            .or_else(|| source.text(&["application_name"], &["PGAPPNAME"], &[]))
            .unwrap_or_else(|| "checkpointd".into()),
        connect_timeout: pick(flags.connect_timeout, source.seconds("connect_timeout", "PGCONNECT_TIMEOUT")?, 10),
        keepalives: source.text(&["keepalives"], &[], &[]).is_none_or(|v| v != "0"),
        keepalives_idle: pick(flags.keepalives_idle, source.seconds("keepalives_idle", "")?, 30),
        keepalives_interval: pick(flags.keepalives_interval, source.seconds("keepalives_interval", "")?, 10),
        keepalives_retries: flags.keepalives_retries.or(source.number("keepalives_count")?).unwrap_or(3),
        tcp_user_timeout: flags
            .tcp_user_timeout
            .or(source.millis("tcp_user_timeout")?)
            .unwrap_or(Duration::from_secs(30)),
        target_session: target_session(flags, &source)?,
        statement_timeout: flags
            .statement_timeout
            .or(source.millis("statement_timeout")?)
            .unwrap_or(Duration::from_secs(30)),
        idle_in_transaction_timeout: flags
            .idle_in_transaction_timeout
            .or(source.millis("idle_in_transaction_session_timeout")?)
            .unwrap_or(Duration::from_secs(60)),
        statement_cache: flags
            .statement_cache
            .unwrap_or_else(|| url.get("prepare_threshold").is_none_or(|v| v != "none")),
        hosts,
        user,
        dbname,
    })
}

struct Sources<'a> {
    url: &'a ConnParams,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// The first non-empty value among URL keywords, libpq variables and legacy variables.
    fn text(&self, keywords: &[&str], libpq_vars: &[&str], legacy_vars: &[&str]) -> Option<String> {
        let from_url = keywords.iter().find_map(|k| self.url.get(*k).cloned());
        let from_env = libpq_vars.iter().chain(legacy_vars).find_map(|v| (self.env)(v));
        from_url.or(from_env).filter(|v| !v.is_empty())
    }

    fn number(&self, keyword: &str) -> Result<Option<u32>, DatabaseConfigError> {
        self.text(&[keyword], &[], &[])
            .map(|v| v.trim().parse::<u32>().map_err(|_| invalid(keyword, &format!("{v:?} is not a whole number"))))
            .transpose()
    }

    fn seconds(&self, keyword: &str, libpq_var: &str) -> Result<Option<Duration>, DatabaseConfigError> {
        let vars: &[&str] = if libpq_var.is_empty() { &[] } else { &[libpq_var] };
        self.text(&[keyword], vars, &[])
            .map(|v| {
                v.trim().parse::<u64>().map(Duration::from_secs).map_err(|_| invalid(keyword, "must be whole seconds"))
            })
            .transpose()
    }

    fn millis(&self, keyword: &str) -> Result<Option<Duration>, DatabaseConfigError> {
        self.number(keyword).map(|n| n.map(|ms| Duration::from_millis(u64::from(ms))))
    }
}

fn invalid(name: &str, problem: &str) -> DatabaseConfigError {
    DatabaseConfigError::Invalid { name: name.to_owned(), problem: problem.to_owned() }
}

fn pick(flag: Option<Duration>, source: Option<Duration>, default_secs: u64) -> Duration {
    flag.or(source).unwrap_or(Duration::from_secs(default_secs))
}

fn ports(source: &Sources<'_>, hosts: usize) -> Result<Vec<u16>, DatabaseConfigError> {
    let text = source.text(&["port"], &["PGPORT"], &["port"]).unwrap_or_else(|| "5432".into());
    let ports: Vec<u16> = text
        .split(',')
        .map(|p| if p.is_empty() { Ok(5432) } else { p.trim().parse::<u16>() })
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("port", &format!("{text:?} is not a port number (or a comma-separated list)")))?;
    if ports.len() != 1 && ports.len() != hosts {
        return Err(invalid("port", "give one port, or one per host"));
    }
    Ok(ports)
}

fn password(flags: &DatabaseFlags, source: &Sources<'_>) -> Result<Option<Secret>, DatabaseConfigError> {
    if let Some(path) = &flags.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| DatabaseConfigError::PasswordFile {
            path: path.display().to_string(),
            problem: e.kind().to_string(),
        })?;
        return Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))));
    }
    Ok(source.text(&["password"], &["PGPASSWORD"], &["password"]).map(Secret::new))
}

fn tls(flags: &DatabaseFlags, source: &Sources<'_>) -> Result<DatabaseTls, DatabaseConfigError> {
    let mode = match flags.ssl_mode {
        Some(mode) => mode,
        None => source
            .text(&["sslmode"], &["PGSSLMODE"], &[])
            .map(|v| SslMode::parse(&v).map_err(|p| invalid("sslmode", &p)))
            .transpose()?
            .unwrap_or(SslMode::Prefer),
    };
    let path = |flag: &Option<PathBuf>, keyword: &str, var: &str| {
        flag.clone().or_else(|| source.text(&[keyword], &[var], &[]).map(PathBuf::from))
    };
    Ok(DatabaseTls {
        mode,
        root_cert: path(&flags.ssl_root_cert, "sslrootcert", "PGSSLROOTCERT"),
        client_cert: path(&flags.ssl_cert, "sslcert", "PGSSLCERT"),
        client_key: path(&flags.ssl_key, "sslkey", "PGSSLKEY"),
    })
}

fn target_session(flags: &DatabaseFlags, source: &Sources<'_>) -> Result<TargetSession, DatabaseConfigError> {
    if let Some(target) = flags.target_session {
        return Ok(target);
    }
    source
        .text(&["target_session_attrs"], &["PGTARGETSESSIONATTRS"], &[])
        .map(|v| TargetSession::parse(&v).map_err(|p| invalid("target_session_attrs", &p)))
        .transpose()
        .map(|t| t.unwrap_or(TargetSession::Any))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(url: Option<&str>, vars: &[(&str, &str)]) -> Result<DatabaseConfig, DatabaseConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let flags = DatabaseFlags { url: url.map(Secret::new), ..Default::default() };
        resolve(&flags, &|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_point_at_a_local_database() {
        let config = resolve_with(None, &[]).expect("defaults");
        assert_eq!(config.describe(), "postgres@localhost:5432/postgres");
        assert_eq!(config.tls.mode, SslMode::Prefer);
        assert_eq!(config.tcp_user_timeout, Duration::from_secs(30));
        assert!(config.statement_cache);
    }

    #[test]
    fn the_url_wins_over_libpq_variables_which_win_over_legacy_ones() {
        let vars = [
            ("PGHOST", "pghost"),
            ("host", "legacy"),
            ("PGUSER", "pguser"),
            ("user", "legacy"),
            ("dbname", "legacydb"),
        ];
        let config = resolve_with(Some("postgresql://urluser@/"), &vars).expect("valid");
        assert_eq!(config.hosts, ["pghost"]);
        assert_eq!(config.user, "urluser");
        assert_eq!(config.dbname, "legacydb");
        let config = resolve_with(None, &[("host", "legacy"), ("port", "6543"), ("password", "pw")]).expect("valid");
        assert_eq!(config.describe(), "postgres@legacy:6543/postgres");
        assert_eq!(config.password, Some(Secret::new("pw")));
    }

    #[test]
    fn libpq_units_are_kept() {
        let url =
            "postgresql://h/db?connect_timeout=20&keepalives_idle=600&tcp_user_timeout=60000&statement_timeout=300000";
        let config = resolve_with(Some(url), &[]).expect("valid");
        assert_eq!(config.connect_timeout, Duration::from_secs(20));
        assert_eq!(config.keepalives_idle, Duration::from_secs(600));
        assert_eq!(config.tcp_user_timeout, Duration::from_secs(60), "libpq gives tcp_user_timeout in ms");
        assert_eq!(config.statement_timeout, Duration::from_secs(300));
    }

    #[test]
    fn several_hosts_take_their_ports_and_session_target() {
        let url = "postgresql://a:5432,b:5433/db?target_session_attrs=read-write&sslmode=verify-full";
        let config = resolve_with(Some(url), &[]).expect("valid");
        assert_eq!(config.hosts, ["a", "b"]);
        assert_eq!(config.ports, [5432, 5433]);
        assert_eq!(config.target_session, TargetSession::ReadWrite);
        assert_eq!(config.tls.mode, SslMode::VerifyFull);
    }

    #[test]
    fn flags_win_over_the_url() {
        let flags = DatabaseFlags {
            url: Some(Secret::new("postgresql://h/db?sslmode=disable&application_name=x")),
            ssl_mode: Some(SslMode::Require),
            application_name: Some("flag".into()),
            ..Default::default()
        };
        let config = resolve(&flags, &|_| None).expect("valid");
        assert_eq!(config.tls.mode, SslMode::Require);
        assert_eq!(config.application_name, "flag");
    }

    #[test]
    fn bad_values_are_named_and_the_password_never_shown() {
        let err = resolve_with(Some("postgresql://u:hunter2@h/db?sslmode=sometimes"), &[]).expect_err("bad");
        assert!(err.to_string().contains("sslmode"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        let err = resolve_with(Some("postgresql://u:hunter2@h/db?bogus=1"), &[]).expect_err("bad");
        assert_eq!(err.to_string(), "database setting bogus: is not a connection parameter checkpointd knows");
        assert!(resolve_with(None, &[("PGPORT", "x")]).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = resolve_with(Some("postgresql://u:hunter2@h/db"), &[]).expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn prepare_threshold_none_turns_the_statement_cache_off() {
        let config = resolve_with(Some("postgresql://h/db?prepare_threshold=none"), &[]).expect("valid");
        assert!(!config.statement_cache);
    }
}
