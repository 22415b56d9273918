//! Query-string reading with PHP semantics, shared by the routes and the fault layer.

use super::state::Kind;

/// Firstline's default and maximum page sizes; Plusofon's fixed one.
pub(crate) const DEFAULT_PER_PAGE: usize = 15;
pub(crate) const MAX_PER_PAGE: usize = 1000;
pub(crate) const PLUSOFON_PER_PAGE: usize = 15;

/// Decoded query pairs as PHP's `$_GET` sees them: a repeated key keeps its first position
/// and its last value (which is also how Laravel rebuilds paginator links).
pub(crate) fn pairs(query: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v.into_owned(),
            None => out.push((k.into_owned(), v.into_owned())),
        }
    }
    out
}

/// The parameters Laravel's `$request->input()` sees: the query overlaid with the scalar
/// fields of a JSON body. The documents' examples send search filters as a JSON body even on
/// GET, so both ways work; paginator links still carry only the query string.
pub(crate) fn with_body(pairs: &[(String, String)], body: &[u8]) -> Vec<(String, String)> {
    let mut out = pairs.to_vec();
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return out;
    };
    for (k, v) in fields {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => u8::from(b).to_string(),
            _ => continue,
        };
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// A parameter's value, treating an empty value as absent.
pub(crate) fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// The requested page as Laravel's paginator resolves it: anything invalid or below 1 is 1.
pub(crate) fn lenient_page(pairs: &[(String, String)]) -> u32 {
    get(pairs, "page")
        .and_then(|p| p.trim().parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .map_or(1, |p| u32::try_from(p).unwrap_or(u32::MAX))
}

/// Firstline's effective page size for an already validated `per_page` value.
pub(crate) fn clamp_per_page(requested: Option<i64>) -> usize {
    match requested {
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(MAX_PER_PAGE).min(MAX_PER_PAGE),
        _ => DEFAULT_PER_PAGE,
    }
}

/// The page size a list request of this kind is answered with.
pub(crate) fn per_page(kind: Kind, pairs: &[(String, String)]) -> usize {
    match kind {
        Kind::SmartNumbers => PLUSOFON_PER_PAGE,
        _ => clamp_per_page(get(pairs, "per_page").and_then(|p| p.trim().parse().ok())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let p = pairs("a=1&page=2&a=3&b=%E5%8F%B0+x");
        assert_eq!(
            p,
            vec![
                ("a".to_string(), "3".to_string()),
                ("page".to_string(), "2".to_string()),
                ("b".to_string(), "台 x".to_string()),
            ]
        );
        assert_eq!(lenient_page(&p), 2);
        assert_eq!(lenient_page(&pairs("page=abc")), 1);
        assert_eq!(lenient_page(&pairs("page=-4")), 1);
        assert_eq!(per_page(Kind::PhoneNumbers, &pairs("per_page=5000")), 1000);
        assert_eq!(per_page(Kind::Addresses, &pairs("per_page=0")), 15);
        assert_eq!(per_page(Kind::SmartNumbers, &pairs("per_page=100")), 15);
        let merged = with_body(&pairs("a=1&b=2"), br#"{"b": 5, "c": "x", "d": null}"#);
        let expected = [("a", "1"), ("b", "5"), ("c", "x")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(merged, expected);
        assert_eq!(with_body(&pairs("a=1"), b"not json"), pairs("a=1"));
    }
}
