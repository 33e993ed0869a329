//! The access-change record of a live reload: the real binary serves the shipped config with its decision
//! log in a file; a domain-group edit and its undo are applied live, and each applied reload gets one
//! `config_change` line in the decision log, `/status`'s `last_change` and
//! `permgate_config_access_changes_total`, with exactly the grants gained and lost.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{ShippedGateway, send, start_upstream};

const FRANK: &str = "key:1999910c759cfa1109d6611af2904508";
const SHOP: &str = "com.cloudflare.api.account.zone.90cd2c6d19429ceb92a8da695473c3e4";
const STAGING_GROUP: &str = "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b]";
const STAGING_AND_SHOP: &str =
    "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b, 90cd2c6d19429ceb92a8da695473c3e4]";

async fn status(admin: std::net::SocketAddr) -> Option<serde_json::Value> {
    // Not listening yet: no status (the helper below panics on a refused connection).
    tokio::net::TcpStream::connect(admin).await.ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), send(admin, "GET", "/status", &[]))
        .await
        .ok()?;
    serde_json::from_str(&response.body).ok()
}

/// Waits until `/status` has a `last_change` for `generation`.
async fn change_of(admin: std::net::SocketAddr, generation: u64) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = status(admin).await
            && status["last_change"]["generation"] == generation
        {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access-change record for generation {generation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Atomic replace, as an editor or a config sync does.
fn replace(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from}");
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, text.replacen(from, to, 1)).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_applied_reload_records_exactly_the_access_it_gained_and_lost() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let (admin, gateway, log) = (served.admin, served.gateway.clone(), served.log.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(status) = status(admin).await
            && status["last_reload"]["trigger"] == "start"
        {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(first["generation"], 1);
    assert!(
        first["last_change"].is_null(),
        "no change before a reload: {first}"
    );

    // Shop joins the "Staging zones" domain group: Frank (DNS Write + Zone Read on it) gains shop.
    let accounts = served.dir.path().join("config/accounts.yaml");
    replace(&accounts, STAGING_GROUP, STAGING_AND_SHOP);
    let second = change_of(admin, 2).await;
    let change = &second["last_change"];
    assert_eq!(change["type"], "config_change");
    assert_eq!(change["gained"], 7, "{change:#}");
    assert_eq!(change["lost"], 0);
    assert_eq!(change["previous_hash"], first["content_hash"]);
    assert_eq!(change["content_hash"], second["content_hash"]);
    assert_eq!(change["changes"][0]["direction"], "gained");
    assert_eq!(change["changes"][0]["credential"], FRANK);
    assert_eq!(change["changes"][0]["resource"], SHOP);
    assert_eq!(change["changes"][0]["keys"].as_array().unwrap().len(), 7);

    // Undone: the same seven are lost, in a new generation.
    replace(&accounts, STAGING_AND_SHOP, STAGING_GROUP);
    let third = change_of(admin, 3).await;
    assert_eq!(third["last_change"]["gained"], 0);
    assert_eq!(third["last_change"]["lost"], 7);
    assert_eq!(third["last_change"]["changes"][0]["direction"], "lost");

    let metrics = send(admin, "GET", "/metrics", &[]).await.body;
    assert!(
        metrics.contains("permgate_config_access_changes_total{direction=\"gained\"} 7"),
        "{metrics}"
    );
    assert!(metrics.contains("permgate_config_access_changes_total{direction=\"lost\"} 7"));

    // SIGTERM writes the log out: one config_change line per applied reload, none for the start.
    let _dir = served.stop().await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|line: &serde_json::Value| line["type"] == "config_change")
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0]["generation"], 2);
    assert_eq!(records[0]["gained"], 7);
    assert_eq!(records[1]["generation"], 3);
    assert_eq!(records[1]["lost"], 7);
    assert!(records[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        records[0]["changes"][0]["example"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .take(5)
            .collect::<Vec<_>>()
            .join(" "),
        format!("permgate check --config {} --user", gateway.display())
    );
}

/// `audit_log` takes the access-change records off the decision log: each applied reload's `config_change`
/// line is in the audit file, and the decision log keeps only requests; `audit_log: {sink: off}` writes
/// none, while `/status` still has the last change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_takes_the_access_change_records() {
    let upstream = start_upstream().await;
    for off in [false, true] {
        let extra = if off {
            "audit_log:\n  sink: off\n"
        } else {
            "audit_log:\n  sink: file\n  path: {dir}/audit.log\n"
        };
        let served = ShippedGateway::start_with(&upstream.url(), extra).await;
        let (admin, listen, log) = (served.admin, served.listen, served.log.clone());
        let audit = served.dir.path().join("audit.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while status(admin).await.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "never started");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // A request, so the decision log has a line of its own.
        let answer = send(listen, "GET", "/client/v4/user/tokens/verify", &[]).await;
        assert_eq!(answer.status, 400, "{}", answer.body);

        let accounts = served.dir.path().join("config/accounts.yaml");
        replace(&accounts, STAGING_GROUP, STAGING_AND_SHOP);
        let second = change_of(admin, 2).await;
        assert_eq!(second["last_change"]["gained"], 7);

        let _dir = served.stop().await;
        let lines = |path: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        };
        let decisions = lines(&log);
        assert!(
            decisions
                .iter()
                .any(|line| line["path"] == "/client/v4/user/tokens/verify"),
            "{decisions:#?}"
        );
        assert!(
            decisions.iter().all(|line| line["type"] != "config_change"),
            "{decisions:#?}"
        );
        let audited = lines(&audit);
        if off {
            assert!(!audit.exists(), "{audited:#?}");
        } else {
            assert_eq!(audited.len(), 1, "{audited:#?}");
            assert_eq!(audited[0]["type"], "config_change");
            assert_eq!(audited[0]["generation"], 2);
            assert_eq!(audited[0]["gained"], 7);
        }
    }
}
