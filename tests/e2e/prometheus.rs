//! A real Prometheus (Debian's `prometheus`) scrapes kinkod's metrics over mTLS with a
//! certificate of the `auditor` role and evaluates the shipped alert rules
//! (`docs/alerts/kinko.rules.yml`) against the live kinkod: the target is up, a certificate
//! without a metrics role is refused, and freezing signing fires `KinkoFrozen`.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kinko_policy::{Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;

use kinko_tests::{channel, free_port, governance, start, unique_label};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on Prometheus's HTTP API; the JSON body.
fn api(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Polls `check` against the API until it holds (or panics after `secs`, with the last answer).
fn wait_for(
    port: u16,
    path: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < until {
        if let Some(v) = api(port, path) {
            if check(&v) {
                return v;
            }
            last = Some(v);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {secs} s; last answer {last:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_over_mtls_and_the_shipped_rules_fire_on_a_live_kinkod() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let label = unique_label("prom");
    let port = free_port();
    let metrics_port = free_port();
    drop(start(&dir, &label, port, true));
    let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
    config.push_str(&format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    let d = start(&dir, &label, port, false);

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alerts/kinko.rules.yml");
    let tls = |who: &str| {
        format!(
            "    scheme: https\n    tls_config:\n      ca_file: {dir}/tls/ca.pem\n      cert_file: {dir}/tls/{who}.pem\n      key_file: {dir}/tls/{who}.key\n      server_name: localhost\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            dir = dir.display()
        )
    };
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: kinkod\n{auditor}  - job_name: kinkod-as-requester\n{ledger}",
        rules = rules.display(),
        auditor = tls("auditor"),
        ledger = tls("ledger"),
    );
    let prom_dir = data.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(prom_dir.join("prometheus.yml"), prom_config).unwrap();
    let web = free_port();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is missing: apt-get install prometheus (scripts/test-all.sh does)"),
    );

    // The auditor's certificate scrapes; the requester's is refused (no metrics role).
    let targets = wait_for(web, "/api/v1/targets", 60, "both targets scraped", |v| {
        let t = v["data"]["activeTargets"].as_array();
        t.is_some_and(|t| {
            t.len() == 2
                && t.iter()
                    .all(|t| t["health"] == "up" || t["health"] == "down")
        })
    });
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        match t["labels"]["job"].as_str().unwrap() {
            "kinkod" => assert_eq!(t["health"], "up", "{t:#}"),
            _ => {
                assert_eq!(t["health"], "down", "{t:#}");
                assert!(t["lastError"].as_str().unwrap().contains("403"), "{t:#}");
            }
        }
    }
    let frozen = wait_for(
        web,
        "/api/v1/query?query=kinko_frozen%7Bjob%3D%22kinkod%22%7D",
        30,
        "kinko_frozen scraped",
        |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
    );
    assert_eq!(frozen["data"]["result"][0]["value"][1], "0", "{frozen:#}");
    // The rules loaded, and none fires on a healthy kinkod.
    let rules_loaded = wait_for(web, "/api/v1/rules", 30, "rules loaded", |v| {
        v["data"]["groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    });
    let names: Vec<String> = rules_loaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert!(names.iter().any(|n| n == "KinkoFrozen"), "{names:?}");
    let alerts = api(web, "/api/v1/alerts").unwrap();
    assert!(!alerts.to_string().contains("KinkoFrozen"), "{alerts:#}");

    // An officer freezes signing: KinkoFrozen fires from the live metric.
    AdminServiceClient::new(channel(&d, "carol").await)
        .freeze(governance(
            &d,
            "carol",
            Subject::Freeze {
                request_id: "prometheus-freeze".into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap();
    let firing = wait_for(web, "/api/v1/alerts", 60, "KinkoFrozen firing", |v| {
        v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["labels"]["alertname"] == "KinkoFrozen" && a["state"] == "firing")
        })
    });
    assert!(firing.to_string().contains("KinkoFrozen"));
}
