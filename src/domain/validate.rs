//! Field-level checks that turn raw request values into trusted ones, naming the field on failure.

use crate::domain::{JsonDocument, JsonError, Limits};

/// A request field that cannot be accepted. The message names the field and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct ValidationError {
    /// The field, as the client named it (e.g. `blobs[2].channel`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ValidationError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

/// Checks fields against [`Limits`].
#[derive(Debug, Clone, Copy)]
pub struct Validator {
    limits: Limits,
}

impl Validator {
    /// A validator enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A required identifier: not empty, at most `max` bytes, no NUL character.
    pub fn required(&self, field: &str, value: String, max: usize) -> Result<String, ValidationError> {
        if value.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        self.text(field, value, max)
    }

    /// Text that may be empty: at most `max` bytes, no NUL character.
    pub fn text(&self, field: &str, value: String, max: usize) -> Result<String, ValidationError> {
        if value.len() > max {
            let problem = format!("is {} bytes long; the limit is {max}", value.len());
            return Err(ValidationError::new(field, problem));
        }
        if value.contains('\0') {
            return Err(ValidationError::new(field, "contains a NUL character, which PostgreSQL cannot store"));
        }
        Ok(value)
    }

    /// An optional identifier where empty means absent (LangGraph treats `""` as no id).
    pub fn optional(&self, field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ValidationError> {
        match value {
            Some(v) if !v.is_empty() => self.required(field, v, max).map(Some),
            _ => Ok(None),
        }
    }

    /// A JSON object; `empty_means` is used when the field is empty (or an error when `None`).
    pub fn json_object(
        &self,
        field: &str,
        bytes: Vec<u8>,
        empty_means: Option<JsonDocument>,
    ) -> Result<JsonDocument, ValidationError> {
        if bytes.is_empty() {
            return empty_means.ok_or_else(|| ValidationError::new(field, "must not be empty"));
        }
        JsonDocument::parse(bytes, self.limits.json_depth)
            .map_err(|e: JsonError| ValidationError::new(field, e.to_string()))
    }

    /// A list of ids, each required; duplicates are dropped, the first occurrence keeps its place.
    pub fn id_list(&self, field: &str, values: Vec<String>, max: usize) -> Result<Vec<String>, ValidationError> {
        if values.len() > self.limits.ids_per_request {
            let problem = format!("names {} ids; the limit is {}", values.len(), self.limits.ids_per_request);
            return Err(ValidationError::new(field, problem));
        }
        let mut seen = std::collections::HashSet::new();
        let mut unique = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let value = self.required(&format!("{field}[{i}]"), value, max)?;
            if seen.insert(value.clone()) {
                unique.push(value);
            }
        }
        Ok(unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> Validator {
        Validator::new(Limits::DOCUMENTED)
    }

    #[test]
    fn required_ids_must_not_be_empty() {
        let err = validator().required("thread_id", String::new(), 10).expect_err("empty");
        assert_eq!(err.to_string(), "thread_id must not be empty");
    }

    #[test]
    fn oversized_text_names_the_size_and_the_limit() {
        let err = validator().text("channel", "x".repeat(11), 10).expect_err("too long");
        assert_eq!(err.to_string(), "channel is 11 bytes long; the limit is 10");
    }

    #[test]
    fn nul_characters_are_refused() {
        let err = validator().text("task_path", "a\0b".into(), 10).expect_err("nul");
        assert!(err.to_string().starts_with("task_path contains a NUL character"));
    }

    #[test]
    fn empty_optional_ids_mean_absent() {
        assert_eq!(validator().optional("checkpoint_id", Some(String::new()), 10), Ok(None));
        assert_eq!(validator().optional("checkpoint_id", None, 10), Ok(None));
        assert_eq!(validator().optional("checkpoint_id", Some("a".into()), 10), Ok(Some("a".into())));
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = validator().json_object("metadata_json", b"{".to_vec(), None).expect_err("bad json");
        assert_eq!(err.field, "metadata_json");
        assert!(err.to_string().contains("is not valid JSON"), "{err}");
    }

    #[test]
    fn empty_json_uses_the_default_when_there_is_one() {
        let doc = validator().json_object("metadata_json", Vec::new(), Some(JsonDocument::empty_object()));
        assert_eq!(doc.expect("default").as_str(), "{}");
        assert!(validator().json_object("checkpoint_json", Vec::new(), None).is_err());
    }

    #[test]
    fn id_lists_drop_duplicates_and_name_the_bad_element() {
        let ids = validator().id_list("run_ids", vec!["a".into(), "b".into(), "a".into()], 10);
        assert_eq!(ids, Ok(vec!["a".to_string(), "b".to_string()]));
        let err = validator().id_list("run_ids", vec!["a".into(), String::new()], 10).expect_err("empty");
        assert_eq!(err.to_string(), "run_ids[1] must not be empty");
    }
}
