//! The responses the layers write themselves: JSON, and RFC 9457 problem details.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

/// A response with `status` and the serialized JSON `body`.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, body.into(), "application/json")
}

/// `application/problem+json` (RFC 9457) with the status's own title and `detail`.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    problem_with(status, detail, Map::new())
}

/// [`problem`] with extension `members` beside the standard ones, which they cannot replace.
pub(crate) fn problem_with(
    status: StatusCode,
    detail: &str,
    mut members: Map<String, Value>,
) -> Response<Full<Bytes>> {
    let standard = [
        ("type", Value::from("about:blank")),
        (
            "title",
            status.canonical_reason().unwrap_or_default().into(),
        ),
        ("status", status.as_u16().into()),
        ("detail", detail.into()),
    ];
    for (name, value) in standard {
        members.insert(name.to_owned(), value);
    }
    let body = Value::Object(members).to_string();
    with_type(status, body.into(), "application/problem+json")
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn members_stand_beside_the_standard_ones_and_cannot_replace_them() {
        let members = Map::from_iter([
            ("status".to_owned(), Value::from("pending")),
            ("task".to_owned(), Value::from("7")),
        ]);
        let response = problem_with(StatusCode::NOT_FOUND, "no such task", members);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no such task",
                "task": "7",
            })
        );
    }
}
