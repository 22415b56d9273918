//! Firstline emulation: Laravel-style phone-number and address resources.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::layer::{json as json_response, json_object, raw_json};
use super::query;
use super::render;
use super::state::{Filter, Kind};
use super::validate::{self, ErrorBag, Mode};
use super::Shared;

/// Paginator links point at the upstream's own idea of its URL: another host, no `/v1`.
const LINK_BASE: &str = "https://firstline.localhost/api";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new();
    for kind in [Kind::PhoneNumbers, Kind::Addresses] {
        let base = kind.base_path();
        r = r
            .route(
                base,
                get(move |s: State<Arc<Shared>>, q: RawQuery, b: Bytes| list(kind, s, q, b))
                    .post(move |s: State<Arc<Shared>>, b: Bytes| create(kind, s, b)),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(move |s: State<Arc<Shared>>, id: Path<String>| show(kind, s, id))
                    .put(move |s: State<Arc<Shared>>, id: Path<String>, b: Bytes| update(kind, s, id, b))
                    .delete(move |s: State<Arc<Shared>>, id: Path<String>| destroy(kind, s, id)),
            );
    }
    r = super::defined::routes(r, &shared, crate::resources::UpstreamName::Firstline);
    r.fallback(|| async { json_response(StatusCode::NOT_FOUND, &json!({"message": "Not Found"})) })
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            super::layer::faults,
        ))
        .with_state(shared)
}

/// `Authorization: Bearer <token>` or Laravel's 401.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == shared.firstline_token
        });
    if ok {
        next.run(req).await
    } else {
        json_response(StatusCode::UNAUTHORIZED, &json!({"message": "Unauthenticated."}))
    }
}

fn model(kind: Kind) -> &'static str {
    match kind {
        Kind::Addresses => "Address",
        _ => "PhoneNumber",
    }
}

/// Laravel's answer for a route-model-binding miss (also for non-numeric ids).
fn not_found(kind: Kind, id: &str) -> Response {
    let message = format!("No query results for model [App\\Models\\{}] {id}", model(kind));
    json_response(StatusCode::NOT_FOUND, &json!({ "message": message }))
}

fn invalid(errors: ErrorBag) -> Response {
    #[derive(Serialize)]
    struct Body {
        message: &'static str,
        errors: ErrorBag,
    }
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &Body {
            message: "The given data was invalid.",
            errors,
        },
    )
}

fn malformed() -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"message": "Malformed JSON"}))
}

#[derive(Serialize)]
struct Links {
    first: String,
    last: String,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct Meta {
    current_page: u64,
    from: Option<u64>,
    last_page: u64,
    path: String,
    /// A number for phone numbers but a string for addresses (upstream quirk).
    per_page: Value,
    to: Option<u64>,
    total: u64,
}

#[derive(Serialize)]
struct Page<T> {
    data: Vec<T>,
    links: Links,
    meta: Meta,
}

fn link_path(kind: Kind) -> String {
    let name = kind.base_path().rsplit('/').next().unwrap_or_default();
    format!("{LINK_BASE}/{name}")
}

/// Laravel's `url($page)`: every query parameter but `page`, in request order, then `page`.
fn page_url(path: &str, pairs: &[(String, String)], page: u64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "page") {
        q.append_pair(k, v);
    }
    q.append_pair("page", &page.to_string());
    format!("{path}?{}", q.finish())
}

/// Reads an integer paging parameter; blank counts as absent, anything else non-numeric is a 422.
fn paging_param(pairs: &[(String, String)], key: &str, errors: &mut ErrorBag) -> Option<i64> {
    let v = query::get(pairs, key)?;
    let parsed = v.trim().parse::<i64>().ok();
    if parsed.is_none() {
        let attr = key.replace('_', " ");
        errors.add(key, format!("The {attr} must be an integer."));
    }
    parsed
}

async fn list(kind: Kind, State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let pairs = query::pairs(q.as_deref().unwrap_or_default());
    let input = query::with_body(&pairs, &body);
    let mut errors = ErrorBag::default();
    let page = paging_param(&input, "page", &mut errors);
    let per_page = paging_param(&input, "per_page", &mut errors);
    if !errors.is_empty() {
        return invalid(errors);
    }
    let page = page.filter(|p| *p >= 1).map_or(1, |p| p as u64);
    let per_page = query::clamp_per_page(per_page);
    let offset = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(per_page);
    let filter = Filter::from_pairs(kind, &input).hiding(shared.unlisted(kind));
    let outage = shared.faults().empty_outage();
    let at = At {
        kind,
        pairs: &pairs,
        page,
        per_page,
        offset,
    };
    match kind {
        _ if outage => page_response::<()>(&at, 0, Vec::new()),
        Kind::Addresses => {
            let (total, rows) = shared.state().addresses.page(&filter, offset, per_page);
            let data = rows.iter().map(|a| render::address(a, true)).collect();
            page_response(&at, total, data)
        }
        _ => {
            let (total, rows) = shared.state().phones.page(&filter, offset, per_page);
            let data = rows.iter().map(|p| render::phone(p, true)).collect();
            page_response(&at, total, data)
        }
    }
}

/// Where a list request is in its listing.
struct At<'a> {
    kind: Kind,
    pairs: &'a [(String, String)],
    page: u64,
    per_page: usize,
    offset: usize,
}

/// Laravel's resource-collection envelope around one page of records.
fn page_response<T: Serialize>(at: &At<'_>, total: usize, data: Vec<T>) -> Response {
    let total = total as u64;
    let (page, pairs) = (at.page, at.pairs);
    let last_page = total.div_ceil(at.per_page as u64).max(1);
    let count = data.len() as u64;
    let from = (count > 0).then_some(at.offset as u64 + 1);
    let path = link_path(at.kind);
    let body = Page {
        data,
        links: Links {
            first: page_url(&path, pairs, 1),
            last: page_url(&path, pairs, last_page),
            prev: (page > 1).then(|| page_url(&path, pairs, page - 1)),
            next: (page < last_page).then(|| page_url(&path, pairs, page + 1)),
        },
        meta: Meta {
            current_page: page,
            from,
            last_page,
            per_page: match at.kind {
                Kind::Addresses => Value::String(at.per_page.to_string()),
                _ => Value::from(at.per_page),
            },
            path,
            to: from.map(|f| f + count - 1),
            total,
        },
    };
    json_response(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct Data<T> {
    data: T,
}

/// `{"data": record}` in the single-record shape (`search` = with the search-only fields).
fn single(shared: &Shared, kind: Kind, id: i64, search: bool, status: StatusCode) -> Option<Response> {
    let state = shared.state();
    Some(match kind {
        Kind::Addresses => {
            let data = render::address(state.addresses.get(id)?, search);
            json_response(status, &Data { data })
        }
        _ => {
            let data = render::phone(state.phones.get(id)?, search);
            json_response(status, &Data { data })
        }
    })
}

/// Validates a body and keeps only the client-writable fields: ids and profile_id are the
/// server's even if a client sends them (the address document's example sends profile_id).
fn validated(kind: Kind, body: Map<String, Value>, mode: Mode) -> Result<Map<String, Value>, ErrorBag> {
    let checked = match kind {
        Kind::Addresses => validate::address(&body, mode),
        _ => validate::phone(&body, mode),
    };
    checked?;
    // The writable fields are exactly the search filters.
    let writable = kind.filter_fields();
    Ok(body
        .into_iter()
        .filter(|(k, _)| writable.contains(&k.as_str()))
        .collect())
}

async fn show(kind: Kind, State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    // GET shows the phone_contact object but, for addresses, not the search-only fields.
    let with_extra = kind == Kind::PhoneNumbers;
    id.parse::<i64>()
        .ok()
        .and_then(|n| single(&shared, kind, n, with_extra, StatusCode::OK))
        .unwrap_or_else(|| not_found(kind, &id))
}

async fn create(kind: Kind, State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(fields) = json_object(&body) else {
        return malformed();
    };
    let fields = match validated(kind, fields, Mode::Create) {
        Ok(f) => f,
        Err(errors) => return invalid(errors),
    };
    let id = shared.state().insert(kind, &fields);
    shared.note_created(kind, id);
    // Only a concurrent delete can make the new record vanish before it is rendered.
    single(&shared, kind, id, false, StatusCode::CREATED)
        .unwrap_or_else(|| raw_json(StatusCode::CREATED, "{}"))
}

async fn update(
    kind: Kind,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // Route-model binding comes first: an unknown id is a 404 whatever the body.
    let Some(n) = id
        .parse::<i64>()
        .ok()
        .filter(|n| shared.state().contains(kind, *n))
    else {
        return not_found(kind, &id);
    };
    let Some(fields) = json_object(&body) else {
        return malformed();
    };
    let fields = match validated(kind, fields, Mode::Update) {
        Ok(f) => f,
        Err(errors) => return invalid(errors),
    };
    if !shared.state().update(kind, n, &fields) {
        return not_found(kind, &id);
    }
    single(&shared, kind, n, false, StatusCode::OK).unwrap_or_else(|| not_found(kind, &id))
}

async fn destroy(kind: Kind, State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match id.parse::<i64>() {
        Ok(n) if shared.state().delete(kind, n) => StatusCode::NO_CONTENT.into_response(),
        _ => not_found(kind, &id),
    }
}
