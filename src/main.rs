//! The `checkpointd` binary: everything lives in the library (see `checkpointd::cli`).

fn main() -> std::process::ExitCode {
    checkpointd::cli::main()
}
