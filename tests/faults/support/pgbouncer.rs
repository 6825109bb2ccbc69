//! PgBouncer 1.18 (Debian's package, unpacked by scripts/install-test-tools) in transaction
//! pooling mode between checkpointd and the throwaway cluster.

use std::path::PathBuf;
use std::process::Command;

use super::cluster::{APP_DB, APP_USER, Db};

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    pub port: u16,
    dir: tempfile::TempDir,
}

fn root() -> PathBuf {
    std::env::var_os("CHECKPOINTD_PGBOUNCER_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/pgbouncer"))
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of `db` (TLS to the server, plaintext from
    /// clients, SCRAM both ways).
    pub fn start(db: &Db) -> PgBouncer {
        let binary = root().join("usr/sbin/pgbouncer");
        assert!(binary.is_file(), "PgBouncer is missing at {}: run scripts/install-test-tools", binary.display());
        let dir = tempfile::Builder::new().prefix("checkpointd-pgbouncer-").tempdir().expect("temp dir");
        let port = checkpointd::devdb::free_port();
        let ini = format!(
            "[databases]\n{APP_DB} = host=127.0.0.1 port={pg} dbname={APP_DB}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = 4\nmax_client_conn = 200\nserver_tls_sslmode = require\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             server_check_delay = 0\n",
            pg = db.cluster.port(),
            dir = dir.path().display(),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(dir.path().join("userlist.txt"), format!("\"{APP_USER}\" \"{}\"\n", db.password))
            .expect("userlist");
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()));
        run(Command::new("runuser")
            .args(["-u", "postgres", "--", "env"])
            .arg(format!("LD_LIBRARY_PATH={}", root().join("usr/lib/x86_64-linux-gnu").display()))
            .arg(&binary)
            .arg("-d")
            .arg(dir.path().join("pgbouncer.ini")));
        PgBouncer { port, dir }
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).ok().map(|p| p.trim().to_owned())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}
