//! Which threads a caller may touch: everything, or only thread ids with given prefixes (one
//! tenant's threads).

/// The threads a caller may read and write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every thread (no authentication, or an unscoped token).
    #[default]
    All,
    /// Only thread ids starting with one of these prefixes.
    Prefixes(Vec<String>),
}

impl Scope {
    /// Whether `thread_id` is inside the scope.
    pub fn allows(&self, thread_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Prefixes(prefixes) => prefixes.iter().any(|p| thread_id.starts_with(p.as_str())),
        }
    }

    /// The first of `thread_ids` outside the scope.
    pub fn first_denied<'a>(&self, thread_ids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        thread_ids.into_iter().find(|t| !self.allows(t))
    }

    /// The prefixes a query must be narrowed to, or `None` for every thread.
    pub fn prefixes(&self) -> Option<&[String]> {
        match self {
            Scope::All => None,
            Scope::Prefixes(prefixes) => Some(prefixes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_allow_only_their_threads() {
        let scope = Scope::Prefixes(vec!["tenant-a/".into(), "shared:".into()]);
        assert!(scope.allows("tenant-a/run-1"));
        assert!(scope.allows("shared:x"));
        assert!(!scope.allows("tenant-b/run-1"));
        assert!(!scope.allows("tenant-a"), "the prefix includes its separator");
        assert_eq!(scope.first_denied(["tenant-a/1", "tenant-b/2"]), Some("tenant-b/2"));
        assert!(Scope::All.allows("anything"));
    }
}
