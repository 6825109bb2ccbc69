//! JSON documents checked once, at the edge, so PostgreSQL's JSONB never rejects what we accepted.
//!
//! The scanner accepts exactly RFC 8259 JSON with the extra rules of JSONB: no `\u0000` escape and
//! no lone surrogate escape. It does not build a tree and never rewrites the text: the bytes the
//! client sent are the bytes PostgreSQL parses, so numbers of any size keep their exact value.

use std::fmt;

/// A validated JSON object, kept as the UTF-8 text the client sent.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonDocument {
    text: String,
    top_level_id: Option<String>,
}

impl fmt::Debug for JsonDocument {
    // Documents may hold user data: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonDocument({} bytes)", self.text.len())
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The bytes are not UTF-8.
    #[error("is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    /// The text is not well-formed JSON.
    #[error("is not valid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Where the scanner stopped.
        offset: usize,
        /// What it expected.
        reason: &'static str,
    },
    /// The document nests deeper than allowed.
    #[error("nests deeper than {0} levels")]
    TooDeep(usize),
    /// A string holds a NUL character, which JSONB cannot store.
    #[error("contains a NUL character (\\u0000) at byte {0}, which PostgreSQL cannot store")]
    Nul(usize),
    /// The document is valid JSON but not an object.
    #[error("must be a JSON object")]
    NotAnObject,
}

impl JsonDocument {
    /// Checks `bytes` and keeps them as a document. The top level must be an object.
    pub fn parse(bytes: Vec<u8>, max_depth: usize) -> Result<Self, JsonError> {
        let text = String::from_utf8(bytes).map_err(|e| JsonError::NotUtf8(e.utf8_error().valid_up_to()))?;
        let top_level_id = Scanner::new(text.as_bytes(), max_depth).scan_document()?;
        Ok(Self { text, top_level_id })
    }

    /// The empty object `{}`.
    pub fn empty_object() -> Self {
        Self { text: "{}".to_owned(), top_level_id: None }
    }

    /// The document as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value of the top-level `"id"` key when it is a string.
    pub fn top_level_id(&self) -> Option<&str> {
        self.top_level_id.as_deref()
    }

    /// True for `{}` (with any whitespace).
    pub fn is_empty_object(&self) -> bool {
        self.text.bytes().filter(|b| !b.is_ascii_whitespace()).eq(*b"{}")
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
}

type ScanResult<T> = Result<T, JsonError>;

impl<'a> Scanner<'a> {
    fn new(bytes: &'a [u8], max_depth: usize) -> Self {
        Self { bytes, pos: 0, max_depth }
    }

    /// Scans one top-level object and returns its `"id"` string, if any.
    fn scan_document(&mut self) -> ScanResult<Option<String>> {
        self.skip_whitespace();
        if self.peek() != Some(b'{') {
            self.value(1)?;
            self.expect_end()?;
            return Err(JsonError::NotAnObject);
        }
        let id = self.object(1, true)?;
        self.expect_end()?;
        Ok(id)
    }

    fn expect_end(&mut self) -> ScanResult<()> {
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("unexpected text after the document"),
        }
    }

    fn value(&mut self, depth: usize) -> ScanResult<()> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth, false).map(drop),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string(false).map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail("expected a value"),
            None => self.fail("unexpected end of input"),
        }
    }

    /// Scans an object; at the top level (`capture_id`) returns the `"id"` string value.
    fn object(&mut self, depth: usize, capture_id: bool) -> ScanResult<Option<String>> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let mut id = None;
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(None);
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return self.fail("expected a string key");
            }
            let key = self.string(capture_id)?;
            self.skip_whitespace();
            if !self.eat(b':') {
                return self.fail("expected ':' after a key");
            }
            self.skip_whitespace();
            if capture_id && key.as_deref() == Some("id") && self.peek() == Some(b'"') {
                id = self.string(true)?;
            } else {
                self.value(depth + 1)?;
            }
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(id);
            }
            if !self.eat(b',') {
                return self.fail("expected ',' or '}' in an object");
            }
        }
    }

    fn array(&mut self, depth: usize) -> ScanResult<()> {
        self.enter(depth)?;
        self.pos += 1; // '['
        self.skip_whitespace();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            self.skip_whitespace();
            if self.eat(b']') {
                return Ok(());
            }
            if !self.eat(b',') {
                return self.fail("expected ',' or ']' in an array");
            }
        }
    }

    fn enter(&self, depth: usize) -> ScanResult<()> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep(self.max_depth));
        }
        Ok(())
    }

    /// Scans a string; with `keep`, also returns its decoded value (only ids and top-level keys
    /// are ever kept, so ordinary strings are checked without allocating).
    fn string(&mut self, keep: bool) -> ScanResult<Option<String>> {
        self.pos += 1; // opening quote
        let mut decoded = keep.then(String::new);
        loop {
            let Some(byte) = self.peek() else {
                return self.fail("unterminated string");
            };
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(decoded);
                }
                b'\\' => {
                    let ch = self.escape()?;
                    if let Some(buffer) = decoded.as_mut() {
                        buffer.push(ch);
                    }
                }
                0x00..=0x1f => return self.fail("control character in a string"),
                _ => {
                    let len = utf8_len(byte);
                    if let Some(buffer) = decoded.as_mut() {
                        let text = &self.bytes[self.pos..self.pos + len];
                        buffer.push_str(std::str::from_utf8(text).unwrap_or_default());
                    }
                    self.pos += len;
                }
            }
        }
    }

    /// Scans one escape sequence after a backslash and returns the character it stands for.
    fn escape(&mut self) -> ScanResult<char> {
        let escape_at = self.pos;
        self.pos += 1; // backslash
        let Some(kind) = self.peek() else {
            return self.fail("unterminated escape");
        };
        self.pos += 1;
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(escape_at),
            _ => return self.fail("invalid escape"),
        };
        Ok(simple)
    }

    fn unicode_escape(&mut self, escape_at: usize) -> ScanResult<char> {
        let first = self.hex4()?;
        if first == 0 {
            return Err(JsonError::Nul(escape_at));
        }
        let code = match first {
            0xD800..=0xDBFF => {
                if !(self.eat(b'\\') && self.eat(b'u')) {
                    return self.fail("a high surrogate escape must be followed by a low one");
                }
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return self.fail("a high surrogate escape must be followed by a low one");
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return self.fail("a low surrogate escape must follow a high one"),
            other => other,
        };
        char::from_u32(code).map_or_else(|| self.fail("invalid unicode escape"), Ok)
    }

    fn hex4(&mut self) -> ScanResult<u32> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return self.fail("unterminated unicode escape");
        };
        let mut value = 0;
        for digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return self.fail("invalid hex digit in a unicode escape"),
            };
            value = value * 16 + u32::from(nibble);
        }
        self.pos += 4;
        Ok(value)
    }

    fn number(&mut self) -> ScanResult<()> {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("expected a digit"),
        }
        if self.eat(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("expected a digit after '.'");
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("expected a digit in an exponent");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> ScanResult<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        self.fail("invalid literal")
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn fail<T>(&self, reason: &'static str) -> ScanResult<T> {
        Err(JsonError::Syntax { offset: self.pos, reason })
    }
}

/// The length of the UTF-8 sequence that starts with `first` (the input is known to be UTF-8).
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsonDocument, JsonError> {
        JsonDocument::parse(text.as_bytes().to_vec(), 8)
    }

    #[test]
    fn accepts_what_postgres_accepts() {
        let accepted = [
            r#"{}"#,
            r#" { "a" : [1, -2.5e+3, 0, 1E9, true, false, null, "x"] } "#,
            r#"{"big": 123456789012345678901234567890123456789012345678901234567890}"#,
            r#"{"esc": "\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
            r#"{"utf8": "héllo ✓ 😀"}"#,
            r#"{"nested": {"a": {"b": {"c": [[[]]]}}}}"#,
            r#"{"dup": 1, "dup": 2}"#,
        ];
        for text in accepted {
            assert!(parse(text).is_ok(), "refused {text}");
        }
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        let refused = [
            "",
            "{",
            r#"{"a": NaN}"#,
            r#"{"a": Infinity}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": +1}"#,
            r#"{"a": 'x'}"#,
            r#"{a: 1}"#,
            r#"{"a": 1,}"#,
            r#"{"a": [1,]}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": "\x"}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": "\udc00"}"#,
            r#"{"a": "\ud800\u0041"}"#,
            r#"{"a": tru}"#,
            r#"{} {}"#,
        ];
        for text in refused {
            assert!(matches!(parse(text), Err(JsonError::Syntax { .. })), "accepted {text:?}: {:?}", parse(text));
        }
    }

    #[test]
    fn refuses_nul_escapes_in_values_and_keys() {
        assert_eq!(parse(r#"{"a": "x\u0000"}"#), Err(JsonError::Nul(8)));
        assert!(matches!(parse(r#"{"\u0000": 1}"#), Err(JsonError::Nul(_))));
    }

    #[test]
    fn refuses_invalid_utf8() {
        let bytes = b"{\"a\": \"\xff\"}".to_vec();
        assert_eq!(JsonDocument::parse(bytes, 8), Err(JsonError::NotUtf8(7)));
    }

    #[test]
    fn refuses_documents_that_are_not_objects() {
        for text in ["[]", "1", "\"s\"", "null"] {
            assert_eq!(parse(text), Err(JsonError::NotAnObject), "{text}");
        }
    }

    #[test]
    fn refuses_nesting_beyond_the_limit() {
        let deep = format!("{}{}", "[".repeat(8), "]".repeat(8));
        assert!(parse(&format!("{{\"a\": {deep}}}")).is_err());
        let shallow = format!("{}{}", "[".repeat(6), "]".repeat(6));
        assert!(parse(&format!("{{\"a\": {shallow}}}")).is_ok());
        assert_eq!(parse(&format!("{{\"a\": {deep}}}")), Err(JsonError::TooDeep(8)));
    }

    #[test]
    fn reads_the_top_level_id_only() {
        let doc = parse(r#"{"v": 4, "nested": {"id": "inner"}, "id": "1ef-\u0041"}"#).expect("valid");
        assert_eq!(doc.top_level_id(), Some("1ef-A"));
        assert_eq!(parse(r#"{"id": 5}"#).expect("valid").top_level_id(), None);
    }

    #[test]
    fn keeps_the_text_exactly() {
        let text = r#"{ "n": 1.000000000000000000001 }"#;
        assert_eq!(parse(text).expect("valid").as_str(), text);
    }

    #[test]
    fn knows_the_empty_object() {
        assert!(parse(" { } ").expect("valid").is_empty_object());
        assert!(!parse(r#"{"a":1}"#).expect("valid").is_empty_object());
    }
}
