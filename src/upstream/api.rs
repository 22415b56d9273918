//! Resource-level operations on an upstream: list a page, get, create, update, delete, and
//! find records by filters. Knows each API's envelope and quirks; nothing about the mirror.

use super::error::UpstreamError;
use super::http::{json_error_message, Client};
use super::page::{self, Page, PageError};
use crate::resources::{Pagination, ResourceSpec, UpstreamName};
use reqwest::Method;
use serde_json::{Map, Value as Json};

#[derive(Clone)]
pub struct ResourceApi {
    pub spec: &'static ResourceSpec,
    client: Client,
    /// Fixed list filters (Plusofon `user_id`).
    filters: Vec<(&'static str, String)>,
}

#[derive(Debug)]
pub enum CreateOutcome {
    /// The created record, as upstream answered it.
    Record(Json),
    /// Upstream accepted the create but did not say what it made.
    Accepted,
}

#[derive(Debug, PartialEq)]
pub enum DeleteOutcome {
    Deleted,
    /// Already gone: a repeated delete is done.
    NotFound,
}

impl ResourceApi {
    pub fn new(
        spec: &'static ResourceSpec,
        client: Client,
        filters: Vec<(&'static str, String)>,
    ) -> ResourceApi {
        ResourceApi {
            spec,
            client,
            filters,
        }
    }

    /// The fixed list filters: the scope every record of this resource lives in.
    pub fn scope(&self) -> &[(&'static str, String)] {
        &self.filters
    }

    /// Whether a single record can be read back (`GET {path}/{id}`): Firstline's can,
    /// Plusofon has no such endpoint.
    pub fn can_get(&self) -> bool {
        self.spec.upstream == UpstreamName::Firstline
    }

    pub fn upstream(&self) -> &'static str {
        self.client.name()
    }

    fn malformed(&self, message: String) -> UpstreamError {
        UpstreamError::Malformed {
            upstream: self.client.name(),
            message,
        }
    }

    fn page_error(&self, page: u64, e: PageError) -> UpstreamError {
        match e {
            PageError::Api { code, message } => UpstreamError::Api {
                upstream: self.client.name(),
                code,
                message,
            },
            PageError::Malformed(m) => self.malformed(format!("{} page {page}: {m}", self.spec.table)),
        }
    }

    /// Fetches one page. `extra` adds search filters.
    pub async fn list_page(
        &self,
        page: u64,
        per_page: u32,
        extra: &[(&str, String)],
    ) -> Result<Page, UpstreamError> {
        let mut query: Vec<(&str, String)> = vec![("page", page.to_string())];
        if self.spec.pagination == Pagination::Laravel {
            query.push(("per_page", per_page.to_string()));
        }
        query.extend(self.filters.iter().map(|(k, v)| (*k, v.clone())));
        query.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let (_, body) = self
            .client
            .send(Method::GET, self.spec.path, &query, None)
            .await?;
        let parsed = match self.spec.pagination {
            Pagination::Laravel => page::parse_firstline(&body),
            Pagination::Flat => page::parse_plusofon(&body),
        };
        parsed.map_err(|e| self.page_error(page, e))
    }

    /// Every record matching `filters`, walking all pages (used to find a record by its
    /// natural key; result sets are small except for Plusofon, which cannot filter).
    pub async fn search_all(
        &self,
        filters: &[(&str, String)],
        per_page: u32,
    ) -> Result<Vec<Json>, UpstreamError> {
        let mut out = Vec::new();
        let mut page_no = 1;
        loop {
            let page = self.list_page(page_no, per_page, filters).await?;
            for raw in &page.records {
                let json: Json = serde_json::from_str(raw.get())
                    .map_err(|e| self.malformed(format!("record on page {page_no}: {e}")))?;
                out.push(json);
            }
            if page_no >= page.last_page || page.records.is_empty() {
                return Ok(out);
            }
            page_no += 1;
        }
    }

    pub async fn get(&self, id: i64) -> Result<Option<Json>, UpstreamError> {
        let path = format!("{}/{id}", self.spec.path);
        match self.client.send(Method::GET, &path, &[], None).await {
            Ok((_, body)) => self.data_of(&body).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create(&self, payload: &Map<String, Json>) -> Result<CreateOutcome, UpstreamError> {
        let body = Json::Object(payload.clone());
        let (_, bytes) = self
            .client
            .send(Method::POST, self.spec.path, &[], Some(&body))
            .await?;
        if self.spec.create_returns_record {
            self.data_of(&bytes).map(CreateOutcome::Record)
        } else {
            // Only the documented `{"success": true}` says the create was accepted; anything
            // else is an answer we cannot read (and its outcome is unknown).
            let json: Json = serde_json::from_slice(&bytes)
                .map_err(|e| self.malformed(format!("{}: {e}", self.spec.table)))?;
            match json.get("success") {
                Some(Json::Bool(true)) => Ok(CreateOutcome::Accepted),
                _ => Err(self.api_error(&json)),
            }
        }
    }

    pub async fn update(&self, id: i64, payload: &Map<String, Json>) -> Result<Json, UpstreamError> {
        let path = format!("{}/{id}", self.spec.path);
        let body = Json::Object(payload.clone());
        let (_, bytes) = self.client.send(Method::PUT, &path, &[], Some(&body)).await?;
        self.data_of(&bytes)
    }

    pub async fn delete(&self, id: i64) -> Result<DeleteOutcome, UpstreamError> {
        let path = format!("{}/{id}", self.spec.path);
        match self.client.send(Method::DELETE, &path, &[], None).await {
            Ok((_, bytes)) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(DeleteOutcome::Deleted),
            Ok((_, bytes)) => match self.success_of(&bytes) {
                Ok(()) => Ok(DeleteOutcome::Deleted),
                Err(e) if e.is_not_found() => Ok(DeleteOutcome::NotFound),
                Err(e) => Err(e),
            },
            Err(e) if e.is_not_found() => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(e),
        }
    }

    /// `{"data": {...}}` -> the record; an error body -> a typed error.
    fn data_of(&self, bytes: &[u8]) -> Result<Json, UpstreamError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| self.malformed(format!("{}: {e}", self.spec.table)))?;
        if let Some(data) = json.get("data").filter(|d| d.is_object()) {
            return Ok(data.clone());
        }
        Err(self.api_error(&json))
    }

    /// Plusofon's `{"success": true}`; `{}` (Firstline deletes) also counts as success.
    fn success_of(&self, bytes: &[u8]) -> Result<(), UpstreamError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| self.malformed(format!("{}: {e}", self.spec.table)))?;
        match json.get("success") {
            Some(Json::Bool(true)) => Ok(()),
            None if json.as_object().is_some_and(|o| o.is_empty()) => Ok(()),
            _ => Err(self.api_error(&json)),
        }
    }

    fn api_error(&self, json: &Json) -> UpstreamError {
        match json_error_message(json) {
            Some(message) => UpstreamError::Api {
                upstream: self.client.name(),
                code: json.get("code").and_then(Json::as_i64).unwrap_or(0),
                message,
            },
            None => self.malformed(format!(
                "unexpected answer: {}",
                crate::resources::truncate(&json.to_string(), 200)
            )),
        }
    }
}
