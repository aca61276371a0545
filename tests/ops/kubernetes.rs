//! deploy/kubernetes/: a structural schema check of our own (kubeconform
//! is not installable from the registries reachable here) and the
//! manifests' agreement with each other and with the config reference:
//! the ConfigMap's causeway.toml parses with causeway-config, its listen
//! ports are the container's named ports, the probes hit /healthz and
//! /readyz on the admin port, the Service and the PodDisruptionBudget
//! select the Deployment's pods, the config is mounted so that updates
//! reach it, and the reloader sidecar can signal causeway.

use causeway_config::{split_host_port, Config};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every manifest, by kind.
fn manifests() -> BTreeMap<String, Value> {
    let kust: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(kust["kind"].as_str(), Some("Kustomization"));
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    let mut listed: Vec<String> = kust["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, files, "kustomization lists every manifest");
    let mut out = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(dir().join(&f)).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{f}: {e}"));
            let kind = v["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{f}: no kind"))
                .to_string();
            assert!(out.insert(kind.clone(), v).is_none(), "two {kind}s");
        }
    }
    out
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
}

/// Keys of a mapping must all be among `allowed` (typos are not ignored
/// silently as the API server would), and `required` must be there.
fn keys(v: &Value, what: &str, required: &[&str], allowed: &[&str]) {
    let m = v
        .as_mapping()
        .unwrap_or_else(|| panic!("{what}: expected a mapping"));
    for k in m.keys() {
        let k = s(k, what);
        assert!(
            allowed.contains(&k) || required.contains(&k),
            "{what}: unknown field {k:?}"
        );
    }
    for r in required {
        assert!(m.contains_key(*r), "{what}: missing {r}");
    }
}

fn object(v: &Value, api: &str, kind: &str) {
    keys(
        v,
        kind,
        &["apiVersion", "kind", "metadata"],
        &["spec", "data"],
    );
    assert_eq!(s(&v["apiVersion"], kind), api, "{kind} apiVersion");
    keys(
        &v["metadata"],
        "metadata",
        &["name"],
        &["labels", "annotations", "namespace"],
    );
    let name = s(&v["metadata"]["name"], "name");
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{kind} name {name:?} is not a DNS label"
    );
}

fn port_schema(p: &Value, what: &str) {
    keys(p, what, &["containerPort"], &["name", "protocol"]);
    let n = p["containerPort"]
        .as_u64()
        .expect("containerPort is an integer");
    assert!((1..=65535).contains(&n));
    assert!(
        s(&p["name"], what).len() <= 15,
        "port names are at most 15 characters"
    );
}

fn probe_schema(p: &Value, what: &str) {
    keys(
        p,
        what,
        &["httpGet"],
        &[
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "initialDelaySeconds",
            "successThreshold",
        ],
    );
    keys(&p["httpGet"], what, &["path", "port"], &["scheme"]);
}

fn container_schema(c: &Value) {
    let name = s(&c["name"], "container name");
    keys(
        c,
        name,
        &["name", "image"],
        &[
            "args",
            "command",
            "env",
            "ports",
            "livenessProbe",
            "readinessProbe",
            "lifecycle",
            "resources",
            "securityContext",
            "volumeMounts",
            "imagePullPolicy",
        ],
    );
    for p in c
        .get("ports")
        .map(|p| seq(p, "ports").clone())
        .unwrap_or_default()
    {
        port_schema(&p, name);
    }
    for (k, pr) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
    ] {
        if let Some(p) = c.get(k) {
            probe_schema(p, pr);
        }
    }
    for m in c
        .get("volumeMounts")
        .map(|m| seq(m, "mounts").clone())
        .unwrap_or_default()
    {
        keys(&m, "volumeMount", &["name", "mountPath"], &["readOnly"]);
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (s(k, "label").to_string(), s(v, "label").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod template's containers, and the causeway container's port
/// numbered `name`.
struct Pod<'a> {
    spec: &'a Value,
    causeway: &'a Value,
    reloader: &'a Value,
}

impl<'a> Pod<'a> {
    fn of(dep: &'a Value) -> Pod<'a> {
        let spec = &dep["spec"]["template"]["spec"];
        keys(
            spec,
            "pod spec",
            &["containers", "volumes"],
            &[
                "shareProcessNamespace",
                "terminationGracePeriodSeconds",
                "securityContext",
            ],
        );
        let containers = seq(&spec["containers"], "containers");
        containers.iter().for_each(container_schema);
        let find = |n: &str| {
            containers
                .iter()
                .find(|c| c["name"] == n)
                .unwrap_or_else(|| panic!("no container {n}"))
        };
        Pod {
            spec,
            causeway: find("causeway"),
            reloader: find("config-reloader"),
        }
    }

    fn port(&self, name: &str) -> u64 {
        seq(&self.causeway["ports"], "ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port named {name}"))
    }

    fn uid(&self, c: &Value) -> Option<u64> {
        c["securityContext"]["runAsUser"]
            .as_u64()
            .or(self.spec["securityContext"]["runAsUser"].as_u64())
    }
}

/// The `--config` path is the mounted ConfigMap key, mounted so that
/// updates reach it, and the reloader watches it and may signal causeway.
fn check_config_mount_and_reload(pod: &Pod, cm: &Value) {
    let args: Vec<&str> = seq(&pod.causeway["args"], "args")
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    let path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("--config <path>");
    let (mount_dir, file) = path.rsplit_once('/').unwrap();
    let volume = seq(&pod.spec["volumes"], "volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    let mounted_at = |c: &Value| {
        seq(&c["volumeMounts"], "mounts")
            .iter()
            .find(|m| m["name"] == volume["name"])
            .map(|m| {
                assert!(
                    m.get("subPath").is_none(),
                    "subPath mounts never see updates"
                );
                s(&m["mountPath"], "mountPath").to_string()
            })
    };
    assert_eq!(mounted_at(pod.causeway).as_deref(), Some(mount_dir));
    assert_eq!(mounted_at(pod.reloader).as_deref(), Some(mount_dir));
    assert!(
        cm["data"].get(file).is_some(),
        "the ConfigMap has key {file}"
    );
    assert_eq!(pod.spec["shareProcessNamespace"].as_bool(), Some(true));
    let script = seq(&pod.reloader["command"], "command")
        .iter()
        .map(|a| s(a, "cmd"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        script.contains(path) && script.contains("kill -HUP") && script.contains("pidof causeway"),
        "{script}"
    );
    // the script is valid sh (checked with `sh -n`, not run: `pidof
    // causeway` here would signal other processes of that name)
    let body = seq(&pod.reloader["command"], "command")
        .last()
        .map(|v| s(v, "script"))
        .unwrap();
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = pod.uid(pod.causeway);
    assert!(
        uid.is_some() && uid == pod.uid(pod.reloader),
        "same uid: the sidecar may signal causeway"
    );
    let dockerfile = std::fs::read_to_string(dir().join("../../Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("--uid {}", uid.unwrap())),
        "the image's user is the pod's uid"
    );
}

#[test]
fn manifests_are_well_formed_and_agree_with_the_config() {
    let all = manifests();
    let (cm, dep, svc, pdb) = (
        &all["ConfigMap"],
        &all["Deployment"],
        &all["Service"],
        &all["PodDisruptionBudget"],
    );
    object(cm, "v1", "ConfigMap");
    object(dep, "apps/v1", "Deployment");
    object(svc, "v1", "Service");
    object(pdb, "policy/v1", "PodDisruptionBudget");
    assert_eq!(all.len(), 4, "{:?}", all.keys());

    // the config: parses, listens on every interface
    let text = s(&cm["data"]["causeway.toml"], "causeway.toml");
    let cfg = Config::from_str_named(text, "configmap causeway.toml")
        .expect("the ConfigMap's config parses");
    assert!(cfg.admin.enabled, "probes need the admin endpoint");
    let (mysql_host, mysql_port) = split_host_port(&cfg.server.listen).unwrap();
    let (admin_host, admin_port) = split_host_port(&cfg.admin.listen).unwrap();
    assert_eq!(
        (mysql_host, admin_host),
        ("0.0.0.0", "0.0.0.0"),
        "reachable from the Service"
    );

    // Deployment: N pods, ports and probes as configured
    let spec = &dep["spec"];
    keys(
        spec,
        "Deployment spec",
        &["replicas", "selector", "template"],
        &["strategy"],
    );
    let n = spec["replicas"].as_u64().unwrap();
    assert!(n >= 2, "N instances: {n}");
    let pod_labels = labels(&spec["template"]["metadata"]["labels"]);
    let selector = labels(&spec["selector"]["matchLabels"]);
    assert!(!selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let pod = Pod::of(dep);
    let cw = pod.causeway;
    assert_eq!(pod.port("mysql"), u64::from(mysql_port), "[server] listen");
    assert_eq!(pod.port("admin"), u64::from(admin_port), "[admin] listen");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(cw[probe]["httpGet"]["path"].as_str(), Some(path));
        assert_eq!(cw[probe]["httpGet"]["port"].as_str(), Some("admin"));
    }
    check_config_mount_and_reload(&pod, cm);

    // drain: the grace period covers preStop + shutdown_drain_ms
    let grace = pod.spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop: u64 = seq(&cw["lifecycle"]["preStop"]["exec"]["command"], "preStop")
        .last()
        .and_then(|v| v.as_str()?.parse().ok())
        .unwrap_or(0);
    let drain_s = cfg.server.shutdown_drain().as_secs_f64();
    assert!(
        grace as f64 >= pre_stop as f64 + drain_s + 2.0,
        "grace {grace} s < preStop {pre_stop} s + drain {drain_s} s + 2 s"
    );

    // Service: selects the pods, targets named ports that exist
    keys(
        &svc["spec"],
        "Service spec",
        &["selector", "ports"],
        &["type"],
    );
    assert_eq!(labels(&svc["spec"]["selector"]), selector);
    for p in seq(&svc["spec"]["ports"], "service ports") {
        keys(
            p,
            "service port",
            &["name", "port", "targetPort"],
            &["protocol"],
        );
        pod.port(s(&p["targetPort"], "targetPort"));
    }
    // PodDisruptionBudget: same pods, leaves some serving
    keys(
        &pdb["spec"],
        "PDB spec",
        &["selector"],
        &["maxUnavailable", "minAvailable"],
    );
    assert_eq!(labels(&pdb["spec"]["selector"]["matchLabels"]), selector);
    let max_unavailable = pdb["spec"]["maxUnavailable"].as_u64().unwrap_or(0);
    let min_available = pdb["spec"]["minAvailable"].as_u64().unwrap_or(0);
    assert!(
        (max_unavailable >= 1 && max_unavailable < n) || (min_available >= 1 && min_available < n),
        "the budget allows drains and keeps pods serving"
    );
}

#[test]
fn the_configmap_config_passes_check_config() {
    let all = manifests();
    let text = all["ConfigMap"]["data"]["causeway.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let path = std::env::temp_dir().join(format!("cw-k8s-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 replica(s)"));
}
