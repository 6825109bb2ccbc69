//! Bearer tokens, as configured: one per line (or separated by `;`), each optionally named and
//! scoped to thread-id prefixes.
//!
//! ```text
//! # comments and blank lines are ignored
//! 3b1f8c0e5a7d4f2e9c6b8a1d0e3f5a7c                      full access
//! 9d2e4f6a8c0b1d3e5f7a9c1e3b5d7f9a name=tenant-a prefix=tenant-a/
//! 7c5a3e1d9b7f5d3c1a9e7c5b3a1f9d7b name=shared prefix=a/ prefix=b/
//! ```

use crate::config::Secret;

/// The shortest token accepted: shorter ones are guessable.
pub(super) const MIN_TOKEN_LENGTH: usize = 16;

/// One accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The token itself.
    pub token: Secret,
    /// A name for logs (never the token).
    pub name: String,
    /// Thread-id prefixes it may touch; empty means every thread.
    pub prefixes: Vec<String>,
}

/// A token list that cannot be used. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token entry {entry}: {problem}")]
pub struct TokenListError {
    /// The 1-based entry number.
    pub entry: usize,
    /// What is wrong.
    pub problem: String,
}

/// A token file that cannot be used. Names the file, never a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read the token file {path}: {kind}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why (not found, permission denied, …).
        kind: std::io::ErrorKind,
    },
    /// An entry is malformed.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Which entry, and what is wrong with it.
        error: TokenListError,
    },
}

/// Reads and parses the token list in `path`.
pub fn read_token_file(path: &std::path::Path) -> Result<Vec<TokenEntry>, TokenFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| TokenFileError::Read { path: path.to_owned(), kind: e.kind() })?;
    parse_tokens(&text).map_err(|error| TokenFileError::Parse { path: path.to_owned(), error })
}

/// Parses a token list.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, TokenListError> {
    let entries = text.split(['\n', ';']).map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#'));
    let mut tokens = Vec::new();
    for (index, entry) in entries.enumerate() {
        let number = index + 1;
        let error = |problem: &str| TokenListError { entry: number, problem: problem.to_owned() };
        let mut words = entry.split_whitespace();
        let token = words.next().unwrap_or_default();
        if token.len() < MIN_TOKEN_LENGTH {
            return Err(error(&format!("the token is shorter than {MIN_TOKEN_LENGTH} characters")));
        }
        let mut parsed =
            TokenEntry { token: Secret::new(token), name: format!("token-{number}"), prefixes: Vec::new() };
        for attribute in words {
            match attribute.split_once('=') {
                Some(("name", name)) if !name.is_empty() => parsed.name = name.to_owned(),
                Some(("prefix", prefix)) if !prefix.is_empty() => parsed.prefixes.push(prefix.to_owned()),
                Some((key, _)) => {
                    return Err(error(&format!("unknown or empty attribute {key:?} (use name= or prefix=)")));
                }
                None => return Err(error("attributes are written key=value (name= or prefix=)")),
            }
        }
        if tokens.iter().any(|t: &TokenEntry| t.token == parsed.token) {
            return Err(error("the same token appears twice"));
        }
        tokens.push(parsed);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaa1111";
    const B: &str = "bbbbbbbbbbbbbbbb2222";

    #[test]
    fn parses_names_prefixes_comments_and_separators() {
        let tokens =
            parse_tokens(&format!("# ops\n{A}\n\n{B} name=tenant-b prefix=b/ prefix=shared/ ; ")).expect("valid");
        assert_eq!(tokens.len(), 2);
        assert_eq!((tokens[0].name.as_str(), tokens[0].prefixes.len()), ("token-1", 0));
        assert_eq!(tokens[1].name, "tenant-b");
        assert_eq!(tokens[1].prefixes, ["b/", "shared/"]);
        assert_eq!(parse_tokens(&format!("{A};{B}")).map(|t| t.len()), Ok(2));
    }

    #[test]
    fn weak_duplicate_or_malformed_entries_are_refused_without_echoing_the_token() {
        let short = parse_tokens("short-token").expect_err("short");
        assert!(!short.to_string().contains("short-token"));
        assert!(parse_tokens(&format!("{A}\n{A}")).is_err());
        let bad = parse_tokens(&format!("{A} scope=x")).expect_err("unknown attribute");
        assert!(bad.to_string().contains("scope") && !bad.to_string().contains(A));
        assert!(parse_tokens(&format!("{A} prefix")).is_err());
    }
}
