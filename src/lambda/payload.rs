//! What a buffered Lambda response can carry.
//!
//! A function that does not stream posts its response as one JSON document. The Runtime
//! API takes at most 6 MB of it: a larger one is refused (`413`), the invocation fails, and
//! API Gateway answers `502`. An ALB takes at most 1 MB, and answers `502` past it. The
//! body goes in that document as `lambda_http` encodes it: text escaped as a JSON string,
//! anything else in base64, a third larger.

use std::io;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use lambda_http::{Body, IntoResponse};

/// The most JSON the Runtime API takes as a buffered response: the size its `413` names.
pub(crate) const MAX_BUFFERED_RESPONSE: usize = 6_291_556;

/// The most JSON an ALB takes from its Lambda target: "1 MB", read as Lambda's megabytes
/// are, 2^20 bytes.
pub(crate) const MAX_ALB_RESPONSE: usize = 1 << 20;

/// The most JSON a buffered response may be, through an ALB or another front door.
pub(crate) fn max_response(alb: bool) -> usize {
    if alb {
        MAX_ALB_RESPONSE
    } else {
        MAX_BUFFERED_RESPONSE
    }
}

/// Room for what the document holds beside the body and the headers (`statusCode`,
/// `isBase64Encoded`, an ALB's `statusDescription`) and for the headers the status
/// router adds when it replays a result.
const ENVELOPE: usize = 1024;

/// Whether a response of `status`, `headers` and `body` fits in a buffered Lambda response
/// of at most `max` bytes.
pub(crate) async fn fits(
    max: usize,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> bool {
    // Each header twice, quoted and separated: an ALB response carries both `headers` and
    // `multiValueHeaders`.
    let heads: usize = headers
        .iter()
        .map(|(name, value)| 2 * (name.as_str().len() + value.len() + 8))
        .sum();
    let Some(room) = max.checked_sub(ENVELOPE + heads) else {
        return false;
    };
    // Encoded, a byte takes at most six: `\u001f` escaped, a third more in base64, and
    // three as `lambda_http` decodes text of another charset into UTF-8.
    if body.len().saturating_mul(6) <= room {
        return true;
    }
    // Larger: encoded as `lambda_http` will encode it, which decides between text and
    // binary by the response's headers.
    let mut response = Response::new(Full::new(body.clone()));
    *response.status_mut() = status;
    *response.headers_mut() = headers.clone();
    let encoded = match response.into_response().await.into_body() {
        Body::Text(text) => escaped_len(&text),
        Body::Binary(bytes) => bytes.len().div_ceil(3) * 4,
        // Empty, or a kind this version of `lambda_http` does not have.
        _ => 0,
    };
    encoded <= room
}

/// The length of `text` as a JSON string, as `serde_json` writes it.
fn escaped_len(text: &str) -> usize {
    let mut counted = Counted(0);
    // Writing a string to a counter cannot fail.
    let _ = serde_json::to_writer(&mut counted, text);
    counted.0
}

/// Counts the bytes written to it.
struct Counted(usize);

impl io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    async fn fits_with(headers: &HeaderMap, body: Vec<u8>) -> bool {
        fits(
            MAX_BUFFERED_RESPONSE,
            StatusCode::OK,
            headers,
            &Bytes::from(body),
        )
        .await
    }

    #[tokio::test]
    async fn a_binary_body_counts_in_base64() {
        let binary = headers("application/octet-stream");
        // 4,718,000 bytes are 6,290,668 in base64: too many beside the envelope.
        assert!(!fits_with(&binary, vec![7; 4_718_000]).await);
        assert!(fits_with(&binary, vec![7; 4_700_000]).await);
        // Text compressed is binary to `lambda_http`.
        let mut gzipped = headers("text/plain");
        gzipped.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(!fits_with(&gzipped, vec![b'a'; 4_800_000]).await);
    }

    #[tokio::test]
    async fn a_text_body_counts_escaped() {
        let text = headers("application/json");
        assert!(fits_with(&text, vec![b'a'; 6_200_000]).await);
        assert!(!fits_with(&text, vec![b'a'; MAX_BUFFERED_RESPONSE]).await);
        // A quote takes two, a control character six.
        assert!(!fits_with(&text, vec![b'"'; 3_200_000]).await);
        assert!(fits_with(&text, vec![b'"'; 3_000_000]).await);
        assert!(!fits_with(&text, vec![0x1f; 1_100_000]).await);
        assert!(fits_with(&text, vec![0x1f; 1_000_000]).await);
    }

    #[tokio::test]
    async fn an_alb_takes_a_megabyte() {
        let binary = headers("application/octet-stream");
        let body = Bytes::from(vec![7; 790_000]);
        assert!(fits(MAX_BUFFERED_RESPONSE, StatusCode::OK, &binary, &body).await);
        // 1,053,336 bytes in base64.
        assert!(!fits(max_response(true), StatusCode::OK, &binary, &body).await);
        assert!(
            fits(
                max_response(true),
                StatusCode::OK,
                &binary,
                &body.slice(..700_000)
            )
            .await
        );
    }

    #[tokio::test]
    async fn headers_count_too() {
        let mut many = headers("text/plain");
        for n in 0..64 {
            let name = http::HeaderName::try_from(format!("x-header-{n}")).unwrap();
            many.insert(name, "v".repeat(8 << 10).parse().unwrap());
        }
        assert!(fits_with(&headers("text/plain"), vec![b'a'; 6_200_000]).await);
        assert!(!fits_with(&many, vec![b'a'; 6_200_000]).await);
    }

    #[test]
    fn escaped_as_serde_json_writes() {
        for text in ["plain", "a \"quote\"", "tab\tand\u{1f}", "ünïcødé"] {
            assert_eq!(
                escaped_len(text),
                serde_json::to_string(text).unwrap().len()
            );
        }
    }
}
