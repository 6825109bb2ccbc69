//! The pgbench reference: the statements checkpointd sends for each operation (taken from the
//! store itself), in the same transactions and round trips, with the same values, driven by
//! pgbench against the same database. Its rate is the database's own limit for that work.
//!
//! One transaction is three round trips, as in the store: `BEGIN` with the `SET LOCAL` limits
//! (one simple-query message there; one pipeline here), the statement, `COMMIT`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::BenchError;
use crate::payload::{checkpoint_id, put_request, put_writes_request};
use crate::runner::{Driver, Op, Step, latency_step};
use checkpointd::storage::{ReferenceSql, ReferenceTransaction};

/// Checkpoints the List reference reads.
const LIST_LIMIT: u64 = 10;

/// Drives pgbench.
#[derive(Debug, Clone)]
pub(crate) struct Pgbench {
    pub binary: PathBuf,
    pub database_url: String,
    /// A thread holding one LangGraph-shaped checkpoint (GetTuple reads its latest).
    pub get_thread: String,
    /// The thread List reads the latest 10 of.
    pub list_thread: String,
}

/// One operation's script and its fixed values (`-D name=value`).
struct Script {
    text: String,
    values: Vec<(String, String)>,
}

impl Pgbench {
    /// Runs `op` with `concurrency` clients for the warm-up plus the window, and measures the
    /// window. When the database refuses that many connections (`max_connections`), pgbench runs
    /// with half as many until it connects, and the step says so.
    pub(crate) async fn measure(
        &self,
        op: Op,
        concurrency: usize,
        repetition: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Step, BenchError> {
        let script = self.script(op);
        let mut clients = concurrency;
        loop {
            match self.measure_with(&script, clients, warmup, duration).await {
                Ok((latencies, errors)) => {
                    let step =
                        latency_step(Driver::Pgbench, (op, concurrency, repetition), latencies, errors, duration);
                    let note = (clients < concurrency).then(|| {
                        format!("pgbench ran {clients} clients: the database refused {concurrency} connections")
                    });
                    return Ok(Step { note, ..step });
                }
                Err(e) if e.is_too_many_clients() && clients > 1 => clients /= 2,
                Err(e) => return Err(e),
            }
        }
    }

    async fn measure_with(
        &self,
        script: &Script,
        clients: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<(Vec<u32>, u64), BenchError> {
        let dir = std::env::temp_dir().join(format!("checkpointd-pgbench-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(BenchError::io("create", &dir))?;
        let outcome = self.run_in(&dir, script, clients, warmup, duration).await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    async fn run_in(
        &self,
        dir: &Path,
        script: &Script,
        concurrency: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<(Vec<u32>, u64), BenchError> {
        let file = dir.join("script.sql");
        std::fs::write(&file, &script.text).map_err(BenchError::io("write", &file))?;
        let seconds = (warmup + duration).as_secs_f64().ceil().max(1.0) as u64 + 1;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(["--no-vacuum", "--protocol=prepared", "--log"])
            .arg(format!("--log-prefix={}", dir.join("log").display()))
            .arg(format!("--client={concurrency}"))
            .arg(format!("--jobs={}", concurrency.min(2)))
            .arg(format!("--time={seconds}"))
            .arg(format!("--file={}", file.display()));
        for (name, value) in &script.values {
            command.arg(format!("--define={name}={value}"));
        }
        command.arg(&self.database_url).kill_on_drop(true);
        let started = SystemTime::now();
        let output = command.output().await.map_err(BenchError::io("run", &self.binary))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(BenchError::Pgbench { status: output.status, stderr });
        }
        let from = started + warmup;
        let latencies = read_logs(dir, from, from + duration)?;
        Ok((latencies, failed_transactions(&String::from_utf8_lossy(&output.stdout))))
    }

    fn script(&self, op: Op) -> Script {
        let sql = ReferenceSql::new(Duration::from_secs(30), Duration::from_secs(60), LIST_LIMIT);
        let run = unique_run_number();
        match op {
            Op::Put => {
                let put = put_request("pgbench", 1, Some(&checkpoint_id(0)));
                let blob = put.blobs.first().and_then(|b| b.value.as_ref()).and_then(|v| v.data.clone());
                let version = put.blobs.first().map(|b| b.version.clone()).unwrap_or_default();
                // A fresh thread per transaction, so the blob is inserted every time as in the load
                // generator (where the version grows instead).
                script(
                    &sql.put,
                    &["\\set seq :seq + 1", "\\set p1 :seq * 1000 + :client_id"],
                    vec![
                        ("seq", run.to_string()),
                        ("p2", String::new()),
                        ("p3", text_array(&["messages"])),
                        ("p4", text_array(&[&version])),
                        ("p5", text_array(&["msgpack"])),
                        ("p6", bytea_array(&[blob.unwrap_or_default()])),
                        ("p8", checkpoint_id(0)),
                        ("p9", String::from_utf8_lossy(&put.checkpoint_json).into_owned()),
                        ("p10", String::from_utf8_lossy(&put.metadata_json).into_owned()),
                    ],
                    &[("$7", ":seq")],
                )
            }
            Op::PutWrites => {
                let writes = put_writes_request("pgbench", 0, 0);
                let channels: Vec<&str> = writes.writes.iter().map(|w| w.channel.as_str()).collect();
                let values: Vec<&checkpointd::grpc::pb::TypedValue> =
                    writes.writes.iter().filter_map(|w| w.value.as_ref()).collect();
                let types: Vec<&str> = values.iter().map(|v| v.r#type.as_str()).collect();
                let blobs: Vec<Vec<u8>> = values.iter().map(|v| v.data.clone().unwrap_or_default()).collect();
                let indexes: Vec<String> = (0..channels.len()).map(|i| i.to_string()).collect();
                script(
                    &sql.put_writes,
                    &["\\set seq :seq + 1", "\\set p1 :run + :client_id"],
                    vec![
                        ("seq", "0".into()),
                        ("run", run.to_string()),
                        ("p2", String::new()),
                        ("p3", writes.checkpoint_id.clone()),
                        ("p5", writes.task_path.clone()),
                        ("p6", format!("{{{}}}", indexes.join(","))),
                        ("p7", text_array(&channels)),
                        ("p8", text_array(&types)),
                        ("p9", bytea_array(&blobs)),
                    ],
                    &[("$4", ":seq")],
                )
            }
            Op::GetTuple => {
                script(&sql.get_tuple, &[], vec![("p1", self.get_thread.clone()), ("p2", String::new())], &[])
            }
            Op::List => script(
                &sql.list,
                &[],
                vec![("p1", self.list_thread.clone()), ("p2", String::new()), ("p3", LIST_LIMIT.to_string())],
                &[],
            ),
        }
    }
}

/// A pgbench script for `transaction`: `setup` meta-commands, the BEGIN batch in one flight, the
/// statement (its `$n` become `:pn`, or the variable `renamed` gives), COMMIT.
///
/// pgbench cannot define an empty variable, so an empty value (the root namespace) is written
/// into the statement as the literal `''`.
fn script(
    transaction: &ReferenceTransaction,
    setup: &[&str],
    values: Vec<(&str, String)>,
    renamed: &[(&str, &str)],
) -> Script {
    let empty: Vec<(String, &str)> = values
        .iter()
        .filter(|(_, value)| value.is_empty())
        .map(|(name, _)| (format!("${}", &name[1..]), "''"))
        .collect();
    let mut renamed = renamed.to_vec();
    renamed.extend(empty.iter().map(|(from, to)| (from.as_str(), *to)));
    let values = values.into_iter().filter(|(_, value)| !value.is_empty());
    let mut text = String::new();
    for line in setup {
        let _ = writeln!(text, "{line}");
    }
    let autocommit = transaction.begin.is_empty();
    if !autocommit {
        text.push_str("\\startpipeline\n");
        for command in &transaction.begin {
            let _ = writeln!(text, "{command};");
        }
        text.push_str("\\endpipeline\n");
    }
    let _ = writeln!(text, "{};", placeholders_to_variables(&transaction.statement, &renamed));
    if !autocommit {
        text.push_str("COMMIT;\n");
    }
    Script { text, values: values.map(|(name, value)| (name.to_owned(), value)).collect() }
}

/// Replaces each `$n` with a pgbench variable: `:pn`, or the one `renamed` gives for it.
fn placeholders_to_variables(sql: &str, renamed: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let digits = rest[dollar + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let placeholder = &rest[dollar..dollar + 1 + digits];
        match renamed.iter().find(|(from, _)| *from == placeholder) {
            Some((_, to)) => out.push_str(to),
            None if digits > 0 => {
                let _ = write!(out, ":p{}", &placeholder[1..]);
            }
            None => out.push('$'),
        }
        rest = &rest[dollar + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// A PostgreSQL array literal of texts.
fn text_array(items: &[&str]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}

/// A PostgreSQL array literal of byteas, in hex.
fn bytea_array(items: &[Vec<u8>]) -> String {
    let hex: Vec<String> = items
        .iter()
        .map(|bytes| {
            let mut item = String::from("\"\\\\x");
            for byte in bytes {
                let _ = write!(item, "{byte:02x}");
            }
            item.push('"');
            item
        })
        .collect();
    format!("{{{}}}", hex.join(","))
}

/// Latencies (µs) of the transactions that ended in `[from, until)`, from pgbench's
/// per-transaction logs (`client tx latency_us script epoch_s epoch_us`).
fn read_logs(dir: &Path, from: SystemTime, until: SystemTime) -> Result<Vec<u32>, BenchError> {
    let micros = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let (from, until) = (micros(from), micros(until));
    let mut latencies = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(BenchError::io("list", dir))?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("log.") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(BenchError::io("read", entry.path()))?;
        latencies.extend(text.lines().filter_map(|line| log_line(line, from, until)));
    }
    Ok(latencies)
}

/// The latency of one log line, when its transaction ended in the window.
fn log_line(line: &str, from: u128, until: u128) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let latency: u32 = fields.get(2)?.parse().ok()?;
    let ended = fields.get(4)?.parse::<u128>().ok()? * 1_000_000 + fields.get(5)?.parse::<u128>().ok()?;
    (from..until).contains(&ended).then_some(latency)
}

/// pgbench's count of failed transactions (0 when it reports none).
fn failed_transactions(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A number unique to this moment, so each pgbench run writes fresh keys.
fn unique_run_number() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) * 1_000_000 + unique() % 1_000_000
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_variables_and_casts_survive() {
        let sql = "SELECT $1, $2::text[], $10 WHERE a = $7 AND b = '$'";
        assert_eq!(
            placeholders_to_variables(sql, &[("$7", ":seq")]),
            "SELECT :p1, :p2::text[], :p10 WHERE a = :seq AND b = '$'"
        );
    }

    #[test]
    fn array_literals_quote_and_hex_encode() {
        assert_eq!(text_array(&["a", "b\"c", "d\\e"]), r#"{"a","b\"c","d\\e"}"#);
        assert_eq!(bytea_array(&[vec![0x01, 0xab], vec![]]), r#"{"\\x01ab","\\x"}"#);
    }

    #[test]
    fn log_lines_outside_the_window_are_dropped() {
        assert_eq!(log_line("0 12 1530 0 1700000000 500000", 1_700_000_000_000_000, 1_700_000_001_000_000), Some(1530));
        assert_eq!(log_line("0 12 1530 0 1700000001 500000", 1_700_000_000_000_000, 1_700_000_001_000_000), None);
        assert_eq!(log_line("garbage", 0, u128::MAX), None);
    }

    #[test]
    fn failed_transactions_are_read_from_the_summary() {
        assert_eq!(
            failed_transactions(
                "number of transactions actually processed: 10\nnumber of failed transactions: 3 (2.0%)\n"
            ),
            3
        );
        assert_eq!(failed_transactions("tps = 5\n"), 0);
    }

    #[test]
    fn the_put_script_is_the_statement_alone_with_every_placeholder_bound() {
        let script = pgbench().script(Op::Put);
        assert!(!script.text.contains("BEGIN") && !script.text.contains("COMMIT"), "{}", script.text);
        assert!(script.text.contains("WITH new_blobs AS ("), "{}", script.text);
        assert!(!script.text.contains('$'));
        assert!(script.text.contains("SELECT :p1, '', b.channel"), "{}", script.text);
        for n in [3, 4, 5, 6, 8, 9, 10] {
            assert!(script.values.iter().any(|(name, _)| name == &format!("p{n}")), "p{n} unbound");
        }
    }

    fn pgbench() -> Pgbench {
        Pgbench {
            binary: "pgbench".into(),
            database_url: String::new(),
            get_thread: "g".into(),
            list_thread: "l".into(),
        }
    }

    #[test]
    fn the_list_script_pipelines_begin_with_its_limits_and_commits() {
        let script = pgbench().script(Op::List);
        assert!(
            script.text.contains("\\startpipeline\nBEGIN READ ONLY;\nSET LOCAL statement_timeout = 30000;\n"),
            "{}",
            script.text
        );
        assert!(script.text.contains("SET LOCAL jit = off;\n\\endpipeline\n"), "{}", script.text);
        assert!(script.text.ends_with(";\nCOMMIT;\n"), "{}", script.text);
    }
}
