//! House rules checked on every test run: each source file opens with a `//!` line saying what it
//! owns, and nothing unfinished (`todo!`, `unimplemented!`, `dbg!`) is left in `src/`.

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
