//! Foundation integration tests against the real local stack: topics through the
//! Kafka admin API, schema on the ClickHouse endpoint, the CLI's exit codes.

mod common;

use std::time::Duration;

use ridectl::kafka::topics::{self, Action};

#[tokio::test]
async fn topics_are_created_idempotently_and_drift_is_repaired() {
    let l = common::isolated("topics");
    common::provision(&l).await;
    let cfg = &l.config;
    let admin = ridectl::kafka::admin(&cfg.kafka).unwrap();
    let timeout = Duration::from_secs(20);
    let wanted = cfg.topics.resolved();
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();

    // Read back through the admin API: partitions and configs as configured.
    let (actual, brokers) = topics::describe(&admin, &names, timeout).await.unwrap();
    let rides = &actual[&cfg.topics.ride_events.name];
    assert_eq!(rides.partitions, 12);
    assert_eq!(
        rides.configs.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
    assert_eq!(
        rides.configs.get("compression.type").map(String::as_str),
        Some("lz4")
    );
    let locs = &actual[&cfg.topics.driver_locations.name];
    assert_eq!(locs.partitions, 24);
    assert_eq!(
        locs.configs.get("cleanup.policy").map(String::as_str),
        Some("compact,delete")
    );

    // Second run: nothing to do.
    let plan = topics::plan(&wanted, &actual, brokers).unwrap();
    assert!(plan.iter().all(Action::is_noop), "{plan:?}");

    // Drift: someone changed retention and the config wants more partitions.
    let mut drifted = wanted.clone();
    drifted[0]
        .config
        .insert("retention.ms".into(), "1000".into());
    let plan = topics::plan(&drifted, &actual, brokers).unwrap();
    topics::apply(&admin, &plan, timeout).await.unwrap();
    let mut wanted2 = wanted.clone();
    wanted2[0].partitions = 16;
    let (actual, _) = topics::describe(&admin, &names, timeout).await.unwrap();
    assert_eq!(
        actual[&cfg.topics.ride_events.name].configs["retention.ms"],
        "1000"
    );
    let plan = topics::plan(&wanted2, &actual, brokers).unwrap();
    assert!(
        matches!(&plan[0], Action::Update { add_partitions: Some((12, 16)), config_changes, .. } if config_changes.len() == 1)
    );
    topics::apply(&admin, &plan, timeout).await.unwrap();
    let (actual, _) = topics::describe(&admin, &names, timeout).await.unwrap();
    let rides = &actual[&cfg.topics.ride_events.name];
    assert_eq!(rides.partitions, 16);
    assert_eq!(rides.configs["retention.ms"], "604800000");
    assert_eq!(
        rides.configs["compression.type"], "lz4",
        "other configs are kept"
    );

    // Fewer partitions are refused.
    let e = topics::plan(&wanted, &actual, brokers)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has 16 partitions, pipeline.yaml asks for 12"),
        "{e}"
    );
    for n in &names {
        topics::delete(&admin, n, timeout).await.unwrap();
    }
}

#[tokio::test]
async fn cli_topics_create_twice_and_describe_json() {
    let l = common::isolated("cli-topics");
    let dir = std::env::temp_dir().join(common::unique("ridectl-cli"));
    let config = common::write_config(&l, &dir);
    let run = |args: &[&str]| {
        common::ridectl_cmd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(&["topics", "create"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let second = run(&["topics", "create"]);
    assert_eq!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to do"));
    let out = run(&[
        "topics",
        "describe",
        &l.config.topics.ride_events.name,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["partitions"], 12);
    assert_eq!(json["configs"]["retention.ms"], "604800000");
    assert_eq!(json["configs"]["compression.type"], "lz4");
    let out = run(&[
        "topics",
        "describe",
        &l.config.topics.driver_locations.name,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["partitions"], 24);
    assert_eq!(json["configs"]["cleanup.policy"], "compact,delete");
    // Deleting needs --yes (usage error, exit 2).
    assert_eq!(
        run(&["topics", "delete", &l.config.topics.aggregated.name])
            .status
            .code(),
        Some(2)
    );
    for t in l.config.topics.resolved() {
        assert!(
            run(&["topics", "delete", &t.name, "--yes"])
                .status
                .success()
        );
    }
}

#[test]
fn config_errors_exit_78_listing_every_problem_without_connecting() {
    let dir = std::env::temp_dir().join(common::unique("ridectl-badcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        "kafka:\n  bootstrap_servers: 10.255.255.1:9092\n  colour: blue\ntopics:\n  ride_events:\n    name: ride-events\n    partitions: twelve\nclickhouse:\n  password: ${RIDECTL_TEST_UNSET_VAR}\n",
    )
    .unwrap();
    let start = std::time::Instant::now();
    // `topics create` would connect; a config error must stop it first.
    let out = common::ridectl_cmd()
        .args(["--config"])
        .arg(&file)
        .args(["topics", "create"])
        .env_remove("RIDECTL_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(start.elapsed() < Duration::from_secs(5), "no network wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline.yaml:3:3: kafka.colour: unknown field"),
        "{err}"
    );
    assert!(
        err.contains("pipeline.yaml:7:17: topics.ride_events.partitions: invalid type"),
        "{err}"
    );
    assert!(err.contains("pipeline.yaml:9:13: clickhouse.password: environment variable RIDECTL_TEST_UNSET_VAR is not set"), "{err}");
}
