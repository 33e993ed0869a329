//! What `deploy/` ships, checked with the real tools:
//!
//! - the Kubernetes manifests validate against the Kubernetes 1.33 schemas (PyPI `kubernetes-validate`,
//!   offline, strict: an unknown field fails), and the ServiceMonitor against the Prometheus Operator's
//!   schema (npm `@kubernetes-models/prometheus-operator`); the objects agree with each other (ports, probes,
//!   labels) and with the config they carry;
//! - the config in the ConfigMap and the Secret is one permgate accepts (`permgate validate`) and serves, laid
//!   out as the kubelet lays out the projected volume (`..data` symlinks);
//! - the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`, one per alert),
//!   the dashboard's queries parse, and every metric they name is one permgate serves (`metrics::FAMILIES`);
//! - the image built by `deploy/image/build.sh` (from this test's own binary) unpacks with umoci and its root
//!   file system alone, chrooted, runs permgate as the non-root user its config names and answers `/healthz`.
//!
//! The tools: `python3` with venv (the test installs `kubernetes-validate` into `target/deploy-venv`), `npm`
//! (the test installs the schema package into `target/deploy-npm`), `promtool` (Debian `prometheus`) and
//! `umoci` (Debian `umoci`); `.ci/run` installs them. Missing one fails the test with the command to install it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    bearer, free_port, pip_venv, require, run_ok, send, start_upstream, target_dir,
};

/// Pinned: the schema versions the test validates with.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const OPERATOR_MODELS: &str = "@kubernetes-models/prometheus-operator@6.0.0";
/// The Kubernetes version the manifests are for.
const KUBERNETES_VERSION: &str = "1.33.0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// Installs are done once per test binary (the tests run in parallel threads).
static INSTALL: Mutex<()> = Mutex::new(());

/// `target/deploy-venv` with `kubernetes-validate` (and its PyYAML), created when absent.
fn venv() -> PathBuf {
    let _once = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pip_venv("deploy-venv", &[KUBERNETES_VALIDATE], |venv| {
        venv.join("bin/kubernetes-validate").exists()
    })
}

/// `target/deploy-npm` with the Prometheus Operator's models (and their schema validators).
fn operator_models() -> PathBuf {
    let _once = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = target_dir().join("deploy-npm");
    if !dir
        .join("node_modules/@kubernetes-models/prometheus-operator/package.json")
        .exists()
    {
        require("npm", "apt-get install -y nodejs npm");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("package.json"), "{ \"private\": true }\n").unwrap();
        run_ok(
            Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(&dir)
                .args([
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    "--silent",
                    OPERATOR_MODELS,
                ]),
        );
    }
    dir
}

/// Every document of a YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn document(path: &Path) -> Value {
    let mut all = documents(path);
    assert_eq!(all.len(), 1, "{}", path.display());
    all.remove(0)
}

fn manifests() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(deploy())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// `kubernetes-validate --strict` for Kubernetes 1.33 on `paths`: its output, and whether it passed.
fn kubernetes_validate(paths: &[PathBuf]) -> (bool, String) {
    let output = Command::new(venv().join("bin/kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(paths)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && !text.contains("ERROR"), text)
}

#[test]
fn the_manifests_validate_against_the_kubernetes_1_33_schemas() {
    let (passed, text) = kubernetes_validate(&manifests());
    assert!(passed, "{text}");
    for resource in [
        "configmap/permgate-config",
        "secret/permgate-secret",
        "deployment/permgate",
        "service/permgate",
        "service/permgate-admin",
        "poddisruptionbudget/permgate",
    ] {
        assert!(
            text.contains(&format!(
                "passed for resource {resource} against version 1.33"
            )),
            "{resource} not validated:\n{text}"
        );
    }
    // The ServiceMonitor is not a Kubernetes kind: kubernetes-validate says it has no schema for it (the
    // next test validates it against the operator's).
    assert!(
        text.contains("Couldn't find schema for kind ServiceMonitor"),
        "{text}"
    );

    // The validator fails what Kubernetes would refuse: a misspelled field, a wrong type.
    let broken = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(deploy().join("deployment.yaml")).unwrap();
    for (name, text) in [
        (
            "misspelled.yaml",
            deployment.replacen("readinessProbe:", "readinesProbe:", 1),
        ),
        (
            "wrong-type.yaml",
            deployment.replacen("replicas: 3", "replicas: three", 1),
        ),
    ] {
        let path = broken.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (passed, text) = kubernetes_validate(&[path]);
        assert!(!passed, "{name} passed:\n{text}");
    }
}

#[test]
fn the_service_monitor_matches_the_prometheus_operator_schema_and_the_admin_service() {
    let models = operator_models();
    require("node", "apt-get install -y nodejs");
    let monitor = document(&deploy().join("servicemonitor.yaml"));
    let check = |object: &Value| {
        let mut child = Command::new("node")
            .arg(root().join("tests/deploy/servicemonitor.mjs"))
            .env("NODE_PATH", models.join("node_modules"))
            .current_dir(&models)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(object.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (valid, text) = check(&monitor);
    assert!(valid, "{text}");
    // The schema check can fail: a port given as a number where the schema wants a port name.
    let mut wrong = monitor.clone();
    wrong["spec"]["endpoints"][0]["port"] = Value::from(9090);
    let (valid, text) = check(&wrong);
    assert!(!valid, "a numeric port passed: {text}");

    // It selects the admin Service (and only it) by its labels, on the port the Service names `admin`.
    let services = documents(&deploy().join("service.yaml"));
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let selected: Vec<&Value> = services
        .iter()
        .filter(|service| {
            selector
                .iter()
                .all(|(key, value)| service["metadata"]["labels"][key] == *value)
        })
        .collect();
    assert_eq!(selected.len(), 1, "{selected:?}");
    assert_eq!(selected[0]["metadata"]["name"], "permgate-admin");
    let port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(
        selected[0]["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == *port)
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

/// The ConfigMap's and the Secret's files, as the kubelet projects them: each name a symlink into `..data`,
/// itself a symlink to a timestamped folder. Returns the `gateway.yaml` path.
fn project_config(dir: &Path, rewrite: impl Fn(&str, String) -> String) -> PathBuf {
    let configmap = document(&deploy().join("configmap.yaml"));
    let secret = document(&deploy().join("secret.yaml"));
    let files = configmap["data"]
        .as_object()
        .unwrap()
        .iter()
        .chain(secret["stringData"].as_object().unwrap());
    let version = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir_all(&version).unwrap();
    for (name, text) in files {
        let text = rewrite(name, text.as_str().unwrap().to_string());
        std::fs::write(version.join(name), text).unwrap();
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(version.file_name().unwrap(), dir.join("..data")).unwrap();
    dir.join("gateway.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_serves_the_config_it_carries() {
    let deployment = document(&deploy().join("deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // What the pod relies on: the probes on the admin port, the config where the command reads it, a
    // non-root user with a read-only root file system.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(args, ["serve", "--config", "/etc/permgate/gateway.yaml"]);
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/permgate");
    // The container's ports are the ones gateway.yaml listens on.
    let configmap = document(&deploy().join("configmap.yaml"));
    let gateway = configmap["data"]["gateway.yaml"].as_str().unwrap();
    for port in container["ports"].as_array().unwrap() {
        let (name, number) = (port["name"].as_str().unwrap(), &port["containerPort"]);
        let key = if name == "admin" {
            "admin_listen:"
        } else {
            "listen:"
        };
        assert!(
            gateway
                .lines()
                .any(|line| line.starts_with(key) && line.contains(&format!("0.0.0.0:{number} "))),
            "{name} port {number} is not what gateway.yaml's {key} says"
        );
    }
    // The grace periods nest: permgate's drain ends before the kubelet's SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let drain_ms: u64 = gateway
        .lines()
        .find_map(|line| line.strip_prefix("shutdown_grace_ms:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(pre_stop * 1000 + drain_ms < grace * 1000);

    // The config itself: `permgate validate` accepts it as projected...
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream().await;
    let (listen, admin) = (free_port().await, free_port().await);
    let upstream_url = upstream.url();
    let gateway_path = project_config(dir.path(), |name, text| {
        if name != "gateway.yaml" {
            return text;
        }
        text.replace("listen: 0.0.0.0:8080", &format!("listen: {listen}"))
            .replace(
                "admin_listen: 0.0.0.0:9090",
                &format!("admin_listen: {admin}"),
            )
            .replace(
                "url: http://api-backend:8080",
                &format!("url: {upstream_url}"),
            )
    });
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_permgate"))
            .args(["validate", "--config"])
            .arg(&gateway_path),
    );
    // ...and serves it: ready, the example token allowed where it should be and refused elsewhere, the
    // upstream's own credential from the Secret sent in place of the client's.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["serve", "--config"])
        .arg(&gateway_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_ready(admin).await;
    assert_eq!(send(admin, "GET", "/healthz", &[]).await.status, 200);
    let records = "/client/v4/zones/b1fbb152bbde3bd28919a7f4bdca841f/dns_records";
    let reader = bearer("pgt_example_dns_read");
    let writer = bearer("pgt_example_ci_dns_write");
    let read = send(listen, "GET", records, &[("Authorization", &reader)]).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let received = upstream.only_request();
    assert_eq!(
        received.header("authorization"),
        Some("Bearer replace-with-the-upstream-api-token")
    );
    let refused = send(listen, "POST", records, &[("Authorization", &reader)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let written = send(listen, "POST", records, &[("Authorization", &writer)]).await;
    assert_eq!(written.status, 200, "{}", written.body);
    child.kill().await.unwrap();
}

/// Until `/readyz` answers 200 (30 s at most).
async fn wait_ready(admin: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(admin).await.is_ok()
            && send(admin, "GET", "/readyz", &[]).await.status == 200
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- deploy/monitoring ---------------------------------------------------------------------------------

fn monitoring() -> PathBuf {
    deploy().join("monitoring")
}

/// The metric names in a PromQL expression: identifiers starting `permgate_` or `process_`, a histogram's
/// `_bucket`/`_sum`/`_count` series named by their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let is_ident = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':';
        if is_ident(bytes[start]) && (start == 0 || !is_ident(bytes[start - 1])) {
            let end = (start..bytes.len())
                .find(|&i| !is_ident(bytes[i]))
                .unwrap_or(bytes.len());
            let word = &expr[start..end];
            if word.starts_with("permgate_") || word.starts_with("process_") {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .filter(|family| permgate::metrics::FAMILIES.contains(family))
                    .unwrap_or(word);
                names.insert(family.to_string());
            }
            start = end;
        } else {
            start += 1;
        }
    }
    names
}

fn promtool() -> Command {
    require("promtool", "apt-get install -y prometheus");
    Command::new("promtool")
}

#[test]
fn the_alert_rules_pass_promtool_and_every_alert_has_a_unit_test() {
    let rules = monitoring().join("alerts.yaml");
    run_ok(promtool().arg("check").arg("rules").arg(&rules));
    let tested = run_ok(
        promtool()
            .arg("test")
            .arg("rules")
            .arg(monitoring().join("alerts.test.yaml")),
    );
    assert!(String::from_utf8_lossy(&tested.stdout).contains("SUCCESS"));

    // The alerts the issue asks for, each with a unit test that shows it firing and one that shows it silent.
    let alerts: BTreeSet<String> = document(&rules)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .map(|rule| rule["alert"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = [
        "PermgateConfigReloadFailing",
        "PermgateConfigOutOfSync",
        "PermgateDenySpike",
        "PermgateUpstreamErrors",
        "PermgateDecisionLogDropping",
        "PermgateConfigWatcherDown",
    ]
    .map(String::from)
    .into();
    assert_eq!(alerts, expected);
    let tests = document(&monitoring().join("alerts.test.yaml"));
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"].as_array().unwrap().is_empty() {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    assert_eq!(firing, expected, "alerts without a firing test");
    // PermgateUpstreamErrors' silent case is the healthy job beside the failing one in the same test (its
    // firing expectation lists exactly one alert).
    let mut silent_or_beside = silent.clone();
    silent_or_beside.insert("PermgateUpstreamErrors".to_string());
    assert_eq!(silent_or_beside, expected, "alerts without a silent test");

    // Every metric a rule names is one permgate serves.
    let text = std::fs::read_to_string(&rules).unwrap();
    let named = metric_names(&text);
    assert!(!named.is_empty());
    for name in &named {
        assert!(
            permgate::metrics::FAMILIES.contains(&name.as_str()),
            "alerts.yaml names {name}, which permgate does not serve"
        );
    }
}

#[test]
fn the_dashboard_queries_parse_and_name_only_metrics_permgate_serves() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut named = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "a query naming no permgate metric: {expr}"
        );
        for name in names {
            assert!(
                permgate::metrics::FAMILIES.contains(&name.as_str()),
                "the dashboard names {name}, which permgate does not serve: {expr}"
            );
            named.insert(name);
        }
    }
    // Every family (the deprecated aliases aside) is on the dashboard.
    for family in permgate::metrics::FAMILIES {
        if ["permgate_tokens", "permgate_routes"].contains(family) {
            continue;
        }
        assert!(named.contains(*family), "{family} is on no panel");
    }

    // promtool parses each query: Grafana's variables replaced by what Grafana sends, each query a
    // recording rule of a rule file that `promtool check rules` checks.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "3h")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{index}\n        expr: {}\n",
            serde_json::Value::String(expr)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, rules).unwrap();
    run_ok(promtool().arg("check").arg("rules").arg(&path));
    // And a broken query fails the same check.
    std::fs::write(
        &path,
        "groups:\n  - name: d\n    rules:\n      - record: d:q\n        expr: sum(rate(permgate_requests_total[1m])\n",
    )
    .unwrap();
    let broken = promtool()
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!broken.status.success());
}

// ---- deploy/image ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_from_its_own_root_file_system_as_a_non_root_user() {
    require("umoci", "apt-get install -y umoci");
    require("chroot", "apt-get install -y coreutils");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    run_ok(
        Command::new("bash")
            .arg(deploy().join("image/build.sh"))
            .arg(env!("CARGO_BIN_EXE_permgate"))
            .arg(&layout)
            .arg("test"),
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:test", layout.display()))
            .arg(&bundle),
    );

    // What the image's config says to run, and as whom.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    let process = &config["process"];
    let (uid, gid) = (
        process["user"]["uid"].as_u64().unwrap(),
        process["user"]["gid"].as_u64().unwrap(),
    );
    assert_ne!(uid, 0, "the image runs as root");
    let args: Vec<String> = process["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/permgate",
            "serve",
            "--config",
            "/etc/permgate/gateway.yaml"
        ]
    );
    // Nothing in the root file system but the binary, what it links, and the few files build.sh names.
    let rootfs = bundle.join("rootfs");
    let listing = run_ok(Command::new("find").arg(&rootfs).args(["-type", "f"]));
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| {
            line.strip_prefix(rootfs.to_str().unwrap())
                .unwrap()
                .to_string()
        })
        .collect();
    for file in &files {
        assert!(
            file == "/usr/local/bin/permgate"
                || file.starts_with("/etc/")
                || file.contains(".so")
                || file.contains("/ld-linux"),
            "unexpected file in the image: {file} (all: {files:?})"
        );
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains(&format!("permgate:x:{uid}:{gid}:")),
        "{passwd}"
    );

    // The deploy config, as the pod mounts it, pointed at this test's ports.
    let (listen, admin) = (free_port().await, free_port().await);
    let upstream = start_upstream().await;
    let upstream_url = upstream.url();
    let config_dir = rootfs.join("etc/permgate");
    project_config(&config_dir, |name, text| {
        if name != "gateway.yaml" {
            return text;
        }
        text.replace("listen: 0.0.0.0:8080", &format!("listen: {listen}"))
            .replace(
                "admin_listen: 0.0.0.0:9090",
                &format!("admin_listen: {admin}"),
            )
            .replace(
                "url: http://api-backend:8080",
                &format!("url: {upstream_url}"),
            )
    });
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&config_dir));

    // The binary from that root file system alone: chrooted, as the image's user.
    let mut child = tokio::process::Command::new("chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(&rootfs)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            use tokio::io::AsyncReadExt as _;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .await
                .unwrap();
            panic!("the chrooted permgate exited: {status}: {stderr}");
        }
        assert!(tokio::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let health = send(admin, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200, "{}", health.body);
    // The process (chroot execs it in place) runs as the image's user, in the image's root.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|id| id == uid.to_string()),
        "{uid_line}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        rootfs.canonicalize().unwrap()
    );
    let allowed = send(
        listen,
        "GET",
        "/client/v4/zones/b1fbb152bbde3bd28919a7f4bdca841f/dns_records",
        &[("Authorization", &bearer("pgt_example_dns_read"))],
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    child.kill().await.unwrap();
}
