//! Reload under churn (README "Live reload"): a config is served only as one whole set of files that was on
//! disk, never a mix of two versions, whatever the timing of a ConfigMap `..data` swap or an in-place edit;
//! content equal to what is served never makes a new generation.
//!
//! The versions are built so that their mix grants what neither grants (issue 17's example): in version A
//! Joe's member policy covers domain group G = {zone-1} and his read token covers the whole account; in B, G
//! = {zone-1, zone-2} and the token covers zone-1 only. Either way the token reads zone-1 and not zone-2;
//! A's tokens with B's accounts would let it read zone-2.

use crate::common;
use crate::reload_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use permgate::metrics::ReloadOutcome;
use permgate::reload::Trigger;
use reload_support::*;

/// The files of one version of the config, by name (a flat ConfigMap: the routes are one file).
fn version(source: &TestConfig, which: char, extra_tokens: usize) -> Vec<(&'static str, String)> {
    let read = |name: &str| std::fs::read_to_string(source.dir.path().join(name)).unwrap();
    let zones = if which == 'A' {
        "[zone-1]"
    } else {
        "[zone-1, zone-2]"
    };
    let accounts = read("accounts.yaml")
        .replace(
            "      - { id: zone-2, name: other.example.com }\n",
            &format!(
                "      - {{ id: zone-2, name: other.example.com }}\n    domain_groups:\n      - {{ id: grp-g, name: G, zones: {zones} }}\n"
            ),
        )
        .replacen(
            "              - scope:\n                  key: com.cloudflare.api.account.acct-a\n                  objects: [{ key: com.cloudflare.api.account.zone.zone-1 }]",
            "              - { id: grp-g }",
            1,
        )
        .replace("name: Example", &format!("name: Example {which}"));
    let read_resources = if which == 'A' {
        "{ com.cloudflare.api.account.acct-a: \"*\" }"
    } else {
        "{ com.cloudflare.api.account.zone.zone-1: \"*\" }"
    };
    let mut tokens = read("tokens.yaml").replacen(
        "resources: { com.cloudflare.api.account.zone.zone-1: \"*\" }",
        &format!("resources: {read_resources}"),
        1,
    );
    // Bulk, so a compile takes a while (every file differs between the versions).
    for index in 0..extra_tokens {
        tokens.push_str(&format!(
            "  - {{ id: tok-bulk-{index}, name: bulk {which} {index}, owner: {{ user: user-dave }}, secret_sha256: {:064x}, policies: [{{ id: tp-bulk-{index}, effect: allow, permission_groups: [{{ id: grp-dns-read }}], resources: {{ com.cloudflare.api.account.zone.zone-1: \"*\" }} }}] }}\n",
            index as u128 * 2 + 1
        ));
    }
    vec![
        (
            "gateway.yaml",
            read("gateway.yaml")
                .replace("route_files: [routes]", "route_files: [routes.yaml]")
                .replace("upstream:", &format!("# version {which}\nupstream:")),
        ),
        (
            "permission_groups.yaml",
            read("permission_groups.yaml") + &format!("# version {which}\n"),
        ),
        ("accounts.yaml", accounts),
        ("tokens.yaml", tokens),
        (
            "routes.yaml",
            read("routes/test.yaml") + &format!("# version {which}\n"),
        ),
    ]
}

/// A ConfigMap-like volume: each file is a symlink through `..data` to a timestamped folder.
struct Volume {
    _dir: tempfile::TempDir,
    root: PathBuf,
    versions: Vec<Vec<(&'static str, String)>>,
    serial: AtomicUsize,
}

impl Volume {
    fn new(versions: Vec<Vec<(&'static str, String)>>) -> Arc<Self> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for (name, _) in &versions[0] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), root.join(name)).unwrap();
        }
        let volume = Arc::new(Self {
            _dir: dir,
            root,
            versions,
            serial: AtomicUsize::new(0),
        });
        volume.swap_to(0);
        volume
    }

    /// What the kubelet does: write the version into a new folder, point `..data_tmp` at it, rename it over
    /// `..data` (atomic), remove the old folder.
    fn swap_to(&self, index: usize) {
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        let folder = format!("..v{serial:06}");
        std::fs::create_dir(self.root.join(&folder)).unwrap();
        for (name, text) in &self.versions[index] {
            std::fs::write(self.root.join(&folder).join(name), text).unwrap();
        }
        let old = std::fs::read_link(self.root.join("..data")).ok();
        let staging = self.root.join(format!("..data_tmp{serial}"));
        std::os::unix::fs::symlink(&folder, &staging).unwrap();
        std::fs::rename(&staging, self.root.join("..data")).unwrap();
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(self.root.join(old));
        }
    }

    fn gateway(&self) -> PathBuf {
        self.root.join("gateway.yaml")
    }
}

/// The content hash each version has when read at the volume's paths.
fn hashes(volume: &Volume) -> Vec<String> {
    (0..volume.versions.len())
        .map(|index| {
            volume.swap_to(index);
            permgate::config::load(&volume.gateway())
                .unwrap()
                .content_hash
        })
        .collect()
}

async fn serve(volume: &Volume) -> permgate::cli::serve::Services {
    let config = TestConfig {
        dir: tempfile::tempdir().unwrap(),
        gateway_path: volume.gateway(),
    };
    start_services(&config, MANUAL).await
}

fn served_hash(services: &permgate::cli::serve::Services) -> String {
    services.proxy.gateway.snapshot().content_hash.clone()
}

fn zone_records(zone: &str) -> String {
    format!("/client/v4/zones/{zone}/dns_records")
}

async fn zone_2(services: &permgate::cli::serve::Services) -> (u16, u64) {
    call(services, &zone_records(OTHER_ZONE), TOKEN_READ).await
}

/// A swap timed into a reload, right after its first read of the tokens: the reload does not serve the mix
/// (A's tokens with B's accounts would read zone-2); it reads again and serves B whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_timed_into_a_reload_serves_the_new_version_whole() {
    let upstream = start_upstream().await;
    let source = write_config(&Options::new(&upstream.url()));
    let volume = Volume::new(vec![version(&source, 'A', 0), version(&source, 'B', 0)]);
    let expected = hashes(&volume);
    volume.swap_to(0);
    let services = serve(&volume).await;
    assert_eq!(served_hash(&services), expected[0]);
    assert_eq!(zone_2(&services).await, (403, 10000));

    // Version B lands while the reload has read the tokens and nothing after them.
    let tokens_reads = Arc::new(AtomicUsize::new(0));
    let (swapper, reads) = (Arc::clone(&volume), Arc::clone(&tokens_reads));
    services
        .reloader
        .set_read_hook(Some(Arc::new(move |path: &Path| {
            if path.ends_with("tokens.yaml") && reads.fetch_add(1, Ordering::SeqCst) == 0 {
                swapper.swap_to(1);
            }
        })));
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    assert_eq!(served_hash(&services), expected[1], "served a mix");
    assert!(
        tokens_reads.load(Ordering::SeqCst) >= 2,
        "the torn attempt was not read again"
    );
    assert_eq!(zone_2(&services).await, (403, 10000));
    assert_eq!(
        call(&services, &zone_records(ZONE), TOKEN_READ).await,
        (200, 0)
    );
    let status = status(&services).await;
    assert_eq!(
        (status["generation"].as_u64(), status["in_sync"].as_bool()),
        (Some(2), Some(true))
    );
    services.stop().await;
}

/// An in-place edit (no symlinks) timed into a reload is caught the same way: by the file's stamp and the
/// digests of its reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_edit_timed_into_a_reload_is_read_again() {
    let upstream = start_upstream().await;
    let source = write_config(&Options::new(&upstream.url()));
    let (a, b) = (version(&source, 'A', 0), version(&source, 'B', 0));
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &a {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let gateway = dir.path().join("gateway.yaml");
    let services = start_services(
        &TestConfig {
            dir: tempfile::tempdir().unwrap(),
            gateway_path: gateway.clone(),
        },
        MANUAL,
    )
    .await;
    // B's tokens are written; its accounts land (in place, same file) after the reload read the tokens.
    std::fs::write(dir.path().join("tokens.yaml"), &b[3].1).unwrap();
    let accounts = dir.path().join("accounts.yaml");
    let accounts_b = b[2].1.clone();
    let done = Arc::new(AtomicBool::new(false));
    let once = Arc::clone(&done);
    services
        .reloader
        .set_read_hook(Some(Arc::new(move |path: &Path| {
            if path.ends_with("tokens.yaml") && !once.swap(true, Ordering::SeqCst) {
                std::fs::write(&accounts, &accounts_b).unwrap();
            }
        })));
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    // The whole of what is on disk now: B's accounts and B's tokens (A's gateway, groups and routes).
    services.reloader.set_read_hook(None);
    let on_disk = permgate::config::load(&gateway).unwrap().content_hash;
    assert_eq!(served_hash(&services), on_disk);
    assert_eq!(zone_2(&services).await, (403, 10000));
    services.stop().await;
}

/// Files that change under every attempt are reported as changing too fast; the last good config keeps
/// serving, `in_sync` is false, and the next reload after the churn serves what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changing_under_every_attempt_are_changing_too_fast() {
    let upstream = start_upstream().await;
    let source = write_config(&Options::new(&upstream.url()));
    let volume = Volume::new(vec![version(&source, 'A', 0), version(&source, 'B', 0)]);
    let expected = hashes(&volume);
    volume.swap_to(0);
    let services = serve(&volume).await;
    let flips = Arc::new(AtomicUsize::new(0));
    let (swapper, count) = (Arc::clone(&volume), Arc::clone(&flips));
    services
        .reloader
        .set_read_hook(Some(Arc::new(move |path: &Path| {
            if path.ends_with("tokens.yaml") {
                swapper.swap_to(1 - count.fetch_add(1, Ordering::SeqCst) % 2);
            }
        })));
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Rejected
    );
    let status = status(&services).await;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["in_sync"], false);
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("changing too fast"), "{error}");
    assert_eq!(served_hash(&services), expected[0]);

    services.reloader.set_read_hook(None);
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    let on_disk = permgate::config::load(&volume.gateway())
        .unwrap()
        .content_hash;
    assert_eq!(served_hash(&services), on_disk);
    assert!(expected.contains(&on_disk));
    assert_eq!(status_in_sync(&services).await, Some(true));
    services.stop().await;
}

async fn status_in_sync(services: &permgate::cli::serve::Services) -> Option<bool> {
    status(services).await["in_sync"].as_bool()
}

/// Real churn: a thread swaps `..data` between A and B at random intervals of up to twice what one
/// reload takes on this machine (measured first), while reloads run back to back. Every
/// content hash ever served is exactly one version's, and once the churn stops the last version is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_real_churn_every_config_served_is_one_whole_version() {
    let upstream = start_upstream().await;
    let source = write_config(&Options::new(&upstream.url()));
    let volume = Volume::new(vec![version(&source, 'A', 100), version(&source, 'B', 100)]);
    let expected = hashes(&volume);
    volume.swap_to(0);
    let services = serve(&volume).await;
    // How long a reload that applies takes here (a busy machine is slower): the churn is paced by it, so
    // that some swaps land inside reloads and some reloads finish between swaps.
    let mut reload_time = Duration::ZERO;
    for index in [1, 0] {
        volume.swap_to(index);
        let started = Instant::now();
        assert_eq!(
            services.reloader.reload_now(Trigger::Manual).await,
            ReloadOutcome::Applied
        );
        reload_time = reload_time.max(started.elapsed());
    }
    let pace = u64::try_from(reload_time.as_millis())
        .unwrap_or(1000)
        .max(10);
    // The machine may get busier after the measurement (other tests, CI neighbours): when a reload finds
    // the files changing too fast, the churn slows down (doubling the pace, up to 2 s), so some reloads still
    // land between swaps; the rejected ones are the swaps that landed inside reloads.
    let pace = Arc::new(std::sync::atomic::AtomicU64::new(pace));
    // Each attempt reads the gateway file once: attempts beyond the reloads are torn reads done again.
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    services
        .reloader
        .set_read_hook(Some(Arc::new(move |path: &Path| {
            if path.ends_with("gateway.yaml") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })));

    let stop = Arc::new(AtomicBool::new(false));
    let last_swapped = Arc::new(Mutex::new(0usize));
    let churn = {
        let (volume, stop, last, pace) = (
            Arc::clone(&volume),
            Arc::clone(&stop),
            Arc::clone(&last_swapped),
            Arc::clone(&pace),
        );
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::SeqCst) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let next = 1 - *last.lock().unwrap();
                volume.swap_to(next);
                *last.lock().unwrap() = next;
                swaps += 1;
                let pace = pace.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2 + state % (2 * pace)));
            }
            swaps
        })
    };
    let started = Instant::now();
    let mut served = BTreeSet::new();
    let mut outcomes = [0usize; 3];
    let churn_for =
        Duration::from_secs(4).max(Duration::from_millis(16 * pace.load(Ordering::SeqCst)));
    // At least `churn_for`, and until two reloads applied (bounded: a minute).
    while started.elapsed() < churn_for
        || (outcomes[0] < 2 && started.elapsed() < Duration::from_secs(60))
    {
        let outcome = services.reloader.reload_now(Trigger::Manual).await;
        outcomes[match outcome {
            ReloadOutcome::Applied => 0,
            ReloadOutcome::Unchanged => 1,
            ReloadOutcome::Rejected => 2,
        }] += 1;
        if outcome == ReloadOutcome::Rejected {
            let slower = (pace.load(Ordering::SeqCst) * 2).min(2_000);
            pace.store(slower, Ordering::SeqCst);
        }
        served.insert(served_hash(&services));
    }
    stop.store(true, Ordering::SeqCst);
    let swaps = churn.join().unwrap();
    let reloads: usize = outcomes.iter().sum();
    eprintln!(
        "churn: {swaps} swaps in {:?} (one reload took {reload_time:?}, final pace {} ms); {reloads} reloads \
         ({} attempts): applied {}, unchanged {}, rejected (changing too fast) {}; {} distinct configs served",
        started.elapsed(),
        pace.load(Ordering::SeqCst),
        attempts.load(Ordering::SeqCst),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        served.len()
    );
    assert!(
        outcomes[0] >= 2,
        "the churn never let a reload apply: the test measures nothing"
    );
    for hash in &served {
        assert!(
            expected.contains(hash),
            "served {hash}, which is neither version ({expected:?})"
        );
    }
    // Quiet again: the next reload serves exactly what is on disk.
    let last = *last_swapped.lock().unwrap();
    services.reloader.reload_now(Trigger::Manual).await;
    assert_eq!(served_hash(&services), expected[last]);
    assert_eq!(status_in_sync(&services).await, Some(true));
    services.stop().await;
}

/// A change to a token file only is compiled by reusing the served snapshot's other tokens (`/status`
/// says so), with decisions as a full load of the same files gives; a change to an entity file is compiled
/// in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_change_reuses_the_rest_and_an_entity_change_compiles_all() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let services = start_services(&config, MANUAL).await;
    let tokens = config.dir.path().join("tokens.yaml");
    // Joe's read token now covers the whole account.
    edit(&tokens, |text| {
        text.replacen(
            "resources: { com.cloudflare.api.account.zone.zone-1: \"*\" }",
            "resources: { com.cloudflare.api.account.acct-a: \"*\" }",
            1,
        )
    });
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    let after_tokens = status(&services).await;
    assert_eq!(
        after_tokens["last_reload"]["reused_unchanged_token_files"], true,
        "{after_tokens:#}"
    );
    assert!(after_tokens["last_reload"]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        served_hash(&services),
        permgate::config::load(&config.gateway_path)
            .unwrap()
            .content_hash
    );
    // Joe's member policy still stops at zone-1.
    assert_eq!(zone_2(&services).await, (403, 10000));
    // The member policy widened (an entity file): compiled in full, and now zone-2 is readable.
    edit(&config.dir.path().join("accounts.yaml"), |text| {
        text.replacen(
            "objects: [{ key: com.cloudflare.api.account.zone.zone-1 }]",
            "objects: [{ key: \"*\" }]",
            1,
        )
    });
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    let after_accounts = status(&services).await;
    assert_eq!(
        after_accounts["last_reload"]["reused_unchanged_token_files"], false,
        "{after_accounts:#}"
    );
    assert_eq!(zone_2(&services).await, (200, 0));
    services.stop().await;
}

/// A file-event reload after a token file changed reads that file and nothing of the other policy files:
/// their stamps vouch for the digests read before (files older than the racy window), and the
/// reusing compile needs nothing more of them. What is served is still exactly a full load's config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_token_file_change_reads_only_that_policy_file() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let services = start_services(&config, MANUAL).await;
    // Past the racy window (2 s, compared in whole seconds), a full read records what every file's stamp
    // vouches for.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(
        services.reloader.reload_now(Trigger::Start).await,
        ReloadOutcome::Unchanged
    );
    let reads = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
    let record = Arc::clone(&reads);
    services
        .reloader
        .set_read_hook(Some(Arc::new(move |path: &Path| {
            record.lock().unwrap().push(path.to_path_buf());
        })));
    write_by_rename(
        &config.dir.path().join("tokens.yaml"),
        &std::fs::read_to_string(config.dir.path().join("tokens.yaml"))
            .unwrap()
            .replacen("name: joe read", "name: joe read, renamed", 1),
    );
    assert_eq!(
        services.reloader.reload_now(Trigger::Watch).await,
        ReloadOutcome::Applied
    );
    let read: Vec<String> = reads
        .lock()
        .unwrap()
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for untouched in ["permission_groups.yaml", "accounts.yaml"] {
        assert!(
            !read.iter().any(|name| name == untouched),
            "{untouched} was read: {read:?}"
        );
    }
    assert!(read.iter().any(|name| name == "tokens.yaml"), "{read:?}");
    let status = status(&services).await;
    assert_eq!(status["last_reload"]["reused_unchanged_token_files"], true);
    services.reloader.set_read_hook(None);
    assert_eq!(
        served_hash(&services),
        permgate::config::load(&config.gateway_path)
            .unwrap()
            .content_hash
    );
    services.stop().await;
}
