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
    /// A number PostgreSQL's `numeric` cannot hold (JSONB stores numbers as `numeric`).
    #[error("holds a number at byte {0} outside PostgreSQL's numeric range")]
    NumberOutOfRange(usize),
}

/// PostgreSQL's `numeric` limits: at most 131,071 decimal digits before the point
/// (`NUMERIC_WEIGHT_MAX` base-10000 digits) and 16,383 after it (`NUMERIC_DSCALE_MAX`).
const NUMERIC_MAX_DECIMAL_WEIGHT: i64 = 131_071;
const NUMERIC_MAX_DISPLAY_SCALE: i64 = 16_383;
/// `numeric` refuses exponents of this size outright (`INT_MAX / 2`).
const NUMERIC_MAX_EXPONENT: i64 = 1_073_741_823;

/// The parts of a JSON number that decide whether `numeric` can hold it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct NumberShape {
    /// Digits before the point, leading zeros excluded.
    integer_digits: i64,
    /// Digits after the point.
    fraction_digits: i64,
    /// Zeros right after the point before the first significant digit (when the integer part is 0).
    leading_fraction_zeros: i64,
    /// Whether any digit is non-zero.
    nonzero: bool,
    /// The exponent, saturated.
    exponent: i64,
}

impl NumberShape {
    /// Mirrors `set_var_from_str` and `make_result` in PostgreSQL's numeric.c.
    fn fits_numeric(&self) -> bool {
        if self.exponent.abs() >= NUMERIC_MAX_EXPONENT {
            return false;
        }
        let scale = (self.fraction_digits - self.exponent).max(0);
        if scale > NUMERIC_MAX_DISPLAY_SCALE {
            return false;
        }
        if !self.nonzero {
            return true;
        }
        let weight = if self.integer_digits > 0 { self.integer_digits - 1 } else { -(self.leading_fraction_zeros + 1) };
        weight + self.exponent <= NUMERIC_MAX_DECIMAL_WEIGHT
    }
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
        let start = self.pos;
        let mut shape = NumberShape::default();
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                let digits = self.digits();
                shape.integer_digits = digits.len() as i64;
                shape.nonzero = true;
            }
            _ => return self.fail("expected a digit"),
        }
        if self.eat(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("expected a digit after '.'");
            }
            let digits = self.digits();
            shape.fraction_digits = digits.len() as i64;
            shape.leading_fraction_zeros = digits.iter().take_while(|d| **d == b'0').count() as i64;
            shape.nonzero |= digits.iter().any(|d| *d != b'0');
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let negative = self.peek() == Some(b'-');
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("expected a digit in an exponent");
            }
            let magnitude =
                self.digits().iter().fold(0i64, |n, d| n.saturating_mul(10).saturating_add(i64::from(d - b'0')));
            shape.exponent = if negative { -magnitude } else { magnitude };
        }
        if !shape.fits_numeric() {
            return Err(JsonError::NumberOutOfRange(start));
        }
        Ok(())
    }

    /// Consumes a run of digits and returns it.
    fn digits(&mut self) -> &'a [u8] {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        &self.bytes[start..self.pos]
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
    fn numbers_follow_postgresqls_numeric_range() {
        // Each case was checked with `SELECT '{"a": <n>}'::jsonb` on PostgreSQL 15.
        let cases = [
            ("1e1000", true),
            ("1e131071", true),
            ("1e131072", false),
            ("1e-16383", true),
            ("1e-16384", false),
            ("1e-20000", false),
            ("1e95635123713830295", false),
            ("-1e95635123713830295", false),
            ("0e99999999", true),
            ("0.0e-99999", false),
            ("0.001e131074", true),
            ("12.5e-3", true),
        ];
        for (number, fits) in cases {
            let result = parse(&format!("{{\"a\": {number}}}"));
            assert_eq!(result.is_ok(), fits, "{number}: {result:?}");
            if !fits {
                assert!(matches!(result, Err(JsonError::NumberOutOfRange(6))), "{number}: {result:?}");
            }
        }
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// JSON values of bounded depth whose strings may hold any character, NUL included.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = JsonDocument::parse(bytes, 16);
        }

        #[test]
        fn serialized_objects_are_accepted_exactly_when_they_hold_no_nul(
            map in prop::collection::btree_map(any::<String>(), value(), 0..6)
        ) {
            let object = serde_json::Value::Object(map.into_iter().collect());
            let text = serde_json::to_vec(&object).expect("serializable");
            let accepted = JsonDocument::parse(text, 64).is_ok();
            prop_assert_eq!(accepted, !has_nul(&object));
        }

        #[test]
        fn corrupted_documents_are_judged_as_a_strict_json_parser_judges_them(
            map in prop::collection::btree_map("[a-z]{1,4}", value(), 1..4),
            position in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]\",:\\ 0123456789.eE+-tfnulx\x01\x7f".to_vec()),
        ) {
            let object = serde_json::Value::Object(map.into_iter().collect());
            prop_assume!(!has_nul(&object));
            let mut text = serde_json::to_vec(&object).expect("serializable");
            let at = position.index(text.len());
            text[at] = byte;
            let strict = serde_json::from_slice::<serde_json::Value>(&text);
            let ours = JsonDocument::parse(text.clone(), 64);
            // serde_json keeps numbers in f64, PostgreSQL in numeric: their ranges differ.
            prop_assume!(!strict.as_ref().is_err_and(|e| e.to_string().contains("number out of range")));
            prop_assume!(!matches!(ours, Err(JsonError::NumberOutOfRange(_))));
            match strict {
                Ok(serde_json::Value::Object(ref parsed)) if !has_nul(&serde_json::Value::Object(parsed.clone())) => {
                    prop_assert!(ours.is_ok(), "refused {:?}: {:?}", String::from_utf8_lossy(&text), ours);
                }
                Ok(_) => prop_assert!(ours.is_err(), "accepted a non-object or NUL: {:?}", String::from_utf8_lossy(&text)),
                Err(_) => prop_assert!(ours.is_err(), "accepted {:?}", String::from_utf8_lossy(&text)),
            }
        }
    }
}
