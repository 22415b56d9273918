//! Logs: one summary line per resource per cycle, JSON when asked, push failures with
//! resource, row, operation and upstream's message, and never a token.

use crate::common::Env;

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_a_summary_per_resource_and_push_failures_without_secrets() {
    let env = Env::start(30).await;
    let run = env.restsync(&["--log-format", "json", "sync", "--once"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let summaries: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "cycle finished")
        .collect();
    let mut resources: Vec<&str> = summaries.iter().filter_map(|l| l["resource"].as_str()).collect();
    resources.sort();
    assert_eq!(resources, ["addresses", "phone_numbers", "smart_numbers"]);
    for s in &summaries {
        assert_eq!(s["records"], 30, "{s}");
        assert!(s["seconds"].is_f64() || s["seconds"].is_u64(), "a number: {s}");
    }

    // Text logs name each field once (the resource is not repeated by a span prefix).
    let text = env.restsync(&["--log-format", "text", "sync", "--once"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stderr.contains("cycle finished"), "{}", text.stderr);
    for line in text.stderr.lines() {
        assert!(
            line.matches("resource=").count() <= 1,
            "a field printed twice: {line}"
        );
    }

    // A rejected push names the resource, row, operation and upstream's message.
    env.exec("INSERT INTO phone_numbers (contact_id, type, number) VALUES (1900000, 2, 'not a number!')");
    let run = env
        .restsync_env(&["sync", "--once"], &[("RESTSYNC_LOG_FORMAT", "json")])
        .await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let failure = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "push rejected by upstream")
        .unwrap_or_else(|| panic!("no push failure line:\n{}", run.stderr));
    assert_eq!(failure["resource"], "phone_numbers");
    assert_eq!(failure["op"], "create");
    assert!(failure["local_id"].is_number(), "{failure}");
    assert!(
        failure["error"].as_str().is_some_and(|e| e.contains("number")),
        "{failure}"
    );
    for secret in [&env.opts.firstline_token, &env.opts.plusofon_token] {
        assert!(
            !run.stderr.contains(secret.as_str()),
            "a token leaked into the log"
        );
    }
}
