//! Unit tests of the resource specs: parsing upstream records (the examples of the API
//! documents), request payloads, local validation and the journal value encoding.

use super::*;
use serde_json::json;

fn phones() -> &'static ResourceSpec {
    ResourceKind::PHONE_NUMBERS.spec()
}

fn addresses() -> &'static ResourceSpec {
    ResourceKind::ADDRESSES.spec()
}

fn smart() -> &'static ResourceSpec {
    ResourceKind::SMART_NUMBERS.spec()
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn keys(m: &Map<String, Json>) -> Vec<&str> {
    let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn wrong_field(r: Result<Record, RecordError>) -> String {
    match r {
        Err(RecordError::WrongType { field, .. }) => field,
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[test]
fn kinds_round_trip_through_their_names() {
    for kind in ResourceKind::BUILT_IN {
        assert_eq!(ResourceKind::from_name(kind.name()), Some(kind));
        assert!(kind.is_built_in());
        assert_eq!(kind.to_string(), kind.name());
        assert_eq!(kind.spec().base_table, format!("{}_base", kind.spec().table));
    }
    assert_eq!(ResourceKind::from_name("contacts"), None);
    assert_eq!(smart().upstream, UpstreamName::Plusofon);
    assert_eq!(phones().upstream.as_str(), "firstline");
    assert_eq!(
        serde_json::to_string(&ResourceKind::SMART_NUMBERS).unwrap(),
        "\"smart_numbers\""
    );
}

#[test]
fn parses_the_documented_phone_number() {
    let doc = json!({
        "id": 245621,
        "type": 0,
        "extension": null,
        "number": "0928846763",
        "description": null,
        "profile_id": 1935008,
        "phone_contact": {
            "id": 480,
            "contact_id": 1935038,
            "phone_number_id": 245621,
            "is_visible": true
        }
    });
    let r = phones().parse(&doc, None).unwrap();
    assert_eq!(r.id, 245621);
    assert_eq!(
        r.values,
        vec![
            int(1935038),
            int(0),
            text("0928846763"),
            Value::Null,
            Value::Null,
            int(1935008)
        ]
    );
}

#[test]
fn create_answer_without_phone_contact_takes_contact_id_from_what_was_sent() {
    let answer = json!({
        "id": 1,
        "type": 0,
        "extension": "54 311",
        "number": "23255780374507",
        "description": "Up-sized mobile focusgroup",
        "profile_id": 1
    });
    let sent = vec![
        int(1935038),
        int(0),
        text("23255780374507"),
        text("54 311"),
        text("Up-sized mobile focusgroup"),
        Value::Null,
    ];
    let r = phones().parse(&answer, Some(&sent)).unwrap();
    assert_eq!(r.id, 1);
    assert_eq!(r.values[0], int(1935038), "contact_id from the fallback");
    assert_eq!(
        r.values[5],
        int(1),
        "profile_id from the answer, not the fallback"
    );
    assert_eq!(r.values[3], text("54 311"));
    // Without a fallback the missing field is NULL.
    let r = phones().parse(&answer, None).unwrap();
    assert_eq!(r.values[0], Value::Null);
}

#[test]
fn explicit_null_in_an_answer_wins_over_the_fallback() {
    let answer = json!({"id": 1, "type": 2, "number": "0939888999", "extension": null,
        "description": null, "profile_id": 1, "phone_contact": {"contact_id": 5}});
    let sent = vec![
        int(5),
        int(2),
        text("0939888999"),
        text("12"),
        text("d"),
        Value::Null,
    ];
    let r = phones().parse(&answer, Some(&sent)).unwrap();
    assert_eq!(r.values[3], Value::Null);
    assert_eq!(r.values[4], Value::Null);
}

#[test]
fn parses_the_documented_address_and_one_with_string_ids() {
    let doc = json!({
        "id": 2678,
        "type": 1,
        "enum_type": {"key": "MAILING", "value": 1, "description": "mail address"},
        "address": "基隆市仁愛區愛一路35號8樓之一",
        "contact_id": 1938277,
        "profile_id": 1938247,
        "state": {"id": 2, "country_id": 1, "name": "基隆市"},
        "state_id": 2,
        "country": {"id": 1, "name": "台灣", "abbrev": null},
        "country_id": 1,
        "city": {"id": 1, "state_id": 2, "name": "仁愛區", "zipcode": "200"},
        "city_id": 1,
        "description": null
    });
    let expected = vec![
        int(1938277),
        int(1),
        text("基隆市仁愛區愛一路35號8樓之一"),
        int(1),
        int(2),
        int(1),
        Value::Null,
        int(1938247),
    ];
    let r = addresses().parse(&doc, None).unwrap();
    assert_eq!(r.id, 2678);
    assert_eq!(r.values, expected);

    let stringly = json!({
        "id": "2678",
        "type": "1",
        "address": "基隆市仁愛區愛一路35號8樓之一",
        "contact_id": "1938277",
        "profile_id": " 1938247 ",
        "state_id": "2",
        "country_id": "1",
        "city_id": "1",
        "description": null
    });
    let r = addresses().parse(&stringly, None).unwrap();
    assert_eq!(r.id, 2678);
    assert_eq!(r.values, expected);
}

#[test]
fn parses_the_documented_smart_number() {
    let doc = json!({
        "id": 2,
        "user_id": 40,
        "phoneA": "79991230046",
        "phoneB": "37410324040",
        "phoneX": "79770005419",
        "description": "тестовый умный номер",
        "created_at": "2022-07-01 07:59:59"
    });
    let r = smart().parse(&doc, None).unwrap();
    assert_eq!(r.id, 2);
    assert_eq!(
        r.values,
        vec![
            int(40),
            text("79991230046"),
            text("37410324040"),
            text("79770005419"),
            text("тестовый умный номер"),
            text("2022-07-01 07:59:59"),
        ]
    );
    // The snake_case names of the create body are not where a listing keeps the phones.
    let snake = json!({"id": 3, "user_id": 40, "phone_b": "1", "phone_a": "2", "phone_x": "3"});
    let r = smart().parse(&snake, None).unwrap();
    assert_eq!(r.values[1..4], [Value::Null, Value::Null, Value::Null]);
}

#[test]
fn numbers_in_text_columns_become_text() {
    let doc = json!({"id": 2, "user_id": 40, "phoneA": 79991230046_i64, "phoneB": 1.5});
    let r = smart().parse(&doc, None).unwrap();
    assert_eq!(r.values[1], text("79991230046"));
    assert_eq!(r.values[2], text("1.5"));
}

#[test]
fn wrong_types_name_the_field() {
    let base = json!({"id": 1, "type": 0, "number": "0928846763", "phone_contact": {"contact_id": 5}});
    let with = |key: &str, v: Json| {
        let mut d = base.clone();
        d[key] = v;
        d
    };
    let err = phones().parse(&with("type", json!("mobile")), None).unwrap_err();
    assert_eq!(
        err,
        RecordError::WrongType {
            field: "type".into(),
            expected: "an integer",
            found: "\"mobile\"".into()
        }
    );
    assert!(err.to_string().contains("`type`"), "{err}");
    assert!(err.to_string().contains("an integer"), "{err}");

    let err = phones()
        .parse(&with("number", json!(["0928846763"])), None)
        .unwrap_err();
    assert_eq!(
        err,
        RecordError::WrongType {
            field: "number".into(),
            expected: "a string",
            found: "[\"0928846763\"]".into()
        }
    );
    assert_eq!(
        wrong_field(phones().parse(&with("type", json!(1.5)), None)),
        "type"
    );
    assert_eq!(
        wrong_field(phones().parse(&with("type", json!("1.0")), None)),
        "type"
    );
    assert_eq!(
        wrong_field(phones().parse(&with("description", json!(true)), None)),
        "description"
    );
    assert_eq!(
        wrong_field(phones().parse(&with("phone_contact", json!({"contact_id": "x"})), None)),
        "contact_id"
    );
    assert_eq!(
        wrong_field(smart().parse(&json!({"id": 1, "phoneB": {"n": 1}}), None)),
        "phoneB",
        "the error names the field as upstream spells it"
    );
    assert_eq!(
        wrong_field(addresses().parse(&json!({"id": 1, "city_id": "Taipei"}), None)),
        "city_id"
    );
}

#[test]
fn integer_columns_accept_integer_strings_and_out_of_range_numbers_are_rejected() {
    let r = phones()
        .parse(
            &json!({"id": " 9 ", "type": "2", "phone_contact": {"contact_id": "-3"}}),
            None,
        )
        .unwrap();
    assert_eq!(r.id, 9);
    assert_eq!(r.values[0], int(-3));
    assert_eq!(r.values[1], int(2));
    assert_eq!(
        wrong_field(phones().parse(&json!({"id": 1, "type": 1e20}), None)),
        "type"
    );
    assert_eq!(
        wrong_field(phones().parse(&json!({"id": 1, "type": 18446744073709551615_u64}), None)),
        "type"
    );
}

#[test]
fn missing_or_unusable_id_is_missing_id() {
    for doc in [
        json!({"type": 0}),
        json!({"id": null}),
        json!({"id": "abc"}),
        json!({"id": ""}),
        json!({"id": 1.5}),
        json!({"id": true}),
        json!({"id": [1]}),
        json!({"id": {"id": 1}}),
    ] {
        for kind in ResourceKind::BUILT_IN {
            assert_eq!(
                kind.spec().parse(&doc, None),
                Err(RecordError::MissingId),
                "{kind} {doc}"
            );
        }
    }
}

#[test]
fn non_objects_are_not_an_object() {
    for doc in [
        json!(null),
        json!([]),
        json!([{"id": 1}]),
        json!("x"),
        json!(1),
        json!(true),
    ] {
        for kind in ResourceKind::BUILT_IN {
            assert_eq!(
                kind.spec().parse(&doc, None),
                Err(RecordError::NotAnObject),
                "{doc}"
            );
        }
    }
}

#[test]
fn odd_json_gives_typed_errors_and_never_panics() {
    for kind in ResourceKind::BUILT_IN {
        let spec = kind.spec();
        let key_of = |c: &Column| match c.read_from {
            JsonPath::Key(k) => (k, None),
            JsonPath::Nested(keys) => (keys[0], keys.get(1).copied()),
        };
        // Null everywhere, id included: no id.
        let mut all_null = Map::new();
        all_null.insert("id".into(), Json::Null);
        for c in spec.columns {
            all_null.insert(key_of(c).0.into(), Json::Null);
        }
        assert_eq!(
            spec.parse(&Json::Object(all_null.clone()), None),
            Err(RecordError::MissingId)
        );
        // Null everywhere but the id: a record of NULLs, even with a fallback.
        all_null.insert("id".into(), json!(5));
        let fallback = vec![int(1); spec.columns.len()];
        let r = spec.parse(&Json::Object(all_null), Some(&fallback)).unwrap();
        let nested_cols = spec
            .columns
            .iter()
            .map(|c| matches!(c.read_from, JsonPath::Nested(..)))
            .collect::<Vec<_>>();
        for (v, nested) in r.values.iter().zip(nested_cols) {
            // A nested column whose outer object is null is absent: it takes the fallback.
            assert_eq!(*v, if nested { int(1) } else { Value::Null }, "{kind}");
        }
        // An object (or an array, or deep nesting) where each scalar is expected.
        for c in spec.columns {
            let mut deep = json!({"deep": "x".repeat(500)});
            for _ in 0..200 {
                deep = json!([deep]);
            }
            for odd in [json!({"a": 1}), json!([1, 2]), deep] {
                let doc = match key_of(c) {
                    (k, None) => json!({"id": 1, k: odd}),
                    (outer, Some(inner)) => json!({"id": 1, outer: {inner: odd}}),
                };
                match spec.parse(&doc, None) {
                    Err(RecordError::WrongType { field, found, .. }) => {
                        let upstream_key = match key_of(c) {
                            (k, None) => k,
                            (_, Some(inner)) => inner,
                        };
                        assert_eq!(field, upstream_key);
                        assert!(found.chars().count() <= 61, "found is truncated: {found}");
                    }
                    other => panic!("{kind}.{}: {odd} gave {other:?}", c.name),
                }
            }
        }
    }
}

#[test]
fn create_payload_has_only_writable_columns_under_their_payload_keys() {
    let phone = vec![int(5), int(2), text("0911"), Value::Null, text("d"), int(99)];
    let p = phones().create_payload(&phone);
    assert_eq!(
        keys(&p),
        ["contact_id", "description", "extension", "number", "type"]
    );
    assert_eq!(p["contact_id"], json!(5));
    assert_eq!(p["type"], json!(2));
    assert_eq!(p["number"], json!("0911"));
    assert_eq!(p["extension"], Json::Null);

    let addr = vec![
        int(5),
        int(1),
        text("a"),
        int(1),
        int(2),
        int(3),
        Value::Null,
        int(99),
    ];
    let p = addresses().create_payload(&addr);
    assert_eq!(
        keys(&p),
        [
            "address",
            "city_id",
            "contact_id",
            "country_id",
            "description",
            "state_id",
            "type"
        ]
    );

    let sn = vec![
        int(15),
        text("79991230046"),
        text("79993332210"),
        text("79770005419"),
        text("quas"),
        text("2022-07-01 07:59:59"),
    ];
    let p = smart().create_payload(&sn);
    assert_eq!(
        Json::Object(p),
        json!({"user_id": 15, "phone_b": "79993332210", "description": "quas"})
    );
}

#[test]
fn update_payload_has_changed_writable_columns_and_contact_id_for_phone_numbers() {
    let base = vec![int(5), int(0), text("0928846763"), Value::Null, text("d"), int(1)];
    let mut now = base.clone();
    now[1] = int(2);
    now[3] = text("12");
    now[5] = int(42); // read-only: never sent
    let p = phones().update_payload(&now, &base);
    assert_eq!(
        Json::Object(p),
        json!({"contact_id": 5, "type": 2, "extension": "12"})
    );
    // Nothing changed: contact_id alone, as Firstline's PUT requires it.
    let p = phones().update_payload(&base, &base);
    assert_eq!(Json::Object(p), json!({"contact_id": 5}));
    // A value cleared locally is sent as null.
    let mut cleared = base.clone();
    cleared[4] = Value::Null;
    assert_eq!(
        Json::Object(phones().update_payload(&cleared, &base)),
        json!({"contact_id": 5, "description": null})
    );

    // Addresses require nothing extra.
    let abase = vec![
        int(5),
        int(1),
        text("a"),
        int(1),
        int(2),
        int(3),
        Value::Null,
        int(99),
    ];
    let mut anow = abase.clone();
    anow[2] = text("b");
    assert_eq!(
        Json::Object(addresses().update_payload(&anow, &abase)),
        json!({"address": "b"})
    );
    assert!(addresses().update_payload(&abase, &abase).is_empty());
}

#[test]
fn changed_writable_ignores_read_only_columns() {
    let a = vec![int(5), int(0), text("1"), Value::Null, text("d"), int(1)];
    let mut b = a.clone();
    b[5] = int(2);
    assert!(phones().changed_writable(&a, &b).is_empty());
    b[2] = text("2");
    b[4] = Value::Null;
    assert_eq!(phones().changed_writable(&a, &b), ["number", "description"]);
    assert_eq!(phones().column_index("number"), Some(2));
    assert_eq!(phones().column_index("id"), None);
}

#[test]
fn validate_local_rejects_text_in_an_integer_column_naming_it() {
    let ok = vec![
        int(5),
        int(0),
        text("0928846763"),
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    assert_eq!(phones().validate_local(&ok), Ok(()));
    // Numbers in text columns are fine (SQLite may hand them back as numbers).
    let mut numeric_text = ok.clone();
    numeric_text[2] = int(928846763);
    numeric_text[4] = Value::Real(1.5);
    assert_eq!(phones().validate_local(&numeric_text), Ok(()));

    let mut bad = ok.clone();
    bad[1] = text("mobile");
    let err = phones().validate_local(&bad).unwrap_err();
    assert!(err.contains("`type`"), "{err}");
    assert!(err.contains("integer"), "{err}");
    assert!(err.contains("\"mobile\""), "{err}");

    let mut real = ok.clone();
    real[0] = Value::Real(5.5);
    assert!(phones()
        .validate_local(&real)
        .unwrap_err()
        .contains("`contact_id`"));

    let mut blob = ok.clone();
    blob[2] = Value::Blob(vec![1, 2, 3]);
    let err = phones().validate_local(&blob).unwrap_err();
    assert!(
        err.contains("`number`") && err.contains("blob of 3 bytes"),
        "{err}"
    );

    // Read-only columns are not pushed, so not checked.
    let mut ro = ok.clone();
    ro[5] = text("not a number");
    assert_eq!(phones().validate_local(&ro), Ok(()));
    let mut sn = vec![
        int(1),
        Value::Blob(vec![0]),
        text("7"),
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    assert_eq!(smart().validate_local(&sn), Ok(()));
    sn[0] = text("x");
    assert!(smart().validate_local(&sn).unwrap_err().contains("`user_id`"));
}

#[test]
fn values_round_trip_through_json() {
    let cases: [(&ResourceSpec, Vec<Value>); 3] = [
        (
            phones(),
            vec![
                int(5),
                int(0),
                text("0928846763"),
                Value::Null,
                text("引號\"\n"),
                int(i64::MAX),
            ],
        ),
        (
            addresses(),
            vec![
                int(-1),
                int(1),
                text(""),
                Value::Null,
                int(2),
                int(3),
                text("d"),
                Value::Null,
            ],
        ),
        (
            smart(),
            vec![
                int(40),
                text("79991230046"),
                text("37410324040"),
                text("79770005419"),
                text("тест"),
                text("2022-07-01 07:59:59"),
            ],
        ),
    ];
    for (spec, values) in cases {
        let s = spec.values_to_json(&values);
        assert_eq!(spec.values_from_json(&s).unwrap(), values, "{s}");
    }
    assert_eq!(
        phones().values_to_json(&[int(1), Value::Null, text("x")]),
        r#"[1,null,"x"]"#
    );
}

#[test]
fn values_from_json_rejects_bad_input() {
    let err = phones().values_from_json("[1, 2]").unwrap_err();
    assert!(err.contains("expected 6 values, found 2"), "{err}");
    assert!(phones().values_from_json("not json").is_err());
    assert!(phones().values_from_json("{}").is_err());
    let err = phones()
        .values_from_json(r#"["x", 0, "n", null, null, null]"#)
        .unwrap_err();
    assert!(err.contains("`contact_id`"), "{err}");
}

#[test]
fn value_helpers() {
    assert_eq!(describe_value(&Value::Null), "NULL");
    assert_eq!(describe_value(&int(3)), "3");
    assert_eq!(describe_value(&text("a\"b")), "\"a\\\"b\"");
    assert_eq!(describe_value(&Value::Blob(vec![0; 4])), "a blob of 4 bytes");
    assert_eq!(value_to_json(&Value::Real(f64::NAN)), Json::Null);
    assert_eq!(value_to_json(&Value::Real(2.5)), json!(2.5));
    assert_eq!(value_to_json(&Value::Blob(b"ab".to_vec())), json!("ab"));
    assert_eq!(truncate("abc", 3), "abc");
    assert_eq!(truncate("éèêë", 2), "éè…");
}

/// The built-ins are the definitions in `builtin.toml`, and `resources show` prints each
/// exactly as written there (so a copy under another name is the same resource).
#[test]
fn the_built_ins_are_the_definitions_that_ship_with_the_binary() {
    let file: Vec<&str> = include_str!("builtin.toml")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let printed: Vec<String> = ResourceKind::BUILT_IN
        .iter()
        .flat_map(|k| {
            crate::resources::definition::to_toml(k.spec())
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(file, printed);
    assert!(phones().can_update && !smart().can_update && !smart().create_returns_record);
    assert_eq!(phones().columns[0].read_from.dotted(), "phone_contact.contact_id");
}
