//! The `checkpointd` binary as an operator runs it: help, migrate, health, dev.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::process::{Command, Stdio};
use std::time::Duration;

use helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_checkpointd");

fn run(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run checkpointd")
}

#[test]
fn help_documents_every_setting_and_the_environment() {
    use clap::CommandFactory;
    let output = run(&["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    let cli = checkpointd::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("the serve command");
    let settings: Vec<_> =
        serve.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")).collect();
    assert!(settings.len() > 40, "every setting of serve: {}", settings.len());
    for setting in settings {
        let name = setting.get_long().unwrap_or_else(|| panic!("{} has a --flag", setting.get_id()));
        assert!(help.contains(&format!("--{name}")), "serve --help lacks --{name}");
        assert!(setting.get_help().is_some_and(|h| !h.to_string().is_empty()), "--{name} says what it does");
        if let Some(env) = setting.get_env() {
            let env = env.to_string_lossy();
            assert!(help.contains(env.as_ref()), "serve --help lacks {env} (for --{name})");
        }
    }
    for original in
        ["DATABASE_URL", "PGPASSWORD", "CHECKPOINT_MAX_RETRIES", "SSL_RETRY_DELAY", "ENABLE_POOL_RECREATION"]
    {
        assert!(help.contains(original), "serve --help lacks the original deployment's {original}");
    }
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let db = TestDb::create().await;
    for expected in ["applied [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "applied []"] {
        let output = run(&["migrate", "--database-url", &db.url], &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains(expected));
    }
}

#[tokio::test]
async fn a_wrong_password_fails_without_printing_it() {
    let output = run(&["migrate", "--database-url", "postgresql://nobody:hunter2-secret@127.0.0.1:5432/postgres"], &[]);
    assert!(!output.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!all.contains("hunter2-secret"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_exits_zero_only_when_serving() {
    let app = spawn_app().await;
    let address = format!("http://{}", app.addr);
    let serving = run(&["health", "--address", &address], &[]);
    assert_eq!(serving.status.code(), Some(0), "{}", String::from_utf8_lossy(&serving.stderr));
    let host_port = run(&["health", "--address", &app.addr.to_string()], &[]);
    assert_eq!(host_port.status.code(), Some(0), "host:port as typed: {}", String::from_utf8_lossy(&host_port.stderr));
    let unknown = run(&["health", "--address", &address, "--service", "nope"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    let closed = run(&["health", "--address", "http://127.0.0.1:1", "--timeout", "1s"], &[]);
    assert_eq!(closed.status.code(), Some(2));
}

#[tokio::test]
async fn dev_starts_a_private_database_serves_and_stops_everything_on_interrupt() {
    let port = checkpointd::devdb::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start checkpointd dev");
    let addr = listen.parse().expect("address");
    wait_until_serving(addr).await;
    let mut client =
        checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient::new(channel(addr).await);
    client.put(put("t", "", "c1", None)).await.expect("put against the dev database");
    assert!(get(&mut client, "t", "", None).await.is_some());

    Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("send SIGINT");
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        (status, out)
    });
    let (status, stdout) =
        tokio::time::timeout(Duration::from_secs(30), status).await.expect("stops in time").expect("join");
    assert!(status.expect("exit status").success());
    assert!(stdout.contains("PostgreSQL: postgresql://postgres@127.0.0.1:"), "{stdout}");
    let data_dir = stdout
        .lines()
        .find_map(|l| l.split("(data in ").nth(1))
        .map(|d| d.trim_end_matches(')').to_owned())
        .expect("data dir printed");
    assert!(!std::path::Path::new(&data_dir).exists(), "the throwaway data directory {data_dir} was removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_inside_a_call_carry_the_callers_trace_id() {
    let port = checkpointd::devdb::free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["serve", "--listen", &listen, "--pool-acquire-timeout", "200ms"])
        .env("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
        .env("CHECKPOINTD_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start checkpointd serve");
    let addr = listen.parse().expect("address");
    eventually(
        Duration::from_secs(20),
        "the server to answer",
        || async move { health_status(addr, "").await.is_some() },
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request =
        tonic::Request::new(checkpointd::grpc::pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() });
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    let mut client =
        checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient::new(channel(addr).await);
    assert_eq!(client.get_tuple(request).await.expect_err("no database").code(), tonic::Code::Unavailable);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("send SIGTERM");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failure = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "call failed")
        .unwrap_or_else(|| panic!("no 'call failed' line in:\n{stdout}"));
    assert_eq!(failure["span"]["trace_id"], trace_id, "{failure}");
    assert_eq!(failure["span"]["rpc.method"], "GetTuple", "{failure}");
}
