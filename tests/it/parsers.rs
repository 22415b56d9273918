//! Property tests of everything that reads untrusted input: the page envelopes and error
//! bodies of both APIs, upstream records, and the configuration (file and environment).
//! Whatever comes in, the answer is a value or a typed error, never a panic.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use restsync::config::load_with_env;
use restsync::resources::ResourceKind;
use restsync::upstream::page::{error_body, parse_firstline, parse_plusofon, Page, PageError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// `cases` cases (at least `RESTSYNC_PROPTEST_CASES` when set); failures are kept in
/// `proptest-regressions/parsers.txt` and replayed first.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("RESTSYNC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(cases, |n: u32| n.max(cases));
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/parsers.txt",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

/// Keys the parsers look for, and some they do not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "data", "meta", "links", "current_page", "last_page", "total", "per_page",
            "message", "code", "errors", "success", "phone_contact", "contact_id", "type",
            "number", "extension", "description", "profile_id", "address", "country_id",
            "state_id", "city_id", "user_id", "phoneA", "phoneB", "phoneX", "created_at",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

/// Numbers and strings near the edges of what the parsers convert.
fn tricky_scalar() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!(-0.0),
        json!(1e300),
        json!(""),
        json!(" 12 "),
        json!("-3"),
        json!("1e3"),
        json!("18446744073709551616"),
        json!("9223372036854775808"),
        json!("０１"),
        json!("\u{0}"),
        json!(true),
        json!(false),
        Value::Null,
    ])
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        tricky_scalar(),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A number as either API may send it: a JSON number or a numeric string.
fn flexible(n: u64, as_string: bool) -> Value {
    if as_string {
        Value::String(n.to_string())
    } else {
        json!(n)
    }
}

/// A well-formed page: (body, records, current_page, last_page, total, per_page).
#[derive(Debug, Clone)]
struct ValidPage {
    body: Value,
    records: usize,
    current_page: u64,
    last_page: u64,
    total: u64,
    per_page: Option<u64>,
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            (0..10_000_000i64).prop_map(|n| json!(n.to_string()))
        ],
        prop::collection::vec((key(), arb_json()), 0..5),
    )
        .prop_map(|(id, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("id".into(), id);
            Value::Object(m)
        })
}

fn valid_page(firstline: bool) -> impl Strategy<Value = ValidPage> {
    (
        prop::collection::vec(record(), 0..6),
        1u64..1000,
        0u64..100_000,
        prop::option::of(1u64..1000),
        any::<[bool; 4]>(),
        any::<bool>(),
    )
        .prop_map(move |(records, current_page, extra, per_page, strings, null_data)| {
            let total = records.len() as u64 + extra;
            let last_page = match per_page {
                Some(p) => total.div_ceil(p).max(1),
                None => total.max(1),
            };
            let data = if records.is_empty() && null_data {
                Value::Null
            } else {
                Value::Array(records.clone())
            };
            let mut meta = Map::new();
            meta.insert("current_page".into(), flexible(current_page, strings[0]));
            meta.insert("last_page".into(), flexible(last_page, strings[1]));
            meta.insert("total".into(), flexible(total, strings[2]));
            if let Some(p) = per_page {
                meta.insert("per_page".into(), flexible(p, strings[3]));
            }
            let body = if firstline {
                meta.insert("path".into(), json!("https://elsewhere.example/api/x"));
                json!({"data": data, "links": {"next": "https://elsewhere.example/api/x?page=2"}, "meta": meta})
            } else {
                meta.insert("data".into(), data);
                meta.insert("next_page_url".into(), json!("http://localhost/api/v1/smart-numbers?page=2"));
                Value::Object(meta)
            };
            ValidPage {
                body,
                records: records.len(),
                current_page,
                last_page,
                total,
                per_page,
            }
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Keep this fraction of the bytes.
    Truncate(f64),
    /// XOR bytes at these relative positions.
    Flip(Vec<(f64, u8)>),
    /// Insert bytes at a relative position.
    Insert(f64, Vec<u8>),
    /// Replace the value at a path of object keys / array indexes with another JSON value.
    Swap(Vec<String>, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(
        prop_oneof![
            key(),
            Just("meta".to_string()),
            Just("data".to_string()),
            (0usize..4).prop_map(|i| i.to_string())
        ],
        1..4,
    );
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        prop::collection::vec((0.0..1.0f64, 1u8..=255), 1..6).prop_map(Mutation::Flip),
        (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (path, arb_json()).prop_map(|(p, v)| Mutation::Swap(p, v)),
    ]
}

fn at(len: usize, frac: f64) -> usize {
    ((len as f64 * frac) as usize).min(len.saturating_sub(1))
}

fn mutate(body: &Value, m: &Mutation) -> Vec<u8> {
    let bytes = body.to_string().into_bytes();
    match m {
        Mutation::Truncate(f) => bytes[..(bytes.len() as f64 * f) as usize].to_vec(),
        Mutation::Flip(flips) => {
            let mut b = bytes;
            for (f, x) in flips {
                let i = at(b.len(), *f);
                b[i] ^= x;
            }
            b
        }
        Mutation::Insert(f, extra) => {
            let mut b = bytes;
            let i = at(b.len(), *f);
            b.splice(i..i, extra.iter().copied());
            b
        }
        Mutation::Swap(path, v) => {
            let mut doc = body.clone();
            let mut cur = &mut doc;
            for (n, step) in path.iter().enumerate() {
                let last = n + 1 == path.len();
                let next = match cur {
                    Value::Object(m) if last => {
                        m.insert(step.clone(), v.clone());
                        break;
                    }
                    Value::Object(m) => m.get_mut(step),
                    Value::Array(a) => match step.parse::<usize>() {
                        Ok(i) if i < a.len() && last => {
                            a[i] = v.clone();
                            break;
                        }
                        Ok(i) => a.get_mut(i),
                        Err(_) => None,
                    },
                    _ => None,
                };
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            }
            doc.to_string().into_bytes()
        }
    }
}

/// What every page the parsers accept satisfies.
fn check_page(page: &Page) {
    assert!(page.last_page >= 1, "last_page 0 accepted: {page:?}");
    assert!(
        page.last_page <= page.total.max(1),
        "a page count larger than the record count was accepted: {page:?}"
    );
}

fn parse_all(bytes: &[u8]) {
    for parsed in [parse_firstline(bytes), parse_plusofon(bytes)] {
        match parsed {
            Ok(page) => check_page(&page),
            Err(PageError::Api { message, .. }) => {
                assert_eq!(error_body(bytes).map(|(_, m)| m), Some(message));
            }
            Err(PageError::Malformed(m)) => assert!(!m.is_empty()),
        }
    }
    let _ = error_body(bytes);
}

// ---------------------------------------------------------------------------------------
// Pages and error bodies
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(doc in arb_json()) {
        parse_all(doc.to_string().as_bytes());
        // Also wrapped the ways a page or an error is.
        parse_all(json!({"data": doc, "meta": doc}).to_string().as_bytes());
        parse_all(json!({"message": doc, "code": doc}).to_string().as_bytes());
    }

    #[test]
    fn valid_firstline_pages_parse_and_every_prefix_is_an_error(page in valid_page(true)) {
        let bytes = page.body.to_string().into_bytes();
        let parsed = parse_firstline(&bytes).unwrap_or_else(|e| panic!("{e:?}: {}", page.body));
        prop_assert_eq!(parsed.records.len(), page.records);
        prop_assert_eq!(
            (parsed.current_page, parsed.last_page, parsed.total, parsed.per_page),
            (page.current_page, page.last_page, page.total, page.per_page)
        );
        for cut in 0..bytes.len() {
            prop_assert!(parse_firstline(&bytes[..cut]).is_err(), "prefix of {} bytes parsed", cut);
        }
    }

    #[test]
    fn valid_plusofon_pages_parse_and_every_prefix_is_an_error(page in valid_page(false)) {
        let bytes = page.body.to_string().into_bytes();
        let parsed = parse_plusofon(&bytes).unwrap_or_else(|e| panic!("{e:?}: {}", page.body));
        prop_assert_eq!(parsed.records.len(), page.records);
        prop_assert_eq!(
            (parsed.current_page, parsed.last_page, parsed.total, parsed.per_page),
            (page.current_page, page.last_page, page.total, page.per_page)
        );
        for cut in 0..bytes.len() {
            prop_assert!(parse_plusofon(&bytes[..cut]).is_err(), "prefix of {} bytes parsed", cut);
        }
    }

    #[test]
    fn mutated_pages_never_panic(
        firstline in valid_page(true),
        plusofon in valid_page(false),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        for page in [&firstline, &plusofon] {
            let mut body = page.body.clone();
            for m in &mutations {
                let bytes = mutate(&body, m);
                parse_all(&bytes);
                // Later mutations apply to the result when it is still JSON.
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    body = v;
                }
            }
        }
    }

    #[test]
    fn error_bodies_are_read_or_refused(message in arb_json(), code in arb_json(), extra in arb_json()) {
        let body = json!({"message": message, "code": code, "extra": extra});
        let bytes = body.to_string().into_bytes();
        match error_body(&bytes) {
            Some((_, m)) => prop_assert_eq!(Some(m.as_str()), message.as_str()),
            None => prop_assert!(!message.is_string() || !(code.is_null() || code.is_number() || code.is_string())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Upstream records
// ---------------------------------------------------------------------------------------

fn resource_kind() -> impl Strategy<Value = ResourceKind> {
    prop::sample::select(ResourceKind::BUILT_IN.to_vec())
}

fn sql_value() -> impl Strategy<Value = rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    prop_oneof![
        Just(V::Null),
        any::<i64>().prop_map(V::Integer),
        any::<f64>().prop_map(V::Real),
        "\\PC{0,8}".prop_map(V::Text),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(V::Blob),
    ]
}

/// Values as a push passes them back to `parse` (read from the journal, so each fits its
/// column's type).
fn typed_fallback(kind: ResourceKind) -> impl Strategy<Value = Vec<rusqlite::types::Value>> {
    use restsync::resources::ColumnType;
    use rusqlite::types::Value as V;
    let per_column: Vec<BoxedStrategy<V>> = kind
        .spec()
        .columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Integer => prop_oneof![Just(V::Null), any::<i64>().prop_map(V::Integer)].boxed(),
            ColumnType::Text => prop_oneof![Just(V::Null), "\\PC{0,8}".prop_map(V::Text)].boxed(),
            ColumnType::Real => prop_oneof![Just(V::Null), (-1e9f64..1e9).prop_map(V::Real)].boxed(),
        })
        .collect();
    per_column
}

/// A record shaped like the resource's, each field holding any JSON value, with the values
/// a push would fall back on for fields the record leaves out.
fn shaped_record() -> impl Strategy<Value = (ResourceKind, Value, Vec<rusqlite::types::Value>)> {
    resource_kind().prop_flat_map(|kind| {
        let spec = kind.spec();
        let n = spec.columns.len();
        (
            Just(kind),
            prop_oneof![arb_json(), any::<i64>().prop_map(Value::from)],
            prop::collection::vec(prop_oneof![arb_json(), tricky_scalar()], n),
            prop::collection::vec(any::<bool>(), n),
            typed_fallback(kind),
        )
            .prop_map(move |(kind, id, values, present, fallback)| {
                let mut m = Map::new();
                m.insert("id".into(), id);
                for ((col, v), p) in kind.spec().columns.iter().zip(values).zip(present) {
                    if !p {
                        continue;
                    }
                    match col.read_from {
                        restsync::resources::JsonPath::Key(k) => {
                            m.insert(k.into(), v);
                        }
                        restsync::resources::JsonPath::Nested(keys) => {
                            m.insert(keys[0].into(), json!({ keys[1]: v }));
                        }
                    }
                }
                (kind, Value::Object(m), fallback)
            })
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_json_is_a_record_or_a_typed_error(
        kind in resource_kind(),
        doc in arb_json(),
        fallback in prop::collection::vec(sql_value(), 0..10),
    ) {
        let spec = kind.spec();
        for fb in [None, Some(fallback.as_slice())] {
            if let Ok(record) = spec.parse(&doc, fb) {
                prop_assert_eq!(record.values.len(), spec.columns.len());
                prop_assert!(doc.get("id").is_some());
            }
        }
    }

    #[test]
    fn shaped_records_with_any_field_types_never_panic((kind, doc, fallback) in shaped_record()) {
        let spec = kind.spec();
        for fb in [None, Some(fallback.as_slice())] {
            match spec.parse(&doc, fb) {
                Ok(record) => {
                    prop_assert_eq!(record.values.len(), spec.columns.len());
                    // What parses is what a push may send back: it must survive the journal.
                    let text = spec.values_to_json(&record.values);
                    let back = spec.values_from_json(&text);
                    prop_assert!(back.is_ok(), "{:?}: {}", back, text);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

const SECTIONS: &[&str] = &[
    "database",
    "upstreams.firstline",
    "upstreams.plusofon",
    "resources.phone_numbers",
    "resources.addresses",
    "resources.smart_numbers",
    "sync",
    "log",
    "metrics",
    "daemon",
];

const KEYS: &[&str] = &[
    "path",
    "base_url",
    "token",
    "token_file",
    "client",
    "enabled",
    "schedule",
    "user_id",
    "per_page",
    "concurrency",
    "request_timeout_secs",
    "on_conflict",
    "max_delete_fraction",
    "max_attempts_per_run",
    "retry_base_ms",
    "max_retry_after_secs",
    "journal_retention_days",
    "level",
    "format",
    "listen",
    "shutdown_grace_secs",
    "push_delay_ms",
    "watch_interval_ms",
    "max_requests_per_sec",
    "max_in_flight",
];

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Strings a person might plausibly (or implausibly) put in a value.
fn config_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        "(\\*|[0-9]{1,3}|[0-9]-[0-9]{1,2}|\\*/[0-9]{1,2}|[A-Za-z]{3})( (\\*|[0-9]{1,3}|[0-9]-[0-9]{1,2}|\\*/[0-9]{1,2}|[A-Za-z]{3}|\\?|L|[0-9]#[0-9])){3,7}",
        prop::sample::select(vec![
            "0 */5 * * * *",
            "*/0 * * * *",
            "0 0 0 31 2 *",
            "59-0 * * * * *",
            "* * * * 8",
            "* * * * 7-0",
            "* * * * 1/0",
            "@hourly",
            "http://127.0.0.1:1",
            "https://[::1]:65536/x",
            "file:///etc/passwd",
            "remote-wins",
            "local-wins",
            "json",
            "text",
            "info,restsync=debug",
            "[[[",
            "127.0.0.1:0",
            "[::]:99999",
            "missing-token-file",
            "",
            " ",
        ])
        .prop_map(str::to_string),
    ]
}

fn toml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
            "213503982334602",
            "nan",
            "inf",
            "-inf",
            "1e308",
            "-0.0",
            "0.5",
            "1.5",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "[]",
            "{}",
        ])
        .prop_map(str::to_string),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        config_string().prop_map(|s| toml_str(&s)),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// A config file's sections with keys, mostly the real ones.
fn toml_sections() -> impl Strategy<Value = Sections> {
    let entry = (
        prop_oneof![4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string), 1 => "[a-z_]{1,10}"],
        toml_value(),
    );
    let section = (
        prop_oneof![4 => prop::sample::select(SECTIONS.to_vec()).prop_map(str::to_string), 1 => "[a-z_.]{1,12}"],
        prop::collection::vec(entry, 0..8),
    );
    prop::collection::vec(section, 0..8)
}

type Sections = Vec<(String, Vec<(String, String)>)>;

/// A config that is valid apart from what a test adds to it.
fn base_sections() -> Sections {
    let s = |v: &str| toml_str(v);
    vec![
        ("database".into(), vec![("path".into(), s("mirror.db"))]),
        (
            "upstreams.firstline".into(),
            vec![
                ("base_url".into(), s("http://127.0.0.1:9")),
                ("token".into(), s("t")),
            ],
        ),
        (
            "upstreams.plusofon".into(),
            vec![
                ("base_url".into(), s("http://127.0.0.1:9")),
                ("token".into(), s("t")),
                ("client".into(), s("1")),
            ],
        ),
    ]
}

/// Sets `key = value` in `section` (replacing an earlier value), adding the section if new.
fn set(sections: &mut Sections, section: &str, key: &str, value: &str) {
    let idx = match sections.iter().position(|(name, _)| name == section) {
        Some(i) => i,
        None => {
            sections.push((section.to_string(), Vec::new()));
            sections.len() - 1
        }
    };
    let entries = &mut sections[idx].1;
    entries.retain(|(k, _)| k != key);
    entries.push((key.to_string(), value.to_string()));
}

fn render(sections: &Sections) -> String {
    let mut out = String::new();
    for (name, entries) in sections {
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

fn env_overrides() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        (
            prop::sample::select(SECTIONS.to_vec()),
            prop::sample::select(KEYS.to_vec())
        )
            .prop_map(|(s, k)| {
                format!(
                    "RESTSYNC_{}__{}",
                    s.replace('.', "__").to_uppercase(),
                    k.to_uppercase()
                )
            }),
        "RESTSYNC_[A-Z_]{0,12}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        config_string(),
    ];
    prop::collection::hash_map(name, value, 0..4)
}

fn load(dir: &std::path::Path, text: &[u8], env: HashMap<String, String>) {
    let path = dir.join("restsync.toml");
    std::fs::write(&path, text).expect("write config");
    match load_with_env(&path, env) {
        Ok(settings) => {
            assert!(settings.sync.per_page >= 1);
            assert!(settings.sync.max_attempts_per_run >= 1);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_file_content_is_a_config_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().expect("temp dir");
        load(dir.path(), &bytes, HashMap::new());
    }

    #[test]
    fn toml_with_any_sections_keys_and_values_is_a_config_or_a_typed_error(
        sections in toml_sections(),
        env in env_overrides(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        load(dir.path(), render(&sections).as_bytes(), env.clone());
        // The same merged into a valid config, so validation gets past the basics.
        let mut merged = base_sections();
        for (section, entries) in &sections {
            for (k, v) in entries {
                set(&mut merged, section, k, v);
            }
        }
        load(dir.path(), render(&merged).as_bytes(), env);
    }

    #[test]
    fn any_value_of_any_known_key_is_a_config_or_a_typed_error(
        section in prop::sample::select(SECTIONS.to_vec()),
        key in prop::sample::select(KEYS.to_vec()),
        value in toml_value(),
        env in env_overrides(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sections = base_sections();
        set(&mut sections, section, key, &value);
        load(dir.path(), render(&sections).as_bytes(), env);
    }
}

/// Retention is given in days; any number of them must not overflow.
#[test]
fn a_huge_journal_retention_is_an_error_or_a_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sections = base_sections();
    set(&mut sections, "sync", "journal_retention_days", "213503982334602");
    load(dir.path(), render(&sections).as_bytes(), HashMap::new());
}
