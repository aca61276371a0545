//! docker-compose.yml, conf/causeway.docker.toml, the init scripts in
//! docker/, docker/prometheus.yml and the Dockerfile agree with each other.
//! No Docker engine is needed: the files are parsed (YAML with serde_yaml,
//! the config with causeway-config) and cross-checked.

use causeway_config::{split_host_port, Config};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn compose() -> Value {
    let mut v: Value = serde_yaml::from_str(&read("docker-compose.yml"))
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
    v.apply_merge().expect("resolving `<<:` merge keys");
    v
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("expected a string, got {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(host path, container path)` of a service's bind mounts.
fn mounts(svc: &Value) -> Vec<(String, String)> {
    strings(&svc["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap().to_string();
            let target = parts.next().expect("a mount target").to_string();
            (host, target)
        })
        .collect()
}

/// Container ports published by a service (`"host:container"` entries).
fn published(svc: &Value) -> Vec<u16> {
    strings(&svc["ports"])
        .iter()
        .map(|p| {
            p.rsplit(':')
                .next()
                .and_then(|c| c.split('/').next())
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("cannot parse port mapping {p:?}"))
        })
        .collect()
}

fn docker_config() -> Config {
    Config::from_file(repo().join("conf/causeway.docker.toml"))
        .unwrap_or_else(|e| panic!("conf/causeway.docker.toml: {e}"))
}

/// The SQL of every init script mounted into a MySQL service.
fn init_sql(svc: &Value) -> String {
    let (host, _) = mounts(svc)
        .into_iter()
        .find(|(_, t)| t == "/docker-entrypoint-initdb.d")
        .expect("an init script directory mounted at /docker-entrypoint-initdb.d");
    let dir = repo().join(&host);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql" || x == "sh"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no init scripts in {host}");
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mysql_services_are_a_gtid_primary_and_replicas() {
    let c = compose();
    let cfg = docker_config();
    let mut ids = Vec::new();
    let backends = std::iter::once(&cfg.primary).chain(&cfg.replicas);
    for b in backends {
        let (host, port) = split_host_port(&b.address).unwrap();
        assert_eq!(port, 3306, "{} must use the container port 3306", b.name);
        let svc = service(&c, host);
        assert_eq!(svc["image"].as_str(), Some("mysql:8.4"), "{host} image");
        let args = strings(&svc["command"]);
        for want in ["--gtid-mode=ON", "--enforce-gtid-consistency=ON"] {
            assert!(
                args.iter().any(|a| a == want),
                "{host} lacks {want}: {args:?}"
            );
        }
        let id = args
            .iter()
            .find_map(|a| a.strip_prefix("--server-id="))
            .unwrap_or_else(|| panic!("{host} has no --server-id"));
        ids.push(id.to_string());
        let is_replica = cfg.replicas.iter().any(|r| r.address == b.address);
        assert_eq!(
            args.iter().any(|a| a == "--read-only=ON"),
            is_replica,
            "read-only exactly on replicas ({host})"
        );
        for (h, _) in mounts(svc) {
            assert!(repo().join(&h).exists(), "{host} mounts missing {h}");
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "server ids must be distinct");
}

#[test]
fn init_scripts_create_the_configured_accounts_and_replication() {
    let c = compose();
    let cfg = docker_config();
    let primary_host = split_host_port(&cfg.primary.address).unwrap().0;
    let primary = service(&c, primary_host);
    let sql = init_sql(primary);
    let app = cfg.user("app").expect("an app user");
    for (user, pw) in [
        (&cfg.monitor.user, &cfg.monitor.password),
        (&app.backend_user, &app.backend_password),
        (&"repl".to_string(), &"replpw".to_string()),
    ] {
        assert!(
            sql.contains(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'")),
            "primary init creates {user} with the configured password"
        );
    }
    assert!(sql.contains("REPLICATION SLAVE ON *.* TO 'repl'"));
    assert!(
        sql.contains("REPLICATION CLIENT"),
        "monitor can SHOW REPLICA STATUS"
    );

    // admin maps to root, whose password is the image's MYSQL_ROOT_PASSWORD
    let admin = cfg.user("admin").expect("an admin user");
    assert!(admin.admin);
    assert_eq!(admin.backend_user, "root");
    assert_eq!(
        primary["environment"]["MYSQL_ROOT_PASSWORD"].as_str(),
        Some(admin.backend_password.as_str())
    );

    for r in &cfg.replicas {
        let host = split_host_port(&r.address).unwrap().0;
        let svc = service(&c, host);
        let sql = init_sql(svc).replace(char::is_whitespace, "");
        for want in [
            "CHANGEREPLICATIONSOURCETO".to_string(),
            format!("SOURCE_HOST='{primary_host}'"),
            "SOURCE_USER='repl'".into(),
            "SOURCE_PASSWORD='replpw'".into(),
            "SOURCE_AUTO_POSITION=1".into(),
            "GET_SOURCE_PUBLIC_KEY=1".into(),
            "STARTREPLICA;".into(),
        ] {
            assert!(sql.contains(&want), "{host} init lacks {want}");
        }
        let deps = &svc["depends_on"][primary_host]["condition"];
        assert_eq!(
            deps.as_str(),
            Some("service_healthy"),
            "{host} waits for the primary"
        );
    }
}

#[test]
fn causeway_service_mounts_the_config_and_publishes_its_ports() {
    let c = compose();
    let cfg = docker_config();
    let svc = service(&c, "causeway");

    // the config file mounted is conf/causeway.docker.toml, where --config says
    let args = strings(&svc["command"]);
    let at = args.iter().position(|a| a == "--config").expect("--config");
    let target = &args[at + 1];
    let (host, _) = mounts(svc)
        .into_iter()
        .find(|(_, t)| t == target)
        .unwrap_or_else(|| panic!("nothing mounted at {target}"));
    assert_eq!(host, "./conf/causeway.docker.toml");
    assert!(repo().join(&host).is_file());

    // listeners bind all interfaces and are published
    let ports = published(svc);
    for (what, addr) in [
        ("server.listen", &cfg.server.listen),
        ("admin.listen", &cfg.admin.listen),
    ] {
        let (ip, port) = split_host_port(addr).unwrap();
        assert_eq!(
            ip, "0.0.0.0",
            "{what} must accept connections from outside the container"
        );
        assert!(
            ports.contains(&port),
            "{what} port {port} is not published: {ports:?}"
        );
    }
    assert!(cfg.admin.enabled);

    // causeway starts after every backend is healthy
    for b in std::iter::once(&cfg.primary).chain(&cfg.replicas) {
        let host = split_host_port(&b.address).unwrap().0;
        assert_eq!(
            svc["depends_on"][host]["condition"].as_str(),
            Some("service_healthy"),
            "causeway waits for {host}"
        );
    }

    // built from the repository's Dockerfile
    assert_eq!(svc["build"]["context"].as_str(), Some("."));
    let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(repo().join(dockerfile).is_file());
}

#[test]
fn dockerfile_builds_the_causeway_binary_in_two_stages() {
    let d = read("Dockerfile");
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"));
    assert!(froms[1].starts_with("FROM debian:") && froms[1].contains("-slim"));
    assert!(d.contains("cargo build --release --locked --bin causeway"));
    assert!(d.contains("COPY --from=build /usr/local/bin/causeway /usr/local/bin/causeway"));
    assert!(d.contains(r#"ENTRYPOINT ["/usr/local/bin/causeway"]"#));
    // the binary built is the root package's
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("name = \"causeway\""));
    assert!(repo().join("src/main.rs").is_file());
    // the baked-in default config is valid too
    for line in d.lines().filter(|l| l.starts_with("COPY conf/")) {
        let src = line.split_whitespace().nth(1).unwrap();
        Config::from_file(repo().join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn prometheus_profile_scrapes_the_admin_endpoint() {
    let c = compose();
    let cfg = docker_config();
    let svc = service(&c, "prometheus");
    assert_eq!(strings(&svc["profiles"]), vec!["metrics".to_string()]);
    let (host, target) = mounts(svc)
        .into_iter()
        .next()
        .expect("a mounted prometheus.yml");
    assert_eq!(target, "/etc/prometheus/prometheus.yml");
    let prom: Value = serde_yaml::from_str(&read(host.trim_start_matches("./"))).unwrap();
    let port = split_host_port(&cfg.admin.listen).unwrap().1;
    let job = &prom["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    assert_eq!(
        strings(&job["static_configs"][0]["targets"]),
        vec![format!("causeway:{port}")]
    );
    // the profile keeps it out of a plain `docker compose up`
    for name in ["primary", "replica1", "replica2", "causeway"] {
        assert!(
            service(&c, name).get("profiles").is_none(),
            "{name} has a profile"
        );
    }
}

#[test]
fn systemd_unit_runs_the_documented_command() {
    let unit = read("conf/causeway.service");
    for want in [
        "ExecStart=/usr/local/bin/causeway --config /etc/causeway/causeway.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit.lines().any(|l| l == want),
            "causeway.service lacks {want}"
        );
    }
    assert!(Path::new(&repo().join("conf/causeway.toml")).is_file());
}
