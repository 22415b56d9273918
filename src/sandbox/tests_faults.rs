//! Tests of the sandbox fault injection: every scripted action, random faults, parsing.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::tests::{call, start};
use super::*;

const PHONES: &str = "/api/v1/phone-number";
const ADDRESSES: &str = "/api/v1/address";
const SMARTS: &str = "/api/v1/smart-numbers";

fn scripted(method: &str, kind: Kind, action: FaultAction) -> ScriptedFault {
    ScriptedFault {
        method: Some(method.to_string()),
        kind: Some(kind),
        page: None,
        action,
        times: 1,
    }
}

fn new_phone() -> Value {
    json!({"contact_id": 1935038, "type": 2, "number": "0912345678"})
}

#[tokio::test]
async fn scripted_status_commits_nothing() {
    let api = start(5).await;
    let body = r#"{"message":"down for maintenance"}"#.to_string();
    api.ctl.push_scripted(scripted(
        "POST",
        Kind::PhoneNumbers,
        FaultAction::Status(503, body),
    ));
    let (status, answer) = call(api.fl(Method::POST, PHONES).json(&new_phone())).await;
    assert_eq!(
        (status, answer),
        (503, json!({"message": "down for maintenance"}))
    );
    assert_eq!(api.ctl.count(Kind::PhoneNumbers), 5);
    assert_eq!(call(api.fl(Method::POST, PHONES).json(&new_phone())).await.0, 201);
    assert_eq!(api.ctl.count(Kind::PhoneNumbers), 6);
}

#[tokio::test]
async fn scripted_html_and_retry_after() {
    let api = start(5).await;
    api.ctl
        .push_scripted(scripted("GET", Kind::SmartNumbers, FaultAction::Html(502)));
    api.ctl
        .push_scripted(scripted("GET", Kind::SmartNumbers, FaultAction::RetryAfter(7)));
    let resp = api.pl(Method::GET, SMARTS).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    let text = resp.text().await.expect("body");
    assert!(text.contains("<title>502 Bad Gateway</title>") && text.contains("nginx"));
    let resp = api.pl(Method::GET, SMARTS).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(call(api.pl(Method::GET, SMARTS)).await.0, 200);
}

#[tokio::test]
async fn scripted_truncated_hits_only_its_page() {
    let api = start(40).await;
    let mut fault = scripted("GET", Kind::Addresses, FaultAction::Truncated);
    fault.page = Some(2);
    api.ctl.push_scripted(fault);
    assert_eq!(call(api.fl(Method::GET, ADDRESSES)).await.0, 200);
    let full = api
        .fl(Method::GET, &format!("{ADDRESSES}?page=3"))
        .send()
        .await
        .expect("answer");
    let full_len = full.bytes().await.expect("body").len();
    let resp = api
        .fl(Method::GET, &format!("{ADDRESSES}?page=2"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let cut = resp.bytes().await.expect("body");
    assert!(serde_json::from_slice::<Value>(&cut).is_err());
    assert!(cut.len() < full_len * 3 / 4 && cut.len() > full_len / 4);
    assert_eq!(
        call(api.fl(Method::GET, &format!("{ADDRESSES}?page=2"))).await.0,
        200
    );
}

#[tokio::test]
async fn scripted_delay_and_times() {
    let api = start(5).await;
    api.ctl
        .push_scripted(scripted("GET", Kind::PhoneNumbers, FaultAction::Delay(150)));
    let t = Instant::now();
    assert_eq!(call(api.fl(Method::GET, PHONES)).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let mut fault = scripted("GET", Kind::PhoneNumbers, FaultAction::Status(503, "{}".into()));
    fault.times = 2;
    api.ctl.push_scripted(fault);
    // Other kinds and methods do not consume it.
    assert_eq!(call(api.pl(Method::GET, SMARTS)).await.0, 200);
    assert_eq!(call(api.fl(Method::POST, PHONES).json(&new_phone())).await.0, 201);
    let statuses = [
        call(api.fl(Method::GET, PHONES)).await.0,
        call(api.fl(Method::GET, PHONES)).await.0,
        call(api.fl(Method::GET, PHONES)).await.0,
    ];
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn drop_after_commit_loses_the_answer_only() {
    let api = start(5).await;
    api.ctl
        .push_scripted(scripted("POST", Kind::SmartNumbers, FaultAction::DropAfterCommit));
    let new = json!({"phone_b": "79993332210", "user_id": 12, "description": "Склад"});
    let sent = api.pl(Method::POST, SMARTS).json(&new).send().await;
    assert!(sent.is_err(), "client must not get an answer: {sent:?}");
    assert_eq!(api.ctl.count(Kind::SmartNumbers), 6);
    assert_eq!(api.ctl.requests().last().map(|r| r.status), Some(0));
    // The server keeps serving afterwards.
    assert_eq!(call(api.pl(Method::GET, SMARTS)).await.1["total"], 6);
}

#[tokio::test]
async fn shift_pages_moves_later_pages() {
    let api = start(40).await;
    let before = api.ctl.list(Kind::Addresses);
    let mut fault = scripted(
        "GET",
        Kind::Addresses,
        FaultAction::ShiftPages {
            delete_earlier: 2,
            insert_before: 3,
        },
    );
    fault.page = Some(2);
    api.ctl.push_scripted(fault);
    let (_, body) = call(api.fl(Method::GET, &format!("{ADDRESSES}?per_page=10&page=2"))).await;
    // New listing: 3 new records, then the old one minus its first 2, so page 2 starts at old[9].
    assert_eq!(body["data"][0], before[9]);
    assert_eq!(body["meta"]["total"], 41);
    let after = api.ctl.list(Kind::Addresses);
    let max_old = before.iter().filter_map(|r| r["id"].as_i64()).max();
    assert!(after[..3].iter().all(|r| r["id"].as_i64() > max_old));
    assert_eq!(after[3..], before[2..]);

    // Smart numbers always page by 15; a filter makes the new records match it.
    let mut fault = scripted(
        "GET",
        Kind::SmartNumbers,
        FaultAction::ShiftPages {
            delete_earlier: 0,
            insert_before: 2,
        },
    );
    fault.page = Some(2);
    api.ctl.push_scripted(fault);
    let (_, body) = call(api.pl(Method::GET, &format!("{SMARTS}?page=2&user_id=41"))).await;
    assert!(body["total"].as_u64().is_some_and(|t| t >= 2));
    let first = api.ctl.list(Kind::SmartNumbers);
    assert_eq!(
        (&first[0]["user_id"], &first[1]["user_id"]),
        (&json!(41), &json!(41))
    );
}

#[tokio::test]
async fn random_faults_are_seeded() {
    let api = start(5).await;
    let faults = Faults {
        seed: 3,
        error_rate: 0.5,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        api.ctl.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..16 {
            statuses.push(call(api.fl(Method::GET, PHONES)).await.0);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500) && runs[0].contains(&200));

    api.ctl.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let (status, body) = call(api.fl(Method::POST, PHONES).json(&new_phone())).await;
    assert_eq!((status, body), (500, json!({"message": "Server Error"})));
    assert_eq!(api.ctl.count(Kind::PhoneNumbers), 5);

    api.ctl.set_faults(Faults {
        rate_limit_rate: 1.0,
        retry_after_secs: 2,
        latency_ms: 60,
        ..Faults::default()
    });
    let t = Instant::now();
    let resp = api.pl(Method::GET, SMARTS).send().await.expect("answer");
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");

    api.ctl.set_faults(Faults {
        html_rate: 1.0,
        ..Faults::default()
    });
    assert_eq!(
        api.fl(Method::GET, PHONES)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(502)
    );

    api.ctl.set_faults(Faults {
        truncated_rate: 1.0,
        drop_after_commit_rate: 1.0,
        ..Faults::default()
    });
    let page = api
        .fl(Method::GET, PHONES)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    assert!(serde_json::from_slice::<Value>(&page).is_err());
    assert!(api
        .fl(Method::POST, PHONES)
        .json(&new_phone())
        .send()
        .await
        .is_err());
    assert_eq!(api.ctl.count(Kind::PhoneNumbers), 6);
}

#[tokio::test]
async fn empty_outage_lists_nothing() {
    let api = start(20).await;
    api.ctl.set_faults(Faults {
        empty_outage: true,
        ..Faults::default()
    });
    let (status, body) = call(api.fl(Method::GET, &format!("{PHONES}?page=2"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(
        (&body["meta"]["total"], &body["meta"]["last_page"]),
        (&json!(0), &json!(1))
    );
    let (_, body) = call(api.pl(Method::GET, SMARTS)).await;
    assert_eq!((&body["total"], &body["data"]), (&json!(0), &json!([])));
    let id = api.ctl.list(Kind::PhoneNumbers)[0]["id"].as_i64().expect("id");
    assert_eq!(call(api.fl(Method::GET, &format!("{PHONES}/{id}"))).await.0, 200);
}

#[test]
fn parse_faults_spec() {
    let f = parse_faults(
        "error_rate=0.25,rate_limit_rate=0.15,retry_after_secs=1,latency_ms=20,\
         drop_after_commit_rate=0.1,html_rate=0.05,truncated_rate=0.05,empty_outage=true,seed=7",
    )
    .expect("valid spec");
    assert_eq!(
        (f.error_rate, f.rate_limit_rate, f.retry_after_secs),
        (0.25, 0.15, 1)
    );
    assert_eq!(
        (f.latency_ms, f.drop_after_commit_rate, f.html_rate),
        (20, 0.1, 0.05)
    );
    assert_eq!((f.truncated_rate, f.empty_outage, f.seed), (0.05, true, 7));
    assert_eq!(parse_faults("").map(|f| f.error_rate), Ok(0.0));

    let err = |spec: &str| parse_faults(spec).err().unwrap_or_default();
    assert!(err("error_rate=0.1,bogus=1").contains("bogus"));
    assert!(err("latency_ms=fast").contains("latency_ms"));
    assert!(err("html_rate=1.5").contains("html_rate"));
    assert!(err("empty_outage=maybe").contains("empty_outage"));
    assert!(err("seed").contains("seed"));
}

#[tokio::test]
async fn shutdown_stops_both_servers() {
    let api = start(1).await;
    let urls = [api.sandbox.firstline_url(), api.sandbox.plusofon_url()];
    api.sandbox.shutdown().await;
    for url in urls {
        assert!(reqwest::get(url).await.is_err());
    }
}
