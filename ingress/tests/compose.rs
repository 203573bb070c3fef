//! `compose/` checked without a Docker engine: the compose file's structure (services, health
//! checks, limits, the Kafka, Redis and MongoDB settings the deployment promises), every
//! `LEDGERLINE_*` variable it sets loaded through the service's own settings loader, the
//! Prometheus scrape targets, the Grafana dashboard's metrics against the ones the crates emit,
//! and the Dockerfile's stages.

use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::settings::{env_vars, load_from, Validate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The Ledgerline services compose runs, with the binary each runs.
const LEDGERLINE_SERVICES: [(&str, &str); 5] = [
    ("ingress", "ingress"),
    ("processor", "processor"),
    ("ledger-writer", "ledger-writer"),
    ("audit", "audit"),
    ("reconciler", "reconciler"),
];
const BROKERS: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file as JSON, with `<<` merge keys applied (compose applies them too).
fn yaml(path: &str) -> Value {
    let mut value: serde_norway::Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().unwrap();
    serde_json::to_value(value).unwrap()
}

/// `compose/env.example` as a map: what a filled-in `compose/.env` provides.
fn env_example() -> BTreeMap<String, String> {
    read("compose/env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// Compose's `${NAME}`, `${NAME:?message}`, `${NAME:-default}` and `$$` substitution.
fn substitute(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').expect("closed ${…}");
            let expression = &after[..end];
            let name = expression.split([':', '-', '?']).next().unwrap_or_default();
            let value = match env.get(name) {
                Some(value) => value.clone(),
                None => match expression.split_once(":-") {
                    Some((_, default)) => default.to_string(),
                    None => panic!("${{{name}}} is not in compose/env.example"),
                },
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            panic!("bare $ in compose file: {rest:.20}");
        }
    }
    out.push_str(rest);
    out
}

struct Compose {
    doc: Value,
}

impl Compose {
    fn load() -> Compose {
        Compose {
            doc: yaml("compose/docker-compose.yml"),
        }
    }

    fn services(&self) -> &serde_json::Map<String, Value> {
        self.doc["services"].as_object().expect("services")
    }

    fn service(&self, name: &str) -> &Value {
        self.services()
            .get(name)
            .unwrap_or_else(|| panic!("compose has no service {name}"))
    }

    /// A service's environment after substitution from `compose/env.example`.
    fn environment(&self, name: &str) -> BTreeMap<String, String> {
        let env = env_example();
        self.service(name)["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), substitute(&v, &env))
            })
            .collect()
    }

    fn command(&self, name: &str) -> Vec<String> {
        self.service(name)["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no command list"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

// figment's test jail returns its own (large) error type; boxing it is not ours to change.
#[allow(clippy::result_large_err)]
/// Loads `T` through the runtime's loader from exactly `environment` (the process environment
/// is cleared inside the jail), after checking that every variable is one of `T`'s settings:
/// the loader itself ignores variables whose first key is not a section of `T`.
fn load_service<T>(service: &str, environment: &BTreeMap<String, String>) -> T
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let known: BTreeSet<String> = env_vars::<T>().into_iter().map(|(v, _)| v).collect();
    for variable in environment.keys().filter(|k| k.starts_with("LEDGERLINE_")) {
        assert!(
            known.contains(variable),
            "{service}: {variable} is not a setting of the service"
        );
    }
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (k, v) in environment {
            jail.set_env(k, v);
        }
        let env = figment::providers::Env::prefixed("LEDGERLINE_").split("__");
        match load_from::<T>(None, env) {
            Ok(settings) => loaded = Some(settings),
            Err(e) => panic!("{service}: its compose environment does not load: {e}"),
        }
        Ok(())
    });
    loaded.unwrap()
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

#[test]
fn every_service_has_a_health_check_and_resource_limits() {
    let compose = Compose::load();
    let expected = [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "kafka-init",
        "redis",
        "postgres",
        "mongo",
        "mongo-init",
        "ingress",
        "processor",
        "ledger-writer",
        "audit",
        "reconciler",
        "prometheus",
        "grafana",
    ];
    let names: BTreeSet<&str> = compose.services().keys().map(String::as_str).collect();
    assert_eq!(names, expected.into_iter().collect());
    for (name, service) in compose.services() {
        let limits = &service["deploy"]["resources"]["limits"];
        assert!(
            limits["cpus"].is_string() && limits["memory"].is_string(),
            "{name} has no cpu and memory limits"
        );
        let one_shot = service["restart"] == "no";
        if one_shot {
            continue;
        }
        assert_eq!(service["restart"], "unless-stopped", "{name}");
        let test = service["healthcheck"]["test"].as_array();
        assert!(
            test.is_some_and(|t| t.len() >= 2),
            "{name} has no health check"
        );
    }
}

#[test]
fn kafka_is_three_kraft_brokers_with_replication_three_and_two_in_sync_replicas() {
    let compose = Compose::load();
    let mut node_ids = BTreeSet::new();
    for broker in BROKERS {
        let env = compose.environment(broker);
        assert!(compose.service(broker)["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:"));
        assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller", "{broker}");
        assert_eq!(
            env["KAFKA_CONTROLLER_QUORUM_VOTERS"],
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        );
        assert_eq!(env["KAFKA_DEFAULT_REPLICATION_FACTOR"], "3");
        assert_eq!(env["KAFKA_MIN_INSYNC_REPLICAS"], "2");
        assert_eq!(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], "3");
        assert_eq!(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false");
        assert_eq!(
            env["KAFKA_ADVERTISED_LISTENERS"],
            format!("PLAINTEXT://{broker}:9092")
        );
        node_ids.insert(env["KAFKA_NODE_ID"].clone());
        // A KRaft cluster id is 16 bytes, base64url without padding.
        assert_eq!(env["CLUSTER_ID"].len(), 22);
    }
    assert_eq!(node_ids.len(), 3, "three distinct node ids");

    // The init job creates every pipeline topic and dead-letter topic with the partition count
    // the services are told, replication 3 and min.insync.replicas 2.
    let init = compose.command("kafka-init").join("\n");
    let partitions = compose.environment("processor")["LEDGERLINE_KAFKA__PARTITIONS"].clone();
    for topic in KafkaSettings::default().pipeline_topics() {
        assert!(
            init.contains(&format!(" {topic}")),
            "kafka-init misses {topic}"
        );
    }
    assert!(init.contains(&format!("--partitions {partitions}")));
    assert!(init.contains("--replication-factor 3"));
    assert!(init.contains("--config min.insync.replicas=2"));
    assert!(init.contains("--if-not-exists"));
    for broker in BROKERS {
        assert_eq!(
            compose.service("kafka-init")["depends_on"][broker]["condition"],
            "service_healthy"
        );
    }
    for (service, _) in LEDGERLINE_SERVICES {
        let env = compose.environment(service);
        assert_eq!(
            env["LEDGERLINE_KAFKA__BROKERS"],
            "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        );
        assert_eq!(env["LEDGERLINE_KAFKA__REPLICATION_FACTOR"], "3");
        assert_eq!(
            compose.service(service)["depends_on"]["kafka-init"]["condition"],
            "service_completed_successfully",
            "{service} starts only after the topics exist"
        );
    }
}

#[test]
fn redis_keeps_an_append_only_file_and_mongodb_is_an_initiated_replica_set() {
    let compose = Compose::load();
    let redis = compose.command("redis").join(" ");
    assert!(redis.contains("--appendonly yes"), "{redis}");
    assert!(compose.service("redis")["volumes"][0]
        .as_str()
        .unwrap()
        .ends_with(":/data"));
    let mongo = compose.command("mongo").join(" ");
    assert!(mongo.contains("--replSet rs0"), "{mongo}");
    let init = compose.command("mongo-init").join(" ");
    assert!(init.contains(r#"rs.initiate({ _id: "rs0""#), "{init}");
    assert!(init.contains("isWritablePrimary"), "{init}");
    for service in ["ingress", "audit", "reconciler"] {
        let uri = &compose.environment(service)["LEDGERLINE_MONGO__URI"];
        assert!(uri.contains("replicaSet=rs0"), "{service}: {uri}");
        assert_eq!(
            compose.service(service)["depends_on"]["mongo-init"]["condition"],
            "service_completed_successfully"
        );
    }
}

#[test]
fn every_ledgerline_variable_in_compose_is_a_real_setting_and_loads() {
    let compose = Compose::load();
    let ingress: ingress::Settings = load_service("ingress", &compose.environment("ingress"));
    assert_eq!(ingress.kafka.replication_factor, 3);
    assert!(!ingress.kafka.create_topics);
    assert_eq!(ingress.merchants.len(), 1, "env.example's merchant parses");
    let processor: processor::Settings =
        load_service("processor", &compose.environment("processor"));
    let writer: ledger_writer::Settings =
        load_service("ledger-writer", &compose.environment("ledger-writer"));
    assert!(
        writer.postgres.migrate,
        "the ledger-writer applies the migrations"
    );
    let audit: audit::Settings = load_service("audit", &compose.environment("audit"));
    let reconciler: reconciler::Settings =
        load_service("reconciler", &compose.environment("reconciler"));

    // Each health check probes the port the service listens on, and each binds 0.0.0.0. The
    // container's stop timeout outlasts the service's own shutdown deadline, so a service still
    // draining leaves by itself, with a log line, before the SIGKILL.
    let loaded = [
        ("ingress", ingress.listen_addr, ingress.shutdown_deadline_ms),
        (
            "processor",
            processor.admin_addr,
            processor.shutdown_deadline_ms,
        ),
        (
            "ledger-writer",
            writer.admin_addr,
            writer.shutdown_deadline_ms,
        ),
        ("audit", audit.admin_addr, audit.shutdown_deadline_ms),
        (
            "reconciler",
            reconciler.admin_addr,
            reconciler.shutdown_deadline_ms,
        ),
    ];
    for (service, addr, deadline_ms) in loaded {
        assert!(addr.ip().is_unspecified(), "{service} must bind 0.0.0.0");
        let test = compose.service(service)["healthcheck"]["test"].to_string();
        assert!(
            test.contains(&format!("http://127.0.0.1:{}/readyz", addr.port())),
            "{service}: {test}"
        );
        let stop = compose.service(service)["stop_grace_period"]
            .as_str()
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{service}: stop_grace_period in whole seconds"));
        assert!(
            stop * 1_000 > deadline_ms,
            "{service}: stop_grace_period {stop} s within its shutdown deadline ({deadline_ms} ms)"
        );
    }
    for (service, binary) in LEDGERLINE_SERVICES {
        assert_eq!(compose.command(service)[0], binary);
    }
    assert_eq!(compose.command("reconciler"), ["reconciler", "daemon"]);
}

#[test]
fn every_variable_compose_substitutes_is_in_env_example() {
    // `substitute` panics on a name env.example lacks; run it over the whole file.
    let text = read("compose/docker-compose.yml");
    let substituted = substitute(&text, &env_example());
    assert!(!substituted.contains("${"));
}

#[test]
fn prometheus_scrapes_every_ledgerline_service_on_its_metrics_port() {
    let compose = Compose::load();
    let prometheus = yaml("compose/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|job| assert_eq!(job["metrics_path"], "/metrics"))
        .flat_map(|job| job["static_configs"].as_array().unwrap().clone())
        .flat_map(|c| c["targets"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = LEDGERLINE_SERVICES
        .iter()
        .map(|(service, _)| {
            let env = compose.environment(service);
            let addr = env
                .get("LEDGERLINE_LISTEN_ADDR")
                .or_else(|| env.get("LEDGERLINE_ADMIN_ADDR"))
                .unwrap();
            format!("{service}:{}", port_of(addr))
        })
        .collect();
    assert_eq!(targets, expected);
    // Compose mounts this file where the command points Prometheus.
    let volumes = compose.service("prometheus")["volumes"].to_string();
    assert!(volumes.contains("./prometheus.yml:/etc/prometheus/prometheus.yml"));
}

/// Every metric name the workspace's crates emit: the `"ledgerline_…"` literals in their
/// sources, and the consumer-lag gauges the runtime names after each stage.
fn emitted_metrics() -> BTreeSet<String> {
    fn sources(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut texts = Vec::new();
    for krate in [
        "ingress",
        "processor",
        "ledger-writer",
        "audit",
        "reconciler",
        "lib/runtime",
    ] {
        sources(&repository().join(krate).join("src"), &mut texts);
    }
    let mut names = BTreeSet::new();
    for text in &texts {
        for piece in text.split("\"ledgerline_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if piece[name.len()..].starts_with('"') {
                names.insert(format!("ledgerline_{name}"));
            }
        }
        for call in text.split("spawn_lag_reporter(").skip(1) {
            if let Some(service) = call.split('"').nth(1) {
                names.insert(format!("ledgerline_{service}_consumer_lag_messages"));
                names.insert(format!(
                    "ledgerline_{service}_consumer_lag_refreshed_timestamp_seconds"
                ));
            }
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_emitted_by_some_crate() {
    let emitted = emitted_metrics();
    let dashboard: Value =
        serde_json::from_str(&read("compose/grafana/dashboards/ledgerline.json")).unwrap();
    let datasource = yaml("compose/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for piece in expr.split("ledgerline_").skip(1) {
                let rest: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                queried.insert(format!("ledgerline_{rest}"));
            }
        }
    }
    for name in &queried {
        if let Some(base) = name.strip_suffix("_bucket") {
            assert!(emitted.contains(base), "{name}: {base} is not emitted");
            // Only these suffixes get buckets (lib/runtime telemetry); others are summaries.
            assert!(
                base.ends_with("_seconds") || base.ends_with("_size"),
                "{base} has no buckets to query"
            );
        } else {
            assert!(
                emitted.contains(name),
                "the dashboard queries {name}, which no crate emits"
            );
        }
    }
    // What the dashboard is for: ingress rate and latency, decisions, postings, audit rate,
    // lag per stage, reconciliation status.
    for required in [
        "ledgerline_ingress_requests_total",
        "ledgerline_ingress_request_duration_seconds_bucket",
        "ledgerline_processor_decisions_total",
        "ledgerline_ledger_writer_transactions_total",
        "ledgerline_audit_documents_total",
        "ledgerline_processor_consumer_lag_messages",
        "ledgerline_ledger_writer_consumer_lag_messages",
        "ledgerline_audit_consumer_lag_messages",
        "ledgerline_reconciler_runs_total",
        "ledgerline_reconciler_discrepancies",
    ] {
        assert!(queried.contains(required), "the dashboard lacks {required}");
    }
    // Grafana finds the dashboard where the provisioning points and compose mounts it.
    let provider = yaml("compose/grafana/provisioning/dashboards/ledgerline.yml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let volumes = Compose::load().service("grafana")["volumes"].to_string();
    assert!(volumes.contains(&format!("./grafana/dashboards:{path}")));
}

#[test]
fn the_dockerfile_builds_every_service_binary_and_runs_it_as_a_non_root_user() {
    let dockerfile = read("compose/Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[1].contains("-slim"), "a small runtime image");
    let build = dockerfile.split("FROM ").nth(1).unwrap();
    let runtime = dockerfile.split("FROM ").nth(2).unwrap();
    assert!(build.contains("--locked"));
    for (_, binary) in LEDGERLINE_SERVICES {
        assert!(
            build.contains(&format!("-p {binary}")),
            "{binary} is not built"
        );
    }
    let user = runtime
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("the runtime stage sets a user");
    let uid = user["USER ".len()..].split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "{user}");
    assert!(runtime.contains("curl"), "the health checks call curl");
    assert!(!runtime.contains("cargo"), "no toolchain at runtime");
    let compose = Compose::load();
    for (service, _) in LEDGERLINE_SERVICES {
        assert_eq!(
            compose.service(service)["build"]["dockerfile"],
            "compose/Dockerfile"
        );
        assert_eq!(compose.service(service)["build"]["context"], "..");
    }
}
