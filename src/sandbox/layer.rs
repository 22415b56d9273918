//! Middleware shared by both servers: fault injection, request logging, and response helpers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::faults::{FaultAction, RequestInfo};
use super::net::ConnMeta;
use super::query;
use super::state::{Filter, Kind};
use super::{RequestRecord, Shared};

/// A JSON answer with this status.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => raw_json(status, bytes),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A pre-rendered JSON body with this status.
pub(crate) fn raw_json(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A request body's fields: an empty body is an empty form, a JSON non-object carries no
/// fields, and None means the body is not JSON at all.
pub(crate) fn json_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(serde_json::Map::new());
    }
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => Some(serde_json::Map::new()),
    }
}

/// The error page nginx serves when the application behind it fails.
fn html_page(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n\
         <center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

fn too_many_attempts(secs: u64) -> Response {
    let mut r = raw_json(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"message":"Too Many Attempts."}"#,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Cuts a successful answer's body in half, keeping its status and content type.
async fn truncate(resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_else(|_| Bytes::new());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
}

/// Applies latency and faults, runs the request, and logs what the client got.
pub(crate) async fn faults(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_ascii_uppercase();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let kind = Kind::from_path(&path);
    let list_kind = kind.filter(|k| method == "GET" && path == k.base_path());
    let pairs = query::pairs(&raw_query);
    let info = RequestInfo {
        method: &method,
        kind,
        page: list_kind.map(|_| query::lenient_page(&pairs)),
        is_write: matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"),
    };
    let conn = req
        .extensions()
        .get::<ConnectInfo<ConnMeta>>()
        .map(|c| c.0.clone());
    let (latency, action) = shared.faults().decide(&info);
    let page = info.page;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let mut dropped = false;
    let response = match action {
        None => next.run(req).await,
        Some(FaultAction::Status(code, body)) => raw_json(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
        Some(FaultAction::Html(code)) => html_page(code),
        Some(FaultAction::RetryAfter(secs)) => too_many_attempts(secs),
        Some(FaultAction::Delay(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Some(FaultAction::Truncated) => truncate(next.run(req).await).await,
        Some(FaultAction::GatewayTimeout(ms)) => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                next.run(req).await;
            });
            html_page(504)
        }
        Some(FaultAction::DropAfterCommit) => {
            let resp = next.run(req).await;
            if let Some(conn) = &conn {
                conn.kill();
                dropped = true;
            }
            resp
        }
        Some(FaultAction::ShiftPages {
            delete_earlier,
            insert_before,
        }) => {
            if let (Some(k), Some(page)) = (list_kind, page) {
                let per_page = query::per_page(k, &pairs);
                let earlier = (page as usize - 1).saturating_mul(per_page);
                let filter = Filter::from_pairs(k, &pairs);
                shared
                    .state()
                    .shift_pages(k, &filter, earlier, delete_earlier, insert_before);
            }
            next.run(req).await
        }
    };

    shared.record(RequestRecord {
        method,
        path,
        query: raw_query,
        status: if dropped { 0 } else { response.status().as_u16() },
    });
    response
}
