//! Tests of the sandbox API emulation: envelopes, round trips, validation, auth, seeding.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

use super::*;

/// A started sandbox plus a client that knows its credentials.
pub(super) struct Api {
    pub sandbox: Sandbox,
    pub ctl: SandboxControl,
    client: reqwest::Client,
}

pub(super) async fn start(records: usize) -> Api {
    start_with(SandboxOptions {
        records,
        ..SandboxOptions::default()
    })
    .await
}

pub(super) async fn start_with(opts: SandboxOptions) -> Api {
    let sandbox = Sandbox::start(opts).await.expect("sandbox starts");
    Api {
        ctl: sandbox.control(),
        sandbox,
        client: reqwest::Client::new(),
    }
}

impl Api {
    pub fn fl(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.sandbox.firstline_url()))
            .bearer_auth("sandbox-firstline-token")
    }

    pub fn pl(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.sandbox.plusofon_url()))
            .bearer_auth("sandbox-plusofon-token")
            .header("Client", "10553")
    }
}

/// Sends a request and returns its status and JSON body (Null when the body is empty).
pub(super) async fn call(rb: RequestBuilder) -> (u16, Value) {
    let resp: Response = rb.send().await.expect("request answered");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

const PHONES: &str = "/api/v1/phone-number";
const ADDRESSES: &str = "/api/v1/address";
const SMARTS: &str = "/api/v1/smart-numbers";

#[tokio::test]
async fn phone_search_envelope() {
    let api = start(40).await;
    let (status, body) = call(api.fl(Method::GET, &format!("{PHONES}?per_page=10&page=2"))).await;
    assert_eq!(status, 200);
    let link = |p: u32| format!("https://firstline.localhost/api/phone-number?per_page=10&page={p}");
    assert_eq!(
        body["links"],
        json!({"first": link(1), "last": link(4), "prev": link(1), "next": link(3)})
    );
    assert_eq!(
        body["meta"],
        json!({"current_page": 2, "from": 11, "last_page": 4,
               "path": "https://firstline.localhost/api/phone-number",
               "per_page": 10, "to": 20, "total": 40})
    );
    let data = body["data"].as_array().expect("data array");
    assert_eq!(data.len(), 10);
    assert_eq!(data[0], api.ctl.list(Kind::PhoneNumbers)[10]);
    let p = &data[0];
    assert_eq!(p["phone_contact"]["phone_number_id"], p["id"]);
    assert_eq!(p["phone_contact"]["is_visible"], true);
    let contact = p["phone_contact"]["contact_id"].as_i64().expect("contact id");
    assert_eq!(p["profile_id"].as_i64(), Some(contact - 30));

    let (_, body) = call(api.fl(Method::GET, PHONES)).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(15));
    assert_eq!(body["meta"]["per_page"], 15);
    assert_eq!(body["links"]["prev"], Value::Null);

    let (_, body) = call(api.fl(Method::GET, &format!("{PHONES}?page=9"))).await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["meta"]["total"], 40);
    assert_eq!(body["meta"]["last_page"], 3);
    assert_eq!(body["meta"]["from"], Value::Null);
    assert_eq!(body["links"]["next"], Value::Null);

    let (_, body) = call(api.fl(Method::GET, &format!("{PHONES}?contact_id=1"))).await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(
        (
            &body["meta"]["total"],
            &body["meta"]["last_page"],
            &body["meta"]["to"]
        ),
        (&json!(0), &json!(1), &Value::Null)
    );

    let url = format!("{PHONES}?contact_id={contact}");
    let (_, body) = call(api.fl(Method::GET, &url)).await;
    let found = body["data"].as_array().expect("data");
    assert!(!found.is_empty());
    assert!(found.iter().all(|r| r["phone_contact"]["contact_id"] == contact));

    let (status, body) = call(api.fl(Method::GET, &format!("{PHONES}?page=abc&per_page=x"))).await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "The given data was invalid.");
    assert_eq!(body["errors"]["page"][0], "The page must be an integer.");
    assert_eq!(body["errors"]["per_page"][0], "The per page must be an integer.");
}

#[tokio::test]
async fn address_search_envelope() {
    let api = start(30).await;
    let (status, body) = call(api.fl(Method::GET, &format!("{ADDRESSES}?per_page=5"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["per_page"], "5");
    assert_eq!(body["meta"]["last_page"], 6);
    assert_eq!(
        body["links"]["next"],
        "https://firstline.localhost/api/address?per_page=5&page=2"
    );
    let keys = ["HOME", "MAILING", "BILLING", "DELIVERY", "RESIDENCE", "OTHER"];
    for a in body["data"].as_array().expect("data") {
        let t = a["type"].as_u64().expect("type") as usize;
        assert_eq!(a["enum_type"]["key"], keys[t]);
        assert_eq!(a["enum_type"]["value"], t);
        assert!(a["contact_id"].is_i64());
        if !a["city"].is_null() {
            assert_eq!(a["city"]["id"], a["city_id"]);
            assert_eq!(a["city"]["state_id"], a["state_id"]);
            assert_eq!(a["state"]["id"], a["state_id"]);
            assert_eq!(a["country"], json!({"id": 1, "name": "台灣", "abbrev": null}));
        }
    }
    let id = body["data"][0]["id"].as_i64().expect("id");
    let (status, one) = call(api.fl(Method::GET, &format!("{ADDRESSES}/{id}"))).await;
    assert_eq!(status, 200);
    assert!(one["data"].get("contact_id").is_none());
    assert!(one["data"].get("enum_type").is_none());
    assert_eq!(one["data"]["address"], body["data"][0]["address"]);

    let (_, by_body) = call(
        api.fl(Method::GET, ADDRESSES)
            .json(&json!({"city_id": 1, "per_page": 1000})),
    )
    .await;
    let (_, body) = call(api.fl(Method::GET, &format!("{ADDRESSES}?city_id=1&per_page=1000"))).await;
    assert_eq!(by_body["data"], body["data"]);
    let expected = api
        .ctl
        .list(Kind::Addresses)
        .into_iter()
        .filter(|a| a["city_id"] == 1)
        .collect::<Vec<_>>();
    assert_eq!(body["data"], Value::Array(expected));
}

#[tokio::test]
async fn smart_number_paginator() {
    let api = start(40).await;
    let (status, body) = call(api.pl(Method::GET, &format!("{SMARTS}?page=2&per_page=100"))).await;
    assert_eq!(status, 200);
    let url = |p: u32| format!("http://localhost/api/v1/smart-numbers?page={p}");
    let mut envelope = body.clone();
    envelope["data"] = Value::Null;
    assert_eq!(
        envelope,
        json!({"current_page": 2, "data": null, "first_page_url": url(1), "from": 16,
               "last_page": 3, "last_page_url": url(3), "next_page_url": url(3),
               "path": "http://localhost/api/v1/smart-numbers", "per_page": 15,
               "prev_page_url": url(1), "to": 30, "total": 40})
    );
    assert_eq!(body["data"][0], api.ctl.list(Kind::SmartNumbers)[15]);
    let s = &body["data"][0];
    assert!(s["phoneX"].as_str().is_some_and(|x| x.starts_with("797700")));
    assert_eq!(s["created_at"].as_str().map(str::len), Some(19));

    let (_, body) = call(api.pl(Method::GET, &format!("{SMARTS}?page=3"))).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["next_page_url"], Value::Null);

    let (_, body) = call(api.pl(Method::GET, &format!("{SMARTS}?user_id=40"))).await;
    assert!(body["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|s| s["user_id"] == 40)));

    let by_body = call(api.pl(Method::GET, SMARTS).json(&json!({"user_id": 40}))).await;
    assert_eq!(by_body.1["data"], body["data"]);

    let (status, body) = call(api.pl(Method::GET, &format!("{SMARTS}?user_id=99999"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"message": "User not found", "code": 500}));
}

#[tokio::test]
async fn bad_credentials_are_401() {
    let api = start(5).await;
    let base = api.sandbox.firstline_url();
    let client = reqwest::Client::new();
    let (status, body) = call(client.get(format!("{base}{PHONES}"))).await;
    assert_eq!((status, body), (401, json!({"message": "Unauthenticated."})));
    let (status, _) = call(client.get(format!("{base}{PHONES}/1")).bearer_auth("nope")).await;
    assert_eq!(status, 401);

    let pl = format!("{}{SMARTS}", api.sandbox.plusofon_url());
    let unauth = json!({"message": "Unauthenticated.", "code": 401});
    let no_client = client.get(&pl).bearer_auth("sandbox-plusofon-token");
    assert_eq!(call(no_client).await, (401, unauth.clone()));
    let wrong_token = client.get(&pl).bearer_auth("x").header("Client", "10553");
    assert_eq!(call(wrong_token).await, (401, unauth));
}

#[tokio::test]
async fn phone_round_trip() {
    let api = start(5).await;
    let new = json!({"contact_id": 1935038, "type": 0, "number": "0928846763", "description": "測試"});
    let (status, created) = call(api.fl(Method::POST, PHONES).json(&new)).await;
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_i64().expect("id");
    assert_eq!(
        created,
        json!({"data": {"id": id, "type": 0, "extension": null, "number": "0928846763",
                        "description": "測試", "profile_id": 1935008}})
    );
    let (status, got) = call(api.fl(Method::GET, &format!("{PHONES}/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(got["data"]["phone_contact"]["contact_id"], 1935038);
    assert_eq!(api.ctl.list(Kind::PhoneNumbers).last(), Some(&got["data"]));

    let change = json!({"contact_id": 1935038, "type": 2, "number": "0939888999", "extension": ""});
    let (status, updated) = call(api.fl(Method::PUT, &format!("{PHONES}/{id}")).json(&change)).await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"]["extension"], "");
    assert_eq!(updated["data"]["description"], "測試");
    assert!(updated["data"].get("phone_contact").is_none());

    let (status, body) = call(
        api.fl(Method::PUT, &format!("{PHONES}/{id}"))
            .json(&json!({"type": 1})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"],
        json!({"contact_id": ["The contact id field is required."]})
    );

    let (status, body) = call(api.fl(Method::DELETE, &format!("{PHONES}/{id}"))).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(api.fl(Method::GET, &format!("{PHONES}/{id}"))).await;
    assert_eq!(status, 404);
    let message = format!("No query results for model [App\\Models\\PhoneNumber] {id}");
    assert_eq!(body, json!({ "message": message }));
    assert_eq!(
        call(api.fl(Method::DELETE, &format!("{PHONES}/{id}"))).await.0,
        404
    );
    assert_eq!(
        call(api.fl(Method::PUT, &format!("{PHONES}/{id}")).json(&change))
            .await
            .0,
        404
    );
    let (status, body) = call(api.fl(Method::GET, &format!("{PHONES}/abc"))).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["message"],
        "No query results for model [App\\Models\\PhoneNumber] abc"
    );
}

#[tokio::test]
async fn phone_validation() {
    let api = start(5).await;
    let (status, body) = call(api.fl(Method::POST, PHONES).json(&json!({}))).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"message": "The given data was invalid.", "errors": {
            "contact_id": ["The contact id field is required."],
            "type": ["The type field is required."],
            "number": ["The number field is required."]}})
    );
    let bad = [
        (
            json!({"contact_id": 1, "type": 7, "number": "02-2345-6789"}),
            "type",
            "The selected type is invalid.",
        ),
        (
            json!({"contact_id": 1, "type": 1, "number": "abc"}),
            "number",
            "The number format is invalid.",
        ),
        (
            json!({"contact_id": 1, "type": 1, "number": "0".repeat(21)}),
            "number",
            "The number must not be greater than 20 characters.",
        ),
        (
            json!({"contact_id": 1, "type": 1, "number": 912345678}),
            "number",
            "The number must be a string.",
        ),
        (
            json!({"contact_id": "x", "type": 1, "number": "0912"}),
            "contact_id",
            "The contact id must be an integer.",
        ),
        (
            json!({"contact_id": 1, "type": 1, "number": "0912", "description": "x".repeat(256)}),
            "description",
            "The description must not be greater than 255 characters.",
        ),
    ];
    for (body, field, message) in bad {
        let (status, answer) = call(api.fl(Method::POST, PHONES).json(&body)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(answer["errors"][field][0], message, "{body}");
    }
    let malformed = api
        .fl(Method::POST, PHONES)
        .header("Content-Type", "application/json")
        .body("{\"type\":");
    assert_eq!(call(malformed).await, (400, json!({"message": "Malformed JSON"})));
    assert_eq!(api.ctl.count(Kind::PhoneNumbers), 5);
}

#[tokio::test]
async fn address_round_trip_and_validation() {
    let api = start(5).await;
    let bad = json!({"contact_id": 1938277, "type": 6, "address": "愛一路35號", "city_id": 999});
    let (status, body) = call(api.fl(Method::POST, ADDRESSES).json(&bad)).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"],
        json!({"type": ["The selected type is invalid."], "city_id": ["The selected city id is invalid."]})
    );
    let new = json!({"contact_id": 1938277, "type": 1, "address": "基隆市仁愛區愛一路35號8樓之一",
                     "country_id": 1, "state_id": 2, "city_id": 1, "profile_id": 1, "id": 5});
    let (status, created) = call(api.fl(Method::POST, ADDRESSES).json(&new)).await;
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_i64().expect("id");
    assert_eq!(created["data"]["profile_id"], 1938247);
    assert_eq!(
        created["data"]["city"],
        json!({"id": 1, "state_id": 2, "name": "仁愛區", "zipcode": "200"})
    );
    assert_eq!(
        created["data"]["state"],
        json!({"id": 2, "country_id": 1, "name": "基隆市"})
    );
    assert!(created["data"].get("contact_id").is_none() && created["data"].get("enum_type").is_none());

    let (status, updated) = call(
        api.fl(Method::PUT, &format!("{ADDRESSES}/{id}"))
            .json(&json!({"address": "仁愛路一段"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"]["address"], "仁愛路一段");
    assert_eq!(updated["data"]["city_id"], 1);
    let listed = api.ctl.get(Kind::Addresses, id).expect("listed");
    assert_eq!(
        listed["enum_type"],
        json!({"key": "MAILING", "value": 1, "description": "mail address"})
    );
    assert_eq!(listed["contact_id"], 1938277);

    let (status, _) = call(
        api.fl(Method::PUT, &format!("{ADDRESSES}/{id}"))
            .json(&json!({"address": ""})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        call(api.fl(Method::DELETE, &format!("{ADDRESSES}/{id}"))).await.0,
        204
    );
    let (status, body) = call(api.fl(Method::GET, &format!("{ADDRESSES}/{id}"))).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["message"],
        format!("No query results for model [App\\Models\\Address] {id}")
    );
}

#[tokio::test]
async fn smart_number_round_trip() {
    let api = start(5).await;
    let new = json!({"phone_b": "79993332210", "user_id": 15, "description": "quas"});
    let (status, body) = call(api.pl(Method::POST, SMARTS).json(&new)).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    assert_eq!(api.ctl.count(Kind::SmartNumbers), 6);
    let last = api.ctl.list(Kind::SmartNumbers).pop().expect("record");
    assert_eq!(last["phoneA"], refdata::user_phone(15).unwrap_or_default());
    assert_eq!(last["phoneB"], "79993332210");
    assert_eq!(last["description"], "quas");
    assert!(last["phoneX"]
        .as_str()
        .is_some_and(|x| x.len() == 11 && x.starts_with("7977")));
    let id = last["id"].as_i64().expect("id");

    let stranger = json!({"phone_b": "79993332210", "user_id": 77});
    assert_eq!(
        call(api.pl(Method::POST, SMARTS).json(&stranger)).await,
        (200, json!({"message": "User not found.", "code": 500}))
    );
    let short = json!({"phone_b": "123", "user_id": 15});
    assert_eq!(
        call(api.pl(Method::POST, SMARTS).json(&short)).await,
        (
            422,
            json!({"message": "The phone b format is invalid.", "code": 422})
        )
    );
    let no_user = json!({"phone_b": "995322250484"});
    assert_eq!(
        call(api.pl(Method::POST, SMARTS).json(&no_user)).await.1["message"],
        "The user id field is required."
    );
    assert_eq!(api.ctl.count(Kind::SmartNumbers), 6);

    let (status, body) = call(api.pl(Method::DELETE, &format!("{SMARTS}/abc"))).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"message": "The smart number id must be int", "code": 400})
        )
    );
    assert_eq!(
        call(api.pl(Method::DELETE, &format!("{SMARTS}/{id}"))).await,
        (200, json!({"success": true}))
    );
    let (status, body) = call(api.pl(Method::DELETE, &format!("{SMARTS}/{id}"))).await;
    assert_eq!(
        (status, body),
        (404, json!({"message": "Smart number not found", "code": 404}))
    );
    let resp = api
        .pl(Method::GET, &format!("{SMARTS}/{id}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn seed_is_deterministic() {
    let opts = |seed| SandboxOptions {
        seed,
        records: 30,
        ..SandboxOptions::default()
    };
    let a = start_with(opts(7)).await;
    let b = start_with(opts(7)).await;
    let c = start_with(opts(8)).await;
    for kind in Kind::ALL {
        let list = a.ctl.list(kind);
        assert_eq!(list.len(), 30);
        assert_eq!(list, b.ctl.list(kind), "{}", kind.name());
        assert_ne!(list, c.ctl.list(kind), "{}", kind.name());
        let ids: Vec<i64> = list.iter().filter_map(|r| r["id"].as_i64()).collect();
        assert!(ids[0] >= 1000 && ids.windows(2).all(|w| w[0] < w[1]));
    }
    let smarts = a.ctl.list(Kind::SmartNumbers);
    let years = |i: usize| smarts[i]["created_at"].as_str().map(|s| s[..4].to_string());
    assert_eq!(years(0).as_deref(), Some("2022"));
    assert!(years(29).is_some_and(|y| ("2022".."2025").contains(&y.as_str())));
}

fn is_send_sync<T: Send + Sync>() {}

#[tokio::test]
async fn control_api() {
    is_send_sync::<SandboxControl>();
    is_send_sync::<Sandbox>();
    let api = start(3).await;
    let ctl = &api.ctl;
    let id = ctl.insert(
        Kind::PhoneNumbers,
        json!({"contact_id": 100, "type": 2, "number": "0911222333"}),
    );
    assert_eq!(ctl.count(Kind::PhoneNumbers), 4);
    let got = ctl.get(Kind::PhoneNumbers, id).expect("inserted");
    assert_eq!(ctl.list(Kind::PhoneNumbers).last(), Some(&got));
    assert_eq!(got["profile_id"], 70);
    assert!(ctl.update(
        Kind::PhoneNumbers,
        id,
        json!({"contact_id": 200, "extension": "12"})
    ));
    let got = ctl.get(Kind::PhoneNumbers, id).expect("updated");
    assert_eq!(
        (&got["profile_id"], &got["extension"], &got["number"]),
        (&json!(170), &json!("12"), &json!("0911222333"))
    );
    assert_eq!(got["phone_contact"]["contact_id"], 200);
    assert!(!ctl.update(Kind::PhoneNumbers, 1, json!({})));
    assert!(ctl.delete(Kind::PhoneNumbers, id));
    assert!(!ctl.delete(Kind::PhoneNumbers, id));

    let sid = ctl.insert(
        Kind::SmartNumbers,
        json!({"user_id": 40, "phoneB": "37410324040"}),
    );
    let s = ctl.get(Kind::SmartNumbers, sid).expect("smart");
    assert_eq!(
        (&s["phoneA"], &s["phoneB"]),
        (&json!("79991230046"), &json!("37410324040"))
    );

    let ids = ctl.ids(Kind::PhoneNumbers);
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ctl.list_range(Kind::PhoneNumbers, 1, 5),
        ctl.list(Kind::PhoneNumbers)[1..]
    );
    assert_eq!(ctl.list_range(Kind::PhoneNumbers, 1, 5)[0]["id"], ids[1]);
    assert!(ctl.list_range(Kind::PhoneNumbers, 9, 5).is_empty());

    ctl.clear(Kind::Addresses);
    assert_eq!(ctl.count(Kind::Addresses), 0);
    let (_, body) = call(api.fl(Method::GET, &format!("{ADDRESSES}?x=1"))).await;
    assert_eq!(body["meta"]["total"], 0);
    let (_, _) = call(api.pl(Method::GET, SMARTS)).await;

    let log = ctl.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0],
        RequestRecord {
            method: "GET".into(),
            path: ADDRESSES.into(),
            query: "x=1".into(),
            status: 200
        }
    );
    assert_eq!(ctl.count_requests("get", Kind::SmartNumbers), 1);
    assert_eq!(ctl.count_requests("POST", Kind::SmartNumbers), 0);
    api.sandbox.shutdown().await;
}
