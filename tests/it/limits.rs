//! Per-upstream limits: a configured request rate keeps restsync under the upstream's own
//! rate limit (no 429s of its making), pulls and pushes together.

use crate::common::Env;
use restsync::sandbox::{Faults, Kind};

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_rate_causes_no_429s_from_a_rate_limited_upstream() {
    let env = Env::start(60).await;
    // Only Firstline traffic: the sandbox's rate limit counts both of its servers.
    env.write_config("", "[resources.smart_numbers]\nenabled = false\n");
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = text.replace(
        "[upstreams.plusofon]",
        "max_requests_per_sec = 40\nmax_in_flight = 4\n\n[upstreams.plusofon]",
    );
    std::fs::write(&env.config, text).expect("config");
    env.sync_ok().await;
    let values: Vec<String> = (0..30)
        .map(|i| format!("(1900001, 2, '0977{i:06}', 'rate {i}')"))
        .collect();
    env.exec(&format!(
        "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES {}",
        values.join(",")
    ));
    env.exec("UPDATE addresses SET description = 'rate' WHERE local_id <= 20");
    // The upstream allows 40 requests a second (with a burst of five).
    env.control.set_faults(Faults {
        rate_limit_per_sec: 40.0,
        ..Faults::default()
    });
    let before = env.control.requests().len();
    env.sync_ok().await;
    let requests = env.control.requests();
    let firstline: Vec<_> = requests[before..]
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/phone") || r.path.starts_with("/api/v1/address"))
        .collect();
    assert!(
        firstline.len() >= 56,
        "expected the walk and 50 pushes, saw {}",
        firstline.len()
    );
    let throttled = firstline.iter().filter(|r| r.status == 429).count();
    let trace: Vec<String> = requests[before..]
        .iter()
        .take(6)
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert_eq!(throttled, 0, "restsync exceeded its configured rate: {trace:?}");
    env.control.set_faults(Faults::default());
    assert_eq!(
        env.mirror_ids("phone_numbers"),
        env.upstream_ids(Kind::PhoneNumbers)
    );
    assert_eq!(env.mirror_ids("addresses"), env.upstream_ids(Kind::Addresses));
    assert_eq!(env.control.count(Kind::PhoneNumbers), 90);
    assert_eq!(env.count("SELECT count(*) FROM smart_numbers"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_configured_rate_the_same_upstream_answers_429_and_restsync_recovers() {
    // The control case: proves the test above would see 429s without the limit.
    let env = Env::start(60).await;
    env.sync_ok().await;
    env.exec("UPDATE addresses SET description = 'burst' WHERE local_id <= 15");
    // The same upstream limit as above; nothing spaces restsync's requests this time.
    env.control.set_faults(Faults {
        rate_limit_per_sec: 40.0,
        ..Faults::default()
    });
    let before = env.control.requests().len();
    let run = env.sync_once().await;
    assert!(run.code == 0 || run.code == 75, "{}", run.stderr);
    let throttled = env.control.requests()[before..]
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(throttled > 0, "the sandbox's rate limit never triggered");
    env.control.set_faults(Faults::default());
    env.sync_ok().await;
    env.assert_converged();
}
