//! Plusofon emulation: the smart-numbers resource with its flat paginator and error quirks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::layer::{json as json_response, json_object};
use super::query;
use super::records::Smart;
use super::refdata;
use super::render::{self, SmartOut};
use super::state::{Filter, Kind};
use super::Shared;

/// Paginator URLs name the upstream's internal host, not the one the client called.
const LINK_PATH: &str = "http://localhost/api/v1/smart-numbers";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let base = Kind::SmartNumbers.base_path();
    let r = Router::new()
        .route(base, get(list).post(create))
        .route(&format!("{base}/{{id}}"), delete(destroy));
    super::defined::routes(r, &shared, crate::resources::UpstreamName::Plusofon)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found", 404) })
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            super::layer::faults,
        ))
        .with_state(shared)
}

/// Plusofon's error body: `{"message": ..., "code": ...}`, whose code need not match the status.
fn error(status: StatusCode, message: &str, code: u16) -> Response {
    json_response(status, &json!({ "message": message, "code": code }))
}

fn success() -> Response {
    json_response(StatusCode::OK, &json!({ "success": true }))
}

/// Needs both the bearer token and the account's `Client` header.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let token_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == shared.plusofon_token
        });
    let client_ok = headers
        .get("client")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.trim() == shared.plusofon_client);
    if token_ok && client_ok {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "Unauthenticated.", 401)
    }
}

#[derive(Serialize)]
struct Page<'a> {
    current_page: u64,
    data: Vec<SmartOut<'a>>,
    first_page_url: String,
    from: Option<u64>,
    last_page: u64,
    last_page_url: String,
    next_page_url: Option<String>,
    path: &'static str,
    per_page: usize,
    prev_page_url: Option<String>,
    to: Option<u64>,
    total: u64,
}

fn page_url(page: u64) -> String {
    format!("{LINK_PATH}?page={page}")
}

async fn list(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    // The document's examples send user_id as a JSON body of the GET.
    let pairs = query::with_body(&query::pairs(q.as_deref().unwrap_or_default()), &body);
    if let Some(user) = query::get(&pairs, "user_id") {
        let known = user
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(refdata::user_phone)
            .is_some();
        if !known {
            // Quirk: an error body with HTTP 200.
            return error(StatusCode::OK, "User not found", 500);
        }
    }
    let page = u64::from(query::lenient_page(&pairs));
    let per_page = query::PLUSOFON_PER_PAGE;
    let offset = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(per_page);
    let filter = Filter::from_pairs(Kind::SmartNumbers, &pairs).hiding(shared.unlisted(Kind::SmartNumbers));
    let outage = shared.faults().empty_outage();
    let (total, rows): (usize, Vec<Smart>) = if outage {
        (0, Vec::new())
    } else {
        shared.state().smarts.page(&filter, offset, per_page)
    };

    let total = total as u64;
    let last_page = total.div_ceil(per_page as u64).max(1);
    let count = rows.len() as u64;
    let from = (count > 0).then_some(offset as u64 + 1);
    let body = Page {
        current_page: page,
        data: rows.iter().map(render::smart).collect(),
        first_page_url: page_url(1),
        from,
        last_page,
        last_page_url: page_url(last_page),
        next_page_url: (page < last_page).then(|| page_url(page + 1)),
        path: LINK_PATH,
        per_page,
        prev_page_url: (page > 1).then(|| page_url(page - 1)),
        to: from.map(|f| f + count - 1),
        total,
    };
    json_response(StatusCode::OK, &body)
}

/// Laravel's `required`: missing, null and blank values fail.
fn blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// The first validation failure of a create body, as Plusofon reports only one.
fn validation_error(f: &Map<String, Value>) -> Option<&'static str> {
    let phone_b = f.get("phone_b");
    if blank(phone_b) {
        return Some("The phone b field is required.");
    }
    let phone_ok = match phone_b {
        Some(Value::String(s)) => (11..=12).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()),
        Some(Value::Number(n)) => n
            .as_u64()
            .is_some_and(|n| (10_000_000_000..1_000_000_000_000).contains(&n)),
        _ => false,
    };
    if !phone_ok {
        return Some("The phone b format is invalid.");
    }
    let user = f.get("user_id");
    if blank(user) {
        return Some("The user id field is required.");
    }
    let user_ok = match user {
        Some(Value::Number(n)) => n.as_i64().is_some(),
        Some(Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    };
    if !user_ok {
        return Some("The user id must be an integer.");
    }
    match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > 255 => {
            Some("The description must not be greater than 255 characters.")
        }
        Some(Value::String(_)) => None,
        Some(_) => Some("The description must be a string."),
    }
}

async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(fields) = json_object(&body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed JSON", 400);
    };
    if let Some(message) = validation_error(&fields) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, message, 422);
    }
    let user = fields.get("user_id").and_then(super::records::int_of);
    if user.and_then(refdata::user_phone).is_none() {
        // Quirk: an error body with HTTP 200 (and, unlike the list's, a final full stop).
        return error(StatusCode::OK, "User not found.", 500);
    }
    // Only the documented inputs; phoneA, phoneX and created_at are the server's.
    let mut accepted = Map::new();
    for key in ["phone_b", "user_id", "description"] {
        if let Some(v) = fields.get(key) {
            accepted.insert(key.to_string(), v.clone());
        }
    }
    let id = shared.state().insert(Kind::SmartNumbers, &accepted);
    shared.note_created(Kind::SmartNumbers, id);
    // The upstream answers without the new id: a client has to find it by listing.
    success()
}

async fn destroy(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(n) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "The smart number id must be int", 400);
    };
    if shared.state().delete(Kind::SmartNumbers, n) {
        success()
    } else {
        error(StatusCode::NOT_FOUND, "Smart number not found", 404)
    }
}
