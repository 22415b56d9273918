//! The HTTP layer shared by both upstreams: auth headers, timeouts, and turning every kind
//! of answer (JSON, Laravel validation errors, Plusofon error bodies, HTML pages, truncated
//! bodies) into bytes or a typed error.

use super::error::UpstreamError;
use crate::config::UpstreamSettings;
use crate::resources::truncate;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use url::Url;

#[derive(Clone)]
pub struct Client {
    pub(crate) name: &'static str,
    /// Said with a refusal of the credentials (401/403): where they came from.
    credentials_hint: String,
    http: reqwest::Client,
    base: Url,
    gate: Arc<Gate>,
}

/// What every request to one upstream passes through, pulls and pushes alike: the rate
/// limit, the in-flight limit, and a pause while upstream asked us to back off.
struct Gate {
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Option<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
    max_pause: Duration,
}

impl Gate {
    async fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        loop {
            let until = self.paused_until.lock().ok().and_then(|p| *p);
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        let permit = match &self.in_flight {
            Some(sem) => sem.acquire().await.ok(),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }

    /// A 429's Retry-After pauses the whole upstream, not just the request that got it.
    fn pause(&self, upstream: &str, wait: Duration) {
        let wait = wait.min(self.max_pause);
        if let Ok(mut p) = self.paused_until.lock() {
            let until = Instant::now() + wait;
            if p.is_none_or(|old| old < until) {
                *p = Some(until);
                tracing::info!(
                    upstream,
                    pause_ms = wait.as_millis() as u64,
                    "upstream asked to slow down; pausing its requests"
                );
            }
        }
    }
}

impl Client {
    pub fn new(
        settings: &UpstreamSettings,
        timeout: Duration,
        max_pause: Duration,
    ) -> Result<Client, UpstreamError> {
        let name = settings.name.as_str();
        let bad = |message: String| UpstreamError::Malformed {
            upstream: name,
            message,
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", settings.token.expose()))
            .map_err(|_| bad("the token contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        if let Some(client) = &settings.client {
            let value = HeaderValue::from_str(client)
                .map_err(|_| bad("the client id contains characters not allowed in a header".into()))?;
            headers.insert("Client", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("restsync/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| bad(format!("cannot build HTTP client: {e}")))?;
        let mut base = settings.base_url.clone();
        // `{base_url}/api/v1/...` must keep any path prefix of the base URL.
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        let rate = settings
            .max_requests_per_sec
            .and_then(|r| Quota::with_period(Duration::from_secs_f64(1.0 / r)))
            .map(RateLimiter::direct);
        let gate = Arc::new(Gate {
            rate,
            in_flight: settings.max_in_flight.map(Semaphore::new),
            paused_until: Mutex::new(None),
            max_pause,
        });
        Ok(Client {
            name,
            credentials_hint: settings.credentials_hint(),
            http,
            base,
            gate,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// Sends one request and returns the body of a success answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Json>,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let writes = method != Method::GET;
        let method_name = method.as_str().to_string();
        let _permit = self.gate.enter().await;
        let started = std::time::Instant::now();
        let mut req = self.http.request(method, self.url(path));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            crate::telemetry::request(self.name, &method_name, 0, started.elapsed());
            self.transport(&e, writes)
        })?;
        let status = resp.status();
        crate::telemetry::request(self.name, &method_name, status.as_u16(), started.elapsed());
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.gate
                .pause(self.name, retry_after.unwrap_or(Duration::from_secs(1)));
        }
        let is_html = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"));
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e, true))?;
        if status.is_success() {
            if is_html || looks_like_html(&bytes) {
                return Err(UpstreamError::Malformed {
                    upstream: self.name,
                    message: format!("an HTML page instead of JSON ({})", html_title(&bytes)),
                });
            }
            return Ok((status, bytes));
        }
        // Plusofon's own error body says what went wrong whatever the HTTP status it came
        // with ("User not found" arrives as HTTP 500 with code 500): its content decides.
        if self.name == "plusofon" && status != StatusCode::TOO_MANY_REQUESTS {
            if let Some((code, message)) = plusofon_error(&bytes) {
                return Err(UpstreamError::Api {
                    upstream: self.name,
                    code,
                    message: self.with_credentials_hint(code, message),
                });
            }
        }
        Err(UpstreamError::Http {
            upstream: self.name,
            status: status.as_u16(),
            message: self.with_credentials_hint(i64::from(status.as_u16()), error_message(&bytes, status)),
            retry_after,
        })
    }

    /// A refusal of the credentials says where they came from.
    fn with_credentials_hint(&self, status: i64, message: String) -> String {
        match status {
            401 | 403 => format!("{message} ({})", self.credentials_hint),
            _ => message,
        }
    }

    fn transport(&self, e: &reqwest::Error, writes: bool) -> UpstreamError {
        // A connect failure never reached upstream; anything later might have.
        let maybe_sent = writes && !e.is_connect();
        let kind = if e.is_timeout() {
            "request timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else if e.is_body() || e.is_decode() {
            "connection dropped while reading the answer"
        } else {
            "request failed"
        };
        let mut message = format!("{kind}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        UpstreamError::Transport {
            upstream: self.name,
            message,
            maybe_sent,
        }
    }
}

/// Plusofon's documented error body: `{"message": "...", "code": N}`.
fn plusofon_error(bytes: &[u8]) -> Option<(i64, String)> {
    let json: Json = serde_json::from_slice(bytes).ok()?;
    let obj = json.as_object()?;
    let message = obj.get("message")?.as_str()?.to_string();
    let code = obj.get("code")?.as_i64()?;
    Some((code, message))
}

fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

fn html_title(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lower = text.to_ascii_lowercase();
    if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>")) {
        if a + 7 <= b {
            return truncate(text[a + 7..b].trim(), 120);
        }
    }
    truncate(text.trim(), 120)
}

/// The upstream's own words: Laravel `message` + `errors`, Plusofon `message`, an HTML
/// page's title, or the start of whatever else came back.
pub(crate) fn error_message(bytes: &[u8], status: StatusCode) -> String {
    if bytes.is_empty() {
        return status.canonical_reason().unwrap_or("no body").to_string();
    }
    if let Ok(json) = serde_json::from_slice::<Json>(bytes) {
        if let Some(msg) = json_error_message(&json) {
            return msg;
        }
        return truncate(&json.to_string(), 300);
    }
    if looks_like_html(bytes) {
        return format!("HTML error page: {}", html_title(bytes));
    }
    truncate(&String::from_utf8_lossy(bytes), 300)
}

pub(crate) fn json_error_message(json: &Json) -> Option<String> {
    let obj = json.as_object()?;
    let message = obj.get("message").and_then(|m| m.as_str()).map(str::to_string);
    let details: Vec<String> = obj
        .get("errors")
        .and_then(|e| e.as_object())
        .map(|errors| {
            errors
                .iter()
                .map(|(field, msgs)| {
                    let text = match msgs {
                        Json::Array(items) => items
                            .iter()
                            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => other.as_str().map_or_else(|| other.to_string(), str::to_string),
                    };
                    format!("{field}: {text}")
                })
                .collect()
        })
        .unwrap_or_default();
    match (message, details.is_empty()) {
        (Some(m), true) => Some(m),
        (Some(m), false) => Some(format!("{m} ({})", details.join("; "))),
        (None, false) => Some(details.join("; ")),
        (None, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn gate(rate: Option<f64>, in_flight: Option<usize>) -> Arc<Gate> {
        Arc::new(Gate {
            rate: rate
                .and_then(|r| Quota::with_period(Duration::from_secs_f64(1.0 / r)))
                .map(RateLimiter::direct),
            in_flight: in_flight.map(Semaphore::new),
            paused_until: Mutex::new(None),
            max_pause: Duration::from_secs(5),
        })
    }

    #[tokio::test]
    async fn in_flight_limit_bounds_concurrent_requests() {
        let gate = gate(None, Some(2));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.enter().await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rate_limit_spaces_requests() {
        let gate = gate(Some(50.0), None);
        let started = Instant::now();
        for _ in 0..11 {
            let _ = gate.enter().await;
        }
        // 11 requests at 50/s: the first is free, ten more take at least ~200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(180),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn retry_after_pauses_every_request_and_is_capped() {
        let gate = gate(None, None);
        gate.pause("test", Duration::from_millis(150));
        let started = Instant::now();
        let _ = gate.enter().await;
        assert!(started.elapsed() >= Duration::from_millis(140));
        // An absurd Retry-After is capped at max_pause.
        gate.pause("test", Duration::from_secs(3600));
        let until = gate.paused_until.lock().expect("lock").expect("paused");
        assert!(until <= Instant::now() + Duration::from_secs(5));
    }

    #[test]
    fn error_messages_carry_upstream_words() {
        let laravel = br#"{"message":"The given data was invalid.","errors":{"number":["The number format is invalid."]}}"#;
        assert_eq!(
            error_message(laravel, StatusCode::UNPROCESSABLE_ENTITY),
            "The given data was invalid. (number: The number format is invalid.)"
        );
        let html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        assert_eq!(
            error_message(html, StatusCode::BAD_GATEWAY),
            "HTML error page: 502 Bad Gateway"
        );
        assert_eq!(error_message(b"", StatusCode::NOT_FOUND), "Not Found");
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            plusofon_error(br#"{"message": "User not found", "code": 500}"#),
            Some((500, "User not found".to_string()))
        );
        assert_eq!(plusofon_error(br#"{"message": "Server Error"}"#), None);
        assert_eq!(plusofon_error(b"<html>502</html>"), None);
    }
}
