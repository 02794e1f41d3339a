//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): the key, its scope and the
//! request's fingerprint.

use std::borrow::Cow;

use http::request::Parts;
use http::{HeaderMap, HeaderName};

/// Made at compile time: a lookup by `&str` would parse the name on every request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How much of a keyed request's body goes into its fingerprint.
pub(crate) const FINGERPRINT_PREFIX: usize = 64 << 10;

/// The client's `Idempotency-Key`: `Ok(None)` when absent, `Err` when malformed. A key is
/// 1 to 255 visible ASCII characters, plain (without `"`) or as a structured-field string
/// (RFC 8941, 3.3.3: in quotes, with `\"` and `\\` its only escapes), whose content is the
/// key: `"a\\b"` and `a\b` are one key.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<Cow<'_, str>>, ()> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?.trim();
    let key = match text.strip_prefix('"') {
        Some(quoted) => sf_string(quoted).ok_or(())?,
        None if text.contains('"') => return Err(()),
        None => Cow::Borrowed(text),
    };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(());
    }
    Ok(Some(key))
}

/// The content of a structured-field string whose opening quote is gone: `None` unless it
/// ends at its closing quote and escapes only `"` and `\`.
fn sf_string(quoted: &str) -> Option<Cow<'_, str>> {
    let inner = quoted.strip_suffix('"')?;
    if !inner.contains(['"', '\\']) {
        return Some(Cow::Borrowed(inner));
    }
    let mut key = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                escaped @ ('"' | '\\') => key.push(escaped),
                _ => return None,
            },
            '"' => return None,
            c => key.push(c),
        }
    }
    Some(Cow::Owned(key))
}

/// The key as the store keeps it: scoped by method and path (the owner is kept beside it),
/// so the same key on another endpoint is another task. Neither part holds a space.
pub(crate) fn scoped(method: &http::Method, path: &str, key: &str) -> String {
    format!("{method} {path} {key}")
}

/// A request's fingerprint: FNV-1a (64 bits) over the method, the path and query, and the
/// first [`FINGERPRINT_PREFIX`] bytes of the body, as 16 hex characters. It tells a retry
/// from another request sent with the same key; it is no defence against a client that
/// wants to collide with itself.
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub(crate) fn new(parts: &Parts) -> Self {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut fingerprint = Self(0xcbf2_9ce4_8422_2325);
        fingerprint.update(parts.method.as_str().as_bytes());
        fingerprint.update(b" ");
        fingerprint.update(target.as_bytes());
        fingerprint.update(b"\n");
        fingerprint
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn keys() {
        let key_of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", value.parse().unwrap());
            key(&headers).map(|key| key.map(Cow::into_owned))
        };
        assert_eq!(key(&HeaderMap::new()), Ok(None));
        assert_eq!(key_of("order-42"), Ok(Some("order-42".into())));
        assert_eq!(key_of("\"8e03978e\""), Ok(Some("8e03978e".into())));
        assert_eq!(key_of(""), Err(()));
        assert_eq!(key_of("two words"), Err(()));
        assert_eq!(key_of(&"x".repeat(256)), Err(()));
        // Structured-field strings: closed, with `\"` and `\\` the only escapes.
        assert_eq!(key_of(r#""a\"b""#), Ok(Some("a\"b".into())));
        assert_eq!(key_of(r#""a\\b""#), Ok(Some("a\\b".into())));
        assert_eq!(key_of(r"a\b"), Ok(Some("a\\b".into())));
        for broken in [
            "\"",
            "\"open",
            "close\"",
            r#""in"side""#,
            r#""bad\escape""#,
            r#""""#,
        ] {
            assert_eq!(key_of(broken), Err(()), "{broken}");
        }
    }

    #[test]
    fn scope_and_fingerprint() {
        let login = parts("POST", "/login?next=/");
        let refund = parts("POST", "/refund");
        let scope = |parts: &Parts| scoped(&parts.method, parts.uri.path(), "k");
        assert_eq!(scope(&login), "POST /login k");
        assert_ne!(scope(&login), scope(&refund));
        let print = |parts: &Parts, body: &[u8]| {
            let mut fingerprint = Fingerprint::new(parts);
            fingerprint.update(body);
            fingerprint.finish()
        };
        assert_eq!(print(&refund, b"{}"), print(&refund, b"{}"));
        assert_ne!(print(&refund, b"{}"), print(&refund, b"{\"amount\":1}"));
        assert_ne!(print(&refund, b""), print(&parts("PUT", "/refund"), b""));
        assert_ne!(print(&login, b""), print(&parts("POST", "/login"), b""));
        assert_eq!(print(&refund, b"").len(), 16);
    }
}
