//! House rules checked on every test run: each source file opens with a `//!` line saying what it
//! owns, nothing unfinished (`todo!`, `unimplemented!`, `dbg!`) is left in `src/`, and the layering
//! invariants of ARCHITECTURE.md hold (who may name tonic, prost, diesel, the pool).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("src"));
    files.extend(rust_files(&root.join("tests")));
    files.push(root.join("build.rs"));
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable file");
            (p, text)
        })
        .collect()
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let missing: Vec<_> = sources().into_iter().filter(|(_, text)| !text.starts_with("//!")).map(|(p, _)| p).collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:?}");
}

#[test]
fn no_unfinished_code_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for path in rust_files(&root) {
        let text = std::fs::read_to_string(&path).expect("readable file");
        for needle in ["todo!(", "unimplemented!(", "dbg!("] {
            assert!(!text.contains(needle), "{} contains {needle}", path.display());
        }
    }
}

/// The source files under `src/<dir>`, without comment lines.
fn code_in(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    rust_files(&root)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable file");
            let code: Vec<&str> = text.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
            (path, code.join("\n"))
        })
        .collect()
}

/// Each "Architecture Invariant" of ARCHITECTURE.md about who may know what, as (directory,
/// what its code must never name, the invariant).
const LAYERING: &[(&str, &[&str], &str)] = &[
    ("storage", &["tonic::", "use tonic", "prost::", "use prost"], "only grpc/ knows tonic and prost"),
    ("domain", &["tonic::", "use tonic", "prost::", "use prost"], "only grpc/ knows tonic and prost"),
    ("retry", &["tonic::", "use tonic", "prost::", "use prost"], "only grpc/ knows tonic and prost"),
    ("domain", &["diesel", "bb8", "tokio_postgres"], "only storage/ knows diesel, bb8 and tokio-postgres"),
    ("retry", &["diesel", "bb8", "tokio_postgres"], "only storage/ knows diesel, bb8 and tokio-postgres"),
    ("grpc", &["diesel", "bb8", "tokio_postgres"], "only storage/ knows diesel, bb8 and tokio-postgres"),
    ("retry", &["crate::storage", "crate::grpc", "tokio::time::sleep"], "retry classification and policy are pure"),
    ("grpc", &["storage::pool", "storage::Pool"], "handlers never touch the pool"),
    ("config", &["crate::storage", "crate::grpc", "crate::telemetry"], "config is a leaf"),
    (
        "bin/checkpointd-bench",
        &["diesel", "bb8", "tokio_postgres", "storage::Pool", "storage::pool", "checkpointd::app"],
        "the load generator is a client of the gRPC API; its SQL comes only from storage::ReferenceSql",
    ),
];

#[test]
fn every_layering_invariant_holds() {
    let mut broken = Vec::new();
    for (dir, forbidden, invariant) in LAYERING {
        for (path, code) in code_in(dir) {
            for name in forbidden.iter().filter(|name| code.contains(*name)) {
                broken.push(format!("{} names {name}: {invariant}", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
