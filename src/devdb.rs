//! A private, throwaway PostgreSQL cluster started from the local installation's binaries, for
//! `checkpointd dev` and for tests that need to restart, stop or reconfigure a server.
//!
//! When run as root (initdb refuses root), the cluster belongs to the `postgres` system user and
//! every server command runs through `runuser`. Dropping the cluster stops it and removes a
//! temporary data directory.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The cluster could not be created or controlled.
#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    /// No server binaries were found.
    #[error(
        "no PostgreSQL server binaries found (looked for initdb in $PG_BIN_DIR, `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and /usr/local/pgsql/bin); install the PostgreSQL server package \
         or point --database-url at an existing database"
    )]
    NoBinaries,
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// What ran.
        command: String,
        /// Its stderr (and stdout).
        output: String,
    },
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// How to create the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Keep the data here (kept after stop); a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// TCP port; a free one when `None`.
    pub port: Option<u16>,
    /// Extra `postgresql.conf` lines.
    pub settings: Vec<String>,
    /// Replaces `pg_hba.conf` when set.
    pub hba: Option<String>,
    /// Files to put into the data directory before start (name, contents, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// `listen_addresses`; `127.0.0.1` when `None`.
    pub listen_address: Option<String>,
    /// Run the server inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Create the data directory as a streaming standby of the server on 127.0.0.1 at this port,
    /// registered under `standby_name` (for `synchronous_standby_names`).
    pub standby_of: Option<(u16, String)>,
}

/// A running cluster.
#[derive(Debug)]
pub struct LocalCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    listen_address: String,
    netns: Option<String>,
    run_as: Option<String>,
    _temp: Option<tempfile::TempDir>,
    stopped: bool,
}

/// How `pg_ctl` stops a cluster (its `-m` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Disconnect clients (terminating their backends with 57P01), then shut down cleanly.
    Fast,
    /// Quit at once, as a crash would: crash recovery runs at the next start.
    Immediate,
}

impl ShutdownMode {
    /// The mode's name, as `pg_ctl -m` and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

impl LocalCluster {
    /// Creates (if needed) and starts a cluster with trust authentication on 127.0.0.1.
    pub fn start(options: ClusterOptions) -> Result<Self, DevDbError> {
        let bin_dir = find_bin_dir().ok_or(DevDbError::NoBinaries)?;
        let temp = tempfile::Builder::new()
            .prefix("checkpointd-pg-")
            .tempdir()
            .map_err(|e| DevDbError::Io("creating a temporary directory".into(), e))?;
        let run_as = if is_root(temp.path()) { Some("postgres".to_owned()) } else { None };
        let (data_dir, temp) = match &options.data_dir {
            Some(dir) => (dir.clone(), Some(temp)),
            None => (temp.path().join("data"), Some(temp)),
        };
        let socket_dir = temp.as_ref().map_or_else(|| data_dir.clone(), |t| t.path().join("socket"));
        let port = options.port.unwrap_or_else(free_port);
        let listen_address = options.listen_address.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        let netns = options.netns.clone();
        let cluster =
            Self { bin_dir, data_dir, socket_dir, port, listen_address, netns, run_as, _temp: temp, stopped: true };
        cluster.prepare_dirs()?;
        if let Some((primary_port, name)) = &options.standby_of {
            cluster.base_backup(*primary_port, name)?;
        } else if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initdb(&options)?;
        }
        let mut cluster = cluster;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A URL for `database` as the `postgres` superuser over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL as the superuser through psql (for test setup and fault injection).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, DevDbError> {
        let port = self.port.to_string();
        let socket = self.socket_dir.display().to_string();
        let output = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `pg_ctl restart` with the given mode.
    pub fn restart(&mut self, mode: ShutdownMode) -> Result<(), DevDbError> {
        let mode = mode.as_str();
        // With a log file the new postmaster does not inherit (and hold open) our pipes.
        let log = self.data_dir.join("server.log").display().to_string();
        self.pg_ctl(&["restart", "-m", mode, "-w", "-t", "60", "-l", &log, "-o", &self.server_options()])
            .map_err(|e| self.with_log(e))?;
        self.stopped = false;
        Ok(())
    }

    /// `pg_ctl stop` with the given mode.
    pub fn stop(&mut self, mode: ShutdownMode) -> Result<(), DevDbError> {
        let mode = mode.as_str();
        if self.stopped {
            return Ok(());
        }
        self.pg_ctl(&["stop", "-m", mode, "-w"])?;
        self.stopped = true;
        Ok(())
    }

    /// Starts a stopped cluster again.
    pub fn start_server(&mut self) -> Result<(), DevDbError> {
        let log = self.data_dir.join("server.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &self.server_options()])
            .map_err(|e| self.with_log(e))?;
        self.stopped = false;
        Ok(())
    }

    /// Reloads the configuration (`pg_ctl reload`).
    pub fn reload(&self) -> Result<(), DevDbError> {
        self.pg_ctl(&["reload"]).map(drop)
    }

    /// Promotes a standby to primary (`pg_ctl promote`).
    pub fn promote(&self) -> Result<(), DevDbError> {
        self.pg_ctl(&["promote", "-w"]).map(drop)
    }

    /// The process id of the postmaster, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// Adds the end of the server log to a failed command's error.
    fn with_log(&self, error: DevDbError) -> DevDbError {
        let log = fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        match error {
            DevDbError::Command { command, output } => {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                DevDbError::Command { command, output: format!("{output}\nserver log:\n{}", tail.join("\n")) }
            }
            other => other,
        }
    }

    fn server_options(&self) -> String {
        format!("-p {} -k {} -c listen_addresses={}", self.port, self.socket_dir.display(), self.listen_address)
    }

    fn base_backup(&self, primary_port: u16, name: &str) -> Result<(), DevDbError> {
        let data = self.data_dir.display().to_string();
        let port = primary_port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &data, "-R", "-X", "stream", "-c", "fast"];
        self.run("pg_basebackup", &args)?;
        let conninfo =
            format!("primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres application_name={name}'\n");
        let auto = self.data_dir.join("postgresql.auto.conf");
        let mut settings =
            fs::read_to_string(&auto).map_err(|e| DevDbError::Io("reading postgresql.auto.conf".into(), e))?;
        settings.push_str(&conninfo);
        self.write_file("postgresql.auto.conf", settings.as_bytes(), 0o600)
    }

    fn prepare_dirs(&self) -> Result<(), DevDbError> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [&self.data_dir, &self.socket_dir] {
            fs::create_dir_all(dir).map_err(|e| DevDbError::Io(format!("creating {}", dir.display()), e))?;
        }
        // PostgreSQL refuses a data directory others can read.
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| DevDbError::Io(format!("chmod {}", self.data_dir.display()), e))?;
        if let Some(user) = &self.run_as {
            let parent = self.socket_dir.parent().unwrap_or(&self.socket_dir);
            let output =
                Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(parent).arg(&self.data_dir).output();
            check("chown", output)?;
        }
        Ok(())
    }

    fn initdb(&self, options: &ClusterOptions) -> Result<(), DevDbError> {
        let data = self.data_dir.display().to_string();
        self.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
        )?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut settings =
            fs::read_to_string(&conf).map_err(|e| DevDbError::Io("reading postgresql.conf".into(), e))?;
        settings.push_str("\n# checkpointd devdb\nfsync = on\nmax_connections = 200\n");
        for line in &options.settings {
            settings.push_str(line);
            settings.push('\n');
        }
        self.write_file("postgresql.conf", settings.as_bytes(), 0o600)?;
        if let Some(hba) = &options.hba {
            self.write_file("pg_hba.conf", hba.as_bytes(), 0o600)?;
        }
        for (name, contents, mode) in &options.files {
            self.write_file(name, contents, *mode)?;
        }
        Ok(())
    }

    /// Writes a file into the data directory, owned by the server's user.
    pub fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), DevDbError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir.join(name);
        fs::write(&path, contents).map_err(|e| DevDbError::Io(format!("writing {}", path.display()), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| DevDbError::Io(format!("chmod {}", path.display()), e))?;
        if let Some(user) = &self.run_as {
            check("chown", Command::new("chown").arg(format!("{user}:{user}")).arg(&path).output())?;
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, DevDbError> {
        let data = self.data_dir.display().to_string();
        let mut full = vec!["-D", data.as_str()];
        full.extend_from_slice(args);
        self.run("pg_ctl", &full)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, DevDbError> {
        let binary = self.bin_dir.join(program);
        let mut words: Vec<std::ffi::OsString> = Vec::new();
        if let Some(netns) = &self.netns {
            words.extend(["ip", "netns", "exec", netns.as_str()].map(Into::into));
        }
        if let Some(user) = &self.run_as {
            words.extend(["runuser", "-u", user.as_str(), "--"].map(Into::into));
        }
        words.push(binary.into());
        let mut command = Command::new(&words[0]);
        command.args(&words[1..]).args(args).current_dir(std::env::temp_dir());
        check(program, command.output())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop(ShutdownMode::Immediate) {
            eprintln!("could not stop the throwaway PostgreSQL: {e}");
        }
    }
}

fn check(command: &str, output: std::io::Result<Output>) -> Result<Output, DevDbError> {
    let output = output.map_err(|e| DevDbError::Io(format!("running {command}"), e))?;
    if output.status.success() {
        return Ok(output);
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    Err(DevDbError::Command { command: command.to_owned(), output: text.trim().to_owned() })
}

/// True when files we create belong to root (initdb then has to run as another user).
fn is_root(dir: &Path) -> bool {
    fs::metadata(dir).map(|m| m.uid() == 0).unwrap_or(false)
}

/// A port the OS reports free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(55432)
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from).filter(|d| has_initdb(d)) {
        return Some(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_initdb(d)) {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    versions.push(PathBuf::from("/usr/local/pgsql/bin"));
    versions.into_iter().rev().find(|d| has_initdb(d))
}
