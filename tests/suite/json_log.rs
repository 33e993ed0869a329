//! `log: {format: json}`: the real binary's operational log (stderr) is one JSON object per line, a rejected
//! config's multi-line error list included.

use crate::common;

use std::time::Duration;

use common::{copy_shipped, free_port, point_shipped, send, start_upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operational_log_is_one_json_object_per_line() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = copy_shipped(dir.path());
    let (listen, admin) = (free_port().await, free_port().await);
    point_shipped(&gateway, listen, admin, &upstream.url(), "sink: off");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(&gateway, format!("{text}\nlog:\n  format: json\n")).unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["serve", "--config"])
        .arg(&gateway)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = |admin| async move {
        tokio::net::TcpStream::connect(admin).await.ok()?;
        serde_json::from_str::<serde_json::Value>(&send(admin, "GET", "/status", &[]).await.body)
            .ok()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(admin).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A broken file: the rejection's message is a header line and the located error, in one entry.
    let accounts = dir.path().join("config/accounts.yaml");
    let broken = std::fs::read_to_string(&accounts).unwrap().replacen(
        "    name: Example Company",
        "    name: Example Company\n    bogus: 1",
        1,
    );
    std::fs::write(&accounts, broken).unwrap();
    loop {
        if let Some(status) = status(admin).await
            && status["last_reload"]["outcome"] == "rejected"
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken config was never rejected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let rejected = lines
        .iter()
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("config rejected"))
        })
        .unwrap_or_else(|| panic!("no rejection entry:\n{log}"));
    let message = rejected["fields"]["message"].as_str().unwrap();
    assert_eq!(rejected["level"], "ERROR");
    assert!(
        message.contains("accounts[0].bogus: [E002] unknown field `bogus`"),
        "the located error in the entry: {message}"
    );
    assert!(
        message.contains('\n'),
        "the error list, one error per line, inside one entry"
    );
}
