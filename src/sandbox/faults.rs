//! Fault injection settings (random and scripted) and the engine deciding each request's fate.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::state::Kind;

/// Random faults applied to every request of both servers.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Seeds the fault decisions, so a run with the same requests fails the same way.
    pub seed: u64,
    /// Fraction of requests answering 500 `{"message":"Server Error"}`, nothing committed.
    pub error_rate: f64,
    /// Fraction answering 429 with `Retry-After: retry_after_secs`, nothing committed.
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
    /// Added to every request.
    pub latency_ms: u64,
    /// Fraction of POST/PUT/DELETE committed and then answered by dropping the connection.
    pub drop_after_commit_rate: f64,
    /// Fraction answering an nginx "502 Bad Gateway" HTML page.
    pub html_rate: f64,
    /// Fraction of list pages whose JSON body is cut in half (still 200, JSON content type).
    pub truncated_rate: f64,
    /// List endpoints answer a valid envelope with no records and total 0.
    pub empty_outage: bool,
    /// Server-side rate limit across both servers (0 = none): requests beyond it answer 429
    /// with `Retry-After: 1`, as a rate-limited API would.
    pub rate_limit_per_sec: f64,
    /// Records created through the API stay missing from lists for this long, as a search
    /// index that lags behind writes would leave them.
    pub list_lag_ms: u64,
}

/// A one-shot fault for the first `times` requests that match it.
#[derive(Debug, Clone)]
pub struct ScriptedFault {
    /// "GET", "POST", ...; None matches any method.
    pub method: Option<String>,
    pub kind: Option<Kind>,
    /// Only list requests for this page (default page 1) match when set.
    pub page: Option<u32>,
    pub action: FaultAction,
    pub times: u32,
}

/// What a fault does to the request it hits.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer this status with this raw body (content-type application/json), nothing committed.
    Status(u16, String),
    /// HTML error page with this status.
    Html(u16),
    /// List page JSON cut in half.
    Truncated,
    /// Commit the write, then drop the connection.
    DropAfterCommit,
    /// 429 with Retry-After.
    RetryAfter(u64),
    /// Sleep this many ms then answer normally.
    Delay(u64),
    /// Before answering this list page: delete `delete_earlier` records that are listed on EARLIER pages
    /// (at the current per_page), and insert `insert_before` new records at the FRONT of the listing,
    /// so the walk's later pages shift. Then answer normally.
    ShiftPages {
        delete_earlier: usize,
        insert_before: usize,
    },
    /// A gateway that gives up first: answer nginx's "504 Gateway Time-out" page at once,
    /// and let the request reach the backend (and commit) this many ms later.
    GatewayTimeout(u64),
}

/// Parses `key=value,key=value` (the `restsync sandbox --faults` syntax) into [`Faults`].
pub fn parse_faults(spec: &str) -> Result<Faults, String> {
    let mut f = Faults::default();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("fault setting `{part}` is not key=value"))?;
        let bad = |what: &str| format!("bad value `{value}` for fault `{key}`: expected {what}");
        let rate = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| bad("a fraction between 0 and 1"))
        };
        let int = || value.parse::<u64>().map_err(|_| bad("a whole number"));
        match key {
            "seed" => f.seed = int()?,
            "error_rate" => f.error_rate = rate()?,
            "rate_limit_rate" => f.rate_limit_rate = rate()?,
            "retry_after_secs" => f.retry_after_secs = int()?,
            "latency_ms" => f.latency_ms = int()?,
            "drop_after_commit_rate" => f.drop_after_commit_rate = rate()?,
            "html_rate" => f.html_rate = rate()?,
            "truncated_rate" => f.truncated_rate = rate()?,
            "rate_limit_per_sec" => {
                f.rate_limit_per_sec = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| *r >= 0.0)
                    .ok_or_else(|| bad("a non-negative number"))?
            }
            "list_lag_ms" => {
                f.list_lag_ms = value.parse().map_err(|_| bad("a whole number of milliseconds"))?
            }
            "empty_outage" => {
                f.empty_outage = match value {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            _ => return Err(format!("unknown fault `{key}`")),
        }
    }
    Ok(f)
}

/// What the fault layer knows about a request when deciding.
pub(crate) struct RequestInfo<'a> {
    pub method: &'a str,
    pub kind: Option<Kind>,
    /// Set for list requests only.
    pub page: Option<u32>,
    pub is_write: bool,
}

impl ScriptedFault {
    fn matches(&self, r: &RequestInfo<'_>) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(r.method))
            && self.kind.is_none_or(|k| r.kind == Some(k))
            && self.page.is_none_or(|p| r.page == Some(p))
    }
}

/// Current fault settings, their random stream and the queue of scripted faults.
pub(crate) struct FaultEngine {
    cfg: Faults,
    rng: StdRng,
    scripted: Vec<ScriptedFault>,
    /// GCRA state of the rate limit: when the next request is due.
    next_due: Option<std::time::Instant>,
}

impl FaultEngine {
    pub(crate) fn new(cfg: Faults) -> Self {
        FaultEngine {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            scripted: Vec::new(),
            next_due: None,
        }
    }

    /// Replaces the random faults and restarts their stream from the new seed.
    pub(crate) fn set(&mut self, cfg: Faults) {
        self.rng = StdRng::seed_from_u64(cfg.seed);
        self.cfg = cfg;
    }

    pub(crate) fn push(&mut self, f: ScriptedFault) {
        if f.times > 0 {
            self.scripted.push(f);
        }
    }

    pub(crate) fn empty_outage(&self) -> bool {
        self.cfg.empty_outage
    }

    pub(crate) fn list_lag(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cfg.list_lag_ms)
    }

    /// GCRA with a burst of five: spacing below 1/rate for longer than that is refused.
    fn over_rate_limit(&mut self) -> bool {
        let rate = self.cfg.rate_limit_per_sec;
        if rate <= 0.0 {
            return false;
        }
        let interval = std::time::Duration::from_secs_f64(1.0 / rate);
        let now = std::time::Instant::now();
        let due = self.next_due.unwrap_or(now).max(now);
        if due > now + interval * 4 {
            return true;
        }
        self.next_due = Some(due + interval);
        false
    }

    fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.random::<f64>() < rate
    }

    /// The latency to add and the fault (if any) for this request; consumes scripted faults.
    pub(crate) fn decide(&mut self, r: &RequestInfo<'_>) -> (u64, Option<FaultAction>) {
        let latency = self.cfg.latency_ms;
        if let Some(pos) = self.scripted.iter().position(|f| f.matches(r)) {
            let f = &mut self.scripted[pos];
            f.times -= 1;
            let action = f.action.clone();
            if f.times == 0 {
                self.scripted.remove(pos);
            }
            return (latency, Some(action));
        }
        let action = if self.over_rate_limit() {
            Some(FaultAction::RetryAfter(1))
        } else if self.roll(self.cfg.error_rate) {
            Some(FaultAction::Status(
                500,
                r#"{"message":"Server Error"}"#.to_string(),
            ))
        } else if self.roll(self.cfg.rate_limit_rate) {
            Some(FaultAction::RetryAfter(self.cfg.retry_after_secs))
        } else if self.roll(self.cfg.html_rate) {
            Some(FaultAction::Html(502))
        } else if r.page.is_some() && self.roll(self.cfg.truncated_rate) {
            Some(FaultAction::Truncated)
        } else if r.is_write && self.roll(self.cfg.drop_after_commit_rate) {
            Some(FaultAction::DropAfterCommit)
        } else {
            None
        };
        (latency, action)
    }
}
