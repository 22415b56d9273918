//! Page envelopes: Laravel resource pagination (`data`, `links`, `meta`) for Firstline and
//! the flat paginator (`current_page`, `last_page`, `total`, ...) for Plusofon. Links are
//! never followed: they point at other hosts and paths, so pages are asked for by number.
//! Records stay raw JSON so an unchanged one can be recognised by its hash alone.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug)]
pub struct Page {
    pub records: Vec<Box<RawValue>>,
    pub current_page: u64,
    pub last_page: u64,
    pub total: u64,
    pub per_page: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub enum PageError {
    /// A `{"message", "code"}` error body.
    Api {
        code: i64,
        message: String,
    },
    Malformed(String),
}

#[derive(Deserialize)]
struct LaravelPage {
    #[serde(default)]
    data: Option<Vec<Box<RawValue>>>,
    meta: Meta,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(deserialize_with = "flexible_u64")]
    current_page: u64,
    #[serde(deserialize_with = "flexible_u64")]
    last_page: u64,
    #[serde(deserialize_with = "flexible_u64")]
    total: u64,
    #[serde(default, deserialize_with = "flexible_opt_u64")]
    per_page: Option<u64>,
}

// Not `#[serde(flatten)]`: flattening buffers the map, which `RawValue` cannot come from.
#[derive(Deserialize)]
struct FlatPage {
    #[serde(default)]
    data: Option<Vec<Box<RawValue>>>,
    #[serde(deserialize_with = "flexible_u64")]
    current_page: u64,
    #[serde(deserialize_with = "flexible_u64")]
    last_page: u64,
    #[serde(deserialize_with = "flexible_u64")]
    total: u64,
    #[serde(default, deserialize_with = "flexible_opt_u64")]
    per_page: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default, deserialize_with = "flexible_opt_i64")]
    code: Option<i64>,
}

pub fn parse_firstline(bytes: &[u8]) -> Result<Page, PageError> {
    let page: LaravelPage = serde_json::from_slice(bytes).map_err(|e| describe(bytes, e))?;
    finish(page.data, page.meta)
}

pub fn parse_plusofon(bytes: &[u8]) -> Result<Page, PageError> {
    match serde_json::from_slice::<FlatPage>(bytes) {
        Ok(page) => finish(
            page.data,
            Meta {
                current_page: page.current_page,
                last_page: page.last_page,
                total: page.total,
                per_page: page.per_page,
            },
        ),
        Err(e) => Err(describe(bytes, e)),
    }
}

/// Detects the `{"message", "code"}` error body that may come with HTTP 200.
pub fn error_body(bytes: &[u8]) -> Option<(i64, String)> {
    let body: ErrorBody = serde_json::from_slice(bytes).ok()?;
    Some((body.code.unwrap_or(0), body.message))
}

fn describe(bytes: &[u8], e: serde_json::Error) -> PageError {
    if let Some((code, message)) = error_body(bytes) {
        return PageError::Api { code, message };
    }
    let what = if e.is_eof() {
        "truncated JSON".to_string()
    } else if e.is_syntax() {
        "invalid JSON".to_string()
    } else {
        "unexpected page shape".to_string()
    };
    PageError::Malformed(format!("{what}: {e}"))
}

fn finish(data: Option<Vec<Box<RawValue>>>, meta: Meta) -> Result<Page, PageError> {
    if meta.last_page == 0 && meta.total > 0 {
        return Err(PageError::Malformed(format!(
            "last_page is 0 but total is {}",
            meta.total
        )));
    }
    // Laravel's paginators report last_page = max(1, ceil(total / per_page)), so a larger
    // page count is garbled; trusting it would keep a walk fetching empty pages (up to 2^64).
    if meta.last_page > meta.total.max(1) {
        return Err(PageError::Malformed(format!(
            "last_page {} is more than total {}",
            meta.last_page, meta.total
        )));
    }
    Ok(Page {
        records: data.unwrap_or_default(),
        current_page: meta.current_page,
        last_page: meta.last_page.max(1),
        total: meta.total,
        per_page: meta.per_page,
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(serde_json::Number),
    Str(String),
}

fn to_u64<E: de::Error>(v: NumOrString) -> Result<u64, E> {
    match v {
        NumOrString::Num(n) => n
            .as_u64()
            .ok_or_else(|| E::custom(format!("expected a non-negative integer, found {n}"))),
        NumOrString::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("expected a non-negative integer, found {s:?}"))),
    }
}

fn flexible_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    to_u64(NumOrString::deserialize(d)?)
}

fn flexible_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumOrString>::deserialize(d)? {
        None => Ok(None),
        Some(v) => to_u64(v).map(Some),
    }
}

fn flexible_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<NumOrString>::deserialize(d)? {
        Some(NumOrString::Num(n)) => n.as_i64(),
        Some(NumOrString::Str(s)) => s.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firstline_page_with_string_per_page() {
        let body = br#"{"data":[{"id":1},{"id":2}],"links":{"next":"https://elsewhere/api/x?page=2"},
            "meta":{"current_page":1,"from":1,"last_page":63,"path":"https://elsewhere","per_page":"2","to":2,"total":126}}"#;
        let page = parse_firstline(body).expect("valid page");
        assert_eq!(page.records.len(), 2);
        assert_eq!(
            (page.current_page, page.last_page, page.total, page.per_page),
            (1, 63, 126, Some(2))
        );
    }

    #[test]
    fn plusofon_flat_page() {
        let body = br#"{"current_page":2,"data":[{"id":2}],"first_page_url":"http://localhost/x","from":16,
            "last_page":3,"next_page_url":"http://localhost/api/v1/smart-numbers?page=3","per_page":15,"to":30,"total":40}"#;
        let page = parse_plusofon(body).expect("valid page");
        assert_eq!(
            (page.current_page, page.last_page, page.total, page.per_page),
            (2, 3, 40, Some(15))
        );
    }

    #[test]
    fn plusofon_error_body_is_an_api_error() {
        let err = parse_plusofon(br#"{"message":"User not found","code":500}"#).unwrap_err();
        assert_eq!(
            err,
            PageError::Api {
                code: 500,
                message: "User not found".into()
            }
        );
    }

    #[test]
    fn truncated_and_garbage_pages_are_malformed() {
        let full = br#"{"data":[{"id":1}],"meta":{"current_page":1,"last_page":1,"total":1}}"#;
        for cut in 0..full.len() {
            assert!(
                parse_firstline(&full[..cut]).is_err(),
                "prefix of {cut} bytes parsed"
            );
        }
        match parse_firstline(b"<html><title>502</title></html>") {
            Err(PageError::Malformed(m)) => assert!(m.contains("invalid JSON"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        match parse_firstline(br#"{"data":[]}"#) {
            Err(PageError::Malformed(m)) => assert!(m.contains("meta"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn null_data_is_an_empty_page() {
        let page = parse_firstline(
            br#"{"data":null,"meta":{"current_page":1,"last_page":1,"total":0,"per_page":null}}"#,
        )
        .expect("valid page");
        assert!(page.records.is_empty());
    }
}
