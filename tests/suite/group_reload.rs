//! A member removed from a user group at reload loses what the group gave, through the real gateway: the
//! resource-type fixture served by `permgate serve` (the binary) in front of a recording upstream; Carol reads
//! a bucket only through her group; the group's file is edited, the live reload applies it, and the same
//! request is refused and never reaches the upstream, while Dave (in another group) keeps his own access.

use std::time::Duration;

use crate::common::{self, free_port, send, start_upstream};

const ACCOUNT: &str = "a1000000000000000000000000000001";
const CAROL: [(&str, &str); 2] = [
    ("X-Auth-Email", "carol@buckets.example"),
    ("X-Auth-Key", "cccc0000000000000000000000000000000c1"),
];
const DAVE: [(&str, &str); 2] = [
    ("X-Auth-Email", "dave@buckets.example"),
    ("X-Auth-Key", "dddd0000000000000000000000000000000d1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_from_a_group_at_reload_loses_the_groups_access() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    common::copy_tree(&root.join("tests/cases/configs/buckets"), dir.path());
    let (listen, admin) = (free_port().await, free_port().await);
    let gateway = dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway)
        .unwrap()
        .replace("listen: 127.0.0.1:18080", &format!("listen: {listen}"))
        .replace(
            "admin_listen: 127.0.0.1:19090",
            &format!("admin_listen: {admin}"),
        )
        .replace("http://127.0.0.1:19000", &upstream.url());
    std::fs::write(&gateway, text + "reload_interval_ms: 200\n").unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["serve", "--config"])
        .arg(&gateway)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never listened"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let logs = format!("/r2/accounts/{ACCOUNT}/buckets/logs");
    let photos = format!("/r2/accounts/{ACCOUNT}/buckets/photos/objects/a.txt");
    let before = send(listen, "GET", &logs, &CAROL).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(upstream.wait_for(1).await[0].target, logs);

    // Carol leaves g-bucket-readers (she stays in g-no-secrets and a member of the account).
    let policy = dir.path().join("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let edited = text.replacen(
        "        members: [u0000000000000000000000000000ca1]\n",
        "        members: []\n",
        1,
    );
    assert_ne!(edited, text, "the fixture's group lists Carol");
    std::fs::write(&policy, edited).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let answer = send(listen, "GET", &logs, &CAROL).await;
        if answer.status != 200 {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never took Carol's group access away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after.status, 403, "{}", after.body);
    assert_eq!(after.code(), Some(10000), "{}", after.body);
    let seen = upstream.requests().len();
    // Refused from now on, and never forwarded.
    let again = send(listen, "GET", &logs, &CAROL).await;
    assert_eq!(again.status, 403);
    assert_eq!(upstream.requests().len(), seen);
    // Dave, in the other group, keeps his own access (and the new generation is the one serving).
    let dave = send(listen, "PUT", &photos, &DAVE).await;
    assert_eq!(dave.status, 200, "{}", dave.body);
    assert_eq!(upstream.wait_for(seen + 1).await[seen].target, photos);

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
