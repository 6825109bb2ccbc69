//! A throwaway PostgreSQL that only accepts TLS and a password from the application role, as a
//! cloud database does; the superuser gets in over the Unix socket for fault injection.

use std::path::PathBuf;

use checkpointd::devdb::{ClusterOptions, LocalCluster};

use super::certs::{TestCertificates, generate};

/// The role checkpointd logs in as.
pub const APP_USER: &str = "app";
/// The database checkpointd uses.
pub const APP_DB: &str = "ckpt";

/// A running TLS-only cluster.
#[derive(Debug)]
pub struct Db {
    pub cluster: LocalCluster,
    pub password: String,
    pub certs: TestCertificates,
    ca_file: tempfile::NamedTempFile,
}

/// Extra knobs for a cluster.
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    pub settings: Vec<String>,
    pub listen_address: Option<String>,
    pub netns: Option<String>,
    pub extra_hba: Vec<String>,
    pub port: Option<u16>,
}

/// The password of this run's application role; every secrets check looks for it.
pub fn password() -> String {
    static PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PASSWORD.get_or_init(|| format!("pw-{}", uuid::Uuid::new_v4().simple())).clone()
}

impl Db {
    /// Starts a TLS-only cluster with the application role and database.
    pub fn start(options: DbOptions) -> Db {
        let mut names = vec!["localhost", "127.0.0.1"];
        if let Some(address) = options.listen_address.as_deref() {
            names.push(address);
        }
        let certs = generate(&names);
        let mut hba = String::from(
            "local all all trust\n\
             host replication all 127.0.0.1/32 trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             hostnossl all app 0.0.0.0/0 reject\n\
             hostssl all app 0.0.0.0/0 scram-sha-256\n",
        );
        for line in &options.extra_hba {
            hba.push_str(line);
            hba.push('\n');
        }
        let mut settings = vec![
            "ssl = on".to_owned(),
            "ssl_cert_file = 'server.crt'".to_owned(),
            "ssl_key_file = 'server.key'".to_owned(),
            "max_connections = 60".to_owned(),
            "password_encryption = 'scram-sha-256'".to_owned(),
            "log_min_messages = warning".to_owned(),
        ];
        settings.extend(options.settings.clone());
        let cluster = LocalCluster::start(ClusterOptions {
            settings,
            hba: Some(hba),
            files: vec![
                ("server.crt".into(), certs.cert_pem.clone().into_bytes(), 0o600),
                ("server.key".into(), certs.key_pem.clone().into_bytes(), 0o600),
            ],
            listen_address: options.listen_address.clone(),
            netns: options.netns.clone(),
            port: options.port,
            ..Default::default()
        })
        .expect("start the throwaway PostgreSQL");
        let password = password();
        cluster
            .psql("postgres", &format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{password}'"))
            .expect("create the application role");
        cluster.psql("postgres", &format!("CREATE DATABASE {APP_DB} OWNER {APP_USER}")).expect("create the database");
        let mut ca_file = tempfile::NamedTempFile::new().expect("CA file");
        std::io::Write::write_all(&mut ca_file, certs.ca_pem.as_bytes()).expect("write CA");
        Db { cluster, password, certs, ca_file }
    }

    /// The CA file that verifies this server.
    pub fn ca_path(&self) -> PathBuf {
        self.ca_file.path().to_owned()
    }

    /// checkpointd's connection string: TLS verified against the test CA, password in the URL.
    pub fn url(&self) -> String {
        self.url_for("localhost", self.cluster.port())
    }

    /// The same, to another host and port (a proxy, a pooler).
    pub fn url_for(&self, host: &str, port: u16) -> String {
        format!(
            "postgresql://{APP_USER}:{}@{host}:{port}/{APP_DB}?sslmode=verify-full&sslrootcert={}",
            self.password,
            self.ca_path().display()
        )
    }

    /// Runs SQL as the superuser in the application database.
    pub fn sql(&self, sql: &str) -> String {
        self.cluster.psql(APP_DB, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Terminates checkpointd's backends matching `condition` (SQL on pg_stat_activity); returns how many.
    pub fn terminate(&self, condition: &str) -> usize {
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = '{APP_USER}' AND pid <> pg_backend_pid() AND ({condition})"
        );
        self.sql(&sql).parse().unwrap_or(0)
    }
}
