//! The deployment kit under deploy/: every YAML and JSON file parses, and the manifests agree
//! with the code they deploy (admin routes, metric names, config schema, the Dockerfile's uid).
//! Nothing here starts a container; this is what can be checked by reading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under deploy/ whose name ends in one of `exts`, sorted.
fn deploy_files(exts: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("deploy"), exts, &mut out);
    out.sort();
    out
}

/// YAML as JSON values, so YAML and JSON files are navigated the same way.
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// The documents of one YAML file (several when it has `---` separators).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    docs.iter().map(to_json).filter(|d| !d.is_null()).collect()
}

fn yaml_file(rel: &str) -> Value {
    let mut docs = yaml_docs(&repo().join(rel));
    assert_eq!(docs.len(), 1, "{rel} should hold one YAML document");
    docs.remove(0)
}

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

/// The one Kubernetes object of `kind` under deploy/kubernetes/ (the Secret example included).
fn k8s(kind: &str) -> Value {
    let found: Vec<Value> = deploy_files(&["yaml", "yml"])
        .iter()
        .filter(|p| p.starts_with(repo().join("deploy/kubernetes")))
        .flat_map(|p| yaml_docs(p))
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} under deploy/kubernetes"
    );
    found.into_iter().next().expect("one object")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
}

fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {pointer}"))
}

/// The string literals in `.route("...")` calls of the admin router's source.
fn admin_routes() -> BTreeSet<String> {
    read("src/admin.rs")
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_string()))
        .collect()
}

/// Metric names: the values of `pub const X: &str = "...";` in src/metrics.rs, plus the
/// `_bucket`, `_sum` and `_count` series of those given histogram buckets there (without
/// buckets the exporter renders a summary, which has no `_bucket`).
fn metric_names() -> BTreeSet<String> {
    let src = read("src/metrics.rs");
    let consts: BTreeMap<&str, &str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| {
            let (ident, rest) = l.split_once(": &str = \"")?;
            Some((ident, rest.split_once('"')?.0))
        })
        .collect();
    assert!(
        !consts.is_empty(),
        "no metric names found in src/metrics.rs"
    );
    let mut names: BTreeSet<String> = consts.values().map(|n| n.to_string()).collect();
    for rest in src.split("Matcher::Full(").skip(1) {
        let ident = rest.split('.').next().unwrap_or_default();
        let name = consts
            .get(ident)
            .unwrap_or_else(|| panic!("buckets set for unknown constant {ident}"));
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Identifiers `rwsplit_[a-z0-9_]+` in a PromQL expression, outside quoted label values.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut quoted = false;
    let expr: String = expr
        .chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted { ' ' } else { c }
        })
        .collect();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("rwsplit_").map(|p| p + i) {
        let end = at + bytes[at..].iter().take_while(|&&b| ident(b)).count();
        let starts_word = at == 0 || !(ident(bytes[at - 1]) || bytes[at - 1].is_ascii_uppercase());
        if starts_word {
            out.insert(expr[at..end].to_string());
        }
        i = end;
    }
    out
}

/// The numbers an expression compares against with `>`.
fn thresholds_in(expr: &str) -> Vec<f64> {
    expr.split('>')
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start_matches('=').trim_start();
            let num: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            num.parse().ok()
        })
        .collect()
}

fn alert_rules() -> Vec<Value> {
    let file = yaml_file("deploy/prometheus/alerts.yml");
    let groups = file["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// Every `expr` of the dashboard's panels (rows included) and its query variables.
fn dashboard_exprs() -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            panels(&p["panels"], out);
        }
    }
    let dash = json_file("deploy/grafana/rwsplit-dashboard.json");
    let mut out = Vec::new();
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// `password_env`/`token_env` names anywhere in a rwsplit TOML config.
fn env_names(config: &str) -> BTreeSet<String> {
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    match v.as_str() {
                        Some(s) if k.ends_with("_env") => {
                            out.insert(s.to_string());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let value: toml::Value = toml::from_str(config).expect("config is TOML");
    let mut out = BTreeSet::new();
    walk(&value, &mut out);
    out
}

fn set_env(vars: &BTreeMap<String, String>) {
    for (k, v) in vars {
        // SAFETY: nextest runs each test in its own process, and under `cargo test` every test
        // of this file that sets a variable sets it to the same value, through std's lock; no
        // test here reads the environment through libc.
        unsafe { std::env::set_var(k, v) };
    }
}

fn configmap_toml() -> String {
    str_at(&k8s("ConfigMap"), "/data/rwsplit.toml").to_string()
}

fn container() -> Value {
    let dep = k8s("Deployment");
    let containers = dep
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    containers[0].clone()
}

fn port_of(addr: &std::net::SocketAddr) -> i64 {
    i64::from(addr.port())
}

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yaml = deploy_files(&["yaml", "yml"]);
    let json = deploy_files(&["json"]);
    assert!(
        yaml.len() >= 8,
        "expected the compose, Prometheus, Grafana and Kubernetes files"
    );
    assert!(!json.is_empty(), "expected the Grafana dashboard");
    for path in &yaml {
        assert!(!yaml_docs(path).is_empty(), "{} is empty", path.display());
    }
    for path in &json {
        let text = std::fs::read_to_string(path).expect("read");
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    }
}

#[test]
fn probes_use_health_and_ready_on_the_admin_port_the_router_serves() {
    let routes = admin_routes();
    let c = container();
    assert_eq!(str_at(&c, "/readinessProbe/httpGet/path"), "/ready");
    assert_eq!(str_at(&c, "/livenessProbe/httpGet/path"), "/health");
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = str_at(&c, &format!("/{probe}/httpGet/path"));
        assert!(
            routes.contains(path),
            "{probe} {path} is not among {routes:?}"
        );
        assert_eq!(int_at(&c, &format!("/{probe}/httpGet/port")), 6080);
    }
}

#[test]
fn prometheus_scrapes_a_path_the_admin_router_serves() {
    let routes = admin_routes();
    let prom = yaml_file("deploy/prometheus/prometheus.yml");
    let job = prom["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "rwsplit")
        .expect("a rwsplit job");
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert!(routes.contains(path), "{path} is not among {routes:?}");
    assert_eq!(str_at(job, "/static_configs/0/targets/0"), "rwsplit:6080");
    let rules = prom["rule_files"].as_array().expect("rule_files");
    assert!(rules.iter().any(|r| r == "/etc/prometheus/alerts.yml"));
    let dep = k8s("Deployment");
    let annotation = str_at(
        &dep,
        "/spec/template/metadata/annotations/prometheus.io~1path",
    );
    assert!(
        routes.contains(annotation),
        "{annotation} is not among {routes:?}"
    );
}

#[test]
fn the_deployment_runs_two_non_root_replicas_with_the_dockerfile_uid() {
    let dep = k8s("Deployment");
    assert_eq!(int_at(&dep, "/spec/replicas"), 2);
    let dockerfile = read("Dockerfile");
    let uid: i64 = dockerfile
        .split("--uid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the Dockerfile creates its user with --uid");
    assert_eq!(uid, 10001);
    assert_eq!(
        int_at(&dep, "/spec/template/spec/securityContext/runAsUser"),
        uid
    );
    assert_eq!(
        dep.pointer("/spec/template/spec/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    let c = container();
    assert_eq!(
        c.pointer("/securityContext/allowPrivilegeEscalation"),
        Some(&Value::Bool(false))
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            str_at(&c, &format!("/resources/{kind}/{res}"));
        }
    }
    let ports: BTreeMap<&str, i64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_at(p, "/name"), int_at(p, "/containerPort")))
        .collect();
    assert_eq!(ports, BTreeMap::from([("mysql", 6033), ("admin", 6080)]));
}

#[test]
fn the_config_is_mounted_where_the_container_reads_it() {
    let dep = k8s("Deployment");
    let c = container();
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["--config", "/etc/rwsplit/rwsplit.toml"]);
    let mount = &c["volumeMounts"][0];
    let volume = dep
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(
        str_at(volume, "/configMap/name"),
        str_at(&k8s("ConfigMap"), "/metadata/name")
    );
    let file = format!(
        "{}/{}",
        str_at(mount, "/mountPath"),
        str_at(volume, "/configMap/items/0/path")
    );
    assert_eq!(file, "/etc/rwsplit/rwsplit.toml");
    assert_eq!(str_at(volume, "/configMap/items/0/key"), "rwsplit.toml");
}

#[test]
fn the_service_exposes_mysql_and_a_separate_admin_port_to_the_pods() {
    let svc = k8s("Service");
    let ports: BTreeMap<&str, i64> = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_at(p, "/name"), int_at(p, "/port")))
        .collect();
    assert_eq!(ports, BTreeMap::from([("mysql", 6033), ("admin", 6080)]));
    let pod_labels = &k8s("Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(
            &pod_labels[k], v,
            "Service selector {k} matches no pod label"
        );
    }
}

#[test]
fn the_autoscaler_keeps_two_to_ten_pods_at_seventy_percent_cpu() {
    let hpa = k8s("HorizontalPodAutoscaler");
    assert_eq!(str_at(&hpa, "/apiVersion"), "autoscaling/v2");
    assert_eq!(int_at(&hpa, "/spec/minReplicas"), 2);
    assert_eq!(int_at(&hpa, "/spec/maxReplicas"), 10);
    assert_eq!(str_at(&hpa, "/spec/metrics/0/resource/name"), "cpu");
    assert_eq!(
        str_at(&hpa, "/spec/metrics/0/resource/target/type"),
        "Utilization"
    );
    assert_eq!(
        int_at(&hpa, "/spec/metrics/0/resource/target/averageUtilization"),
        70
    );
    let dep = k8s("Deployment");
    assert_eq!(str_at(&hpa, "/spec/scaleTargetRef/kind"), "Deployment");
    assert_eq!(
        str_at(&hpa, "/spec/scaleTargetRef/name"),
        str_at(&dep, "/metadata/name")
    );
}

#[test]
fn the_disruption_budget_keeps_one_pod_of_the_deployment() {
    let pdb = k8s("PodDisruptionBudget");
    assert_eq!(str_at(&pdb, "/apiVersion"), "policy/v1");
    assert_eq!(int_at(&pdb, "/spec/minAvailable"), 1);
    let pod_labels = &k8s("Deployment")["spec"]["template"]["metadata"]["labels"];
    let selector = pdb
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&pod_labels[k], v, "PDB selector {k} matches no pod label");
    }
}

#[test]
fn the_kustomization_lists_files_that_exist() {
    let kust = yaml_file("deploy/kubernetes/kustomization.yaml");
    for r in kust["resources"].as_array().expect("resources") {
        let file = repo()
            .join("deploy/kubernetes")
            .join(r.as_str().expect("a path"));
        assert!(file.exists(), "{} is missing", file.display());
    }
}

#[test]
fn dashboard_and_alerts_use_only_metrics_declared_in_metrics_rs() {
    let known = metric_names();
    let rules = alert_rules();
    let exprs = dashboard_exprs()
        .into_iter()
        .map(|e| ("dashboard", e))
        .chain(
            rules
                .iter()
                .map(|r| ("alerts.yml", str_at(r, "/expr").to_string())),
        );
    let mut used = BTreeSet::new();
    for (file, expr) in exprs {
        for name in metrics_in(&expr) {
            assert!(
                known.contains(&name),
                "{file} uses {name}, not in src/metrics.rs: {expr}"
            );
            used.insert(name);
        }
    }
    for wanted in [
        "rwsplit_statements_total",
        "rwsplit_statement_duration_seconds_bucket",
        "rwsplit_errors_total",
        "rwsplit_pool_connections_in_use",
        "rwsplit_pool_connections_max",
        "rwsplit_backend_lag_seconds",
        "rwsplit_backend_up",
        "rwsplit_backend_takes_reads",
        "rwsplit_backend_role",
        "rwsplit_split_brain",
    ] {
        assert!(used.contains(wanted), "nothing uses {wanted}");
    }
}

#[test]
fn metric_names_are_read_from_metrics_rs_with_histogram_suffixes() {
    let known = metric_names();
    assert!(known.contains("rwsplit_statements_total"));
    assert!(known.contains("rwsplit_statement_duration_seconds_bucket"));
    assert!(!known.contains("rwsplit_statements_total_bucket"));
    assert_eq!(
        metrics_in("sum by (route) (rate(rwsplit_statements_total{x=\"rwsplit_no\"}[5m]))"),
        BTreeSet::from(["rwsplit_statements_total".to_string()])
    );
    assert_eq!(thresholds_in("a / b > 0.05 and c >= 3"), [0.05, 3.0]);
}

/// Threshold → severity of the rules whose expression contains `needle`.
fn severities(rules: &[Value], needle: &str) -> BTreeMap<String, String> {
    rules
        .iter()
        .filter(|r| str_at(r, "/expr").contains(needle))
        .flat_map(|r| {
            let severity = str_at(r, "/labels/severity").to_string();
            thresholds_in(str_at(r, "/expr"))
                .into_iter()
                .map(move |t| (t.to_string(), severity.clone()))
        })
        .collect()
}

#[test]
fn alert_thresholds_warn_before_they_page() {
    let rules = alert_rules();
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect()
    };
    assert_eq!(
        severities(&rules, "outcome=\"error\""),
        expect(&[("0.01", "warning"), ("0.05", "critical")])
    );
    assert_eq!(
        severities(&rules, "histogram_quantile(0.99"),
        expect(&[("1", "warning"), ("3", "critical")])
    );
    assert_eq!(
        severities(
            &rules,
            "rwsplit_pool_connections_in_use / rwsplit_pool_connections_max"
        ),
        expect(&[("0.7", "warning"), ("0.9", "critical")])
    );
    assert_eq!(
        severities(&rules, "rwsplit_backend_lag_seconds"),
        expect(&[("10", "warning")])
    );
}

#[test]
fn alerts_cover_excluded_replicas_down_backends_and_split_brain() {
    let rules = alert_rules();
    let rule = |needle: &str| -> &Value {
        rules
            .iter()
            .find(|r| str_at(r, "/expr").contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle}"))
    };
    let excluded = str_at(rule("rwsplit_backend_takes_reads == 0"), "/expr");
    assert!(excluded.contains("rwsplit_backend_role{role=\"replica\"} == 1"));
    assert!(excluded.contains("rwsplit_backend_up == 1"));
    // The role gauge has a `role` label the others lack: without on (...) nothing matches.
    assert_eq!(excluded.matches("and on (").count(), 2, "{excluded}");
    let down = rule("rwsplit_backend_up == 0");
    assert_eq!(str_at(down, "/for"), "1m");
    let split = rule("rwsplit_split_brain == 1");
    assert_eq!(str_at(split, "/labels/severity"), "critical");
    for r in &rules {
        let name = str_at(r, "/alert");
        let severity = str_at(r, "/labels/severity");
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: {severity}"
        );
        str_at(r, "/annotations/summary");
    }
}

#[test]
fn alert_rules_pass_promtool_when_it_is_installed() {
    let rules = repo().join("deploy/prometheus/alerts.yml");
    let out = match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("promtool not found (Debian package `prometheus`): skipping its check");
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_config_loads_with_the_passwords_compose_gives_it() {
    let compose = yaml_file("deploy/docker-compose.yml");
    let env: BTreeMap<String, String> = compose["services"]["rwsplit"]["environment"]
        .as_object()
        .expect("rwsplit's environment as a map")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_string()))
        .collect();
    let text = read("deploy/compose/rwsplit.toml");
    for var in env_names(&text) {
        assert!(env.contains_key(&var), "compose does not set {var}");
    }
    set_env(&env);
    let config = rwsplit::config::Config::from_toml_str(&text).expect("compose config loads");
    assert_eq!(port_of(&config.proxy.listen), 6033);
    let admin = config.admin.listen.expect("admin API on");
    assert!(admin.ip().is_unspecified(), "Prometheus must reach {admin}");
    assert_eq!(port_of(&admin), 6080);
}

#[test]
fn compose_backends_are_compose_services() {
    let compose = yaml_file("deploy/docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    let text = read("deploy/compose/rwsplit.toml");
    let value: toml::Value = toml::from_str(&text).expect("TOML");
    let backends = value["backends"].as_array().expect("backends");
    assert!(backends.len() >= 2);
    for b in backends {
        let address = b["address"].as_str().expect("address");
        let (host, _) = address.rsplit_once(':').expect("host:port");
        assert!(
            services.contains_key(host),
            "{host} is not a compose service"
        );
        assert!(
            services[host]["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("mariadb:10.11")),
            "{host} runs MariaDB 10.11"
        );
    }
    let mounted = str_at(&services["rwsplit"], "/volumes/0");
    assert_eq!(
        mounted,
        "./compose/rwsplit.toml:/etc/rwsplit/rwsplit.toml:ro"
    );
}

#[test]
fn compose_mounts_files_that_exist() {
    let compose = yaml_file("deploy/docker-compose.yml");
    for (name, service) in compose["services"].as_object().expect("services") {
        for v in service["volumes"].as_array().into_iter().flatten() {
            let spec = v.as_str().expect("short volume syntax");
            if let Some(rel) = spec.split(':').next().filter(|s| s.starts_with("./")) {
                let path = repo().join("deploy").join(rel);
                assert!(path.exists(), "{name} mounts missing {}", path.display());
            }
        }
    }
    let build = &compose["services"]["rwsplit"]["build"];
    let dockerfile = repo()
        .join("deploy")
        .join(str_at(build, "/context"))
        .join(str_at(build, "/dockerfile"));
    assert!(dockerfile.exists(), "{}", dockerfile.display());
}

#[test]
fn the_replica_replicates_by_gtid_with_the_users_the_config_needs() {
    let replica = read("deploy/compose/replica-init.sh");
    assert!(replica.contains("MASTER_USE_GTID = slave_pos"));
    let primary = read("deploy/compose/primary-init.sql");
    for grant in [
        "GRANT ALL ON app.* TO 'app'@'%'",
        "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
        "GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'rwsplit_monitor'@'%'",
        "GRANT ALL ON rwsplit.* TO 'rwsplit_monitor'@'%'",
    ] {
        assert!(primary.contains(grant), "primary-init.sql lacks {grant}");
    }
    let compose = yaml_file("deploy/docker-compose.yml");
    let command = compose["services"]["replica"]["command"]
        .as_array()
        .expect("replica command");
    // rwsplit takes the writable backend for the primary: the replica must be read-only.
    assert!(command.iter().any(|a| a == "--read-only=ON"));
}

#[test]
fn the_configmap_config_loads_with_the_secret_the_deployment_reads() {
    let text = configmap_toml();
    let c = container();
    let secret = k8s("Secret");
    let secret_name = str_at(&secret, "/metadata/name");
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().expect("env") {
        let key_ref = e
            .pointer("/valueFrom/secretKeyRef")
            .expect("from the Secret");
        assert_eq!(str_at(key_ref, "/name"), secret_name);
        let value = str_at(&secret, &format!("/stringData/{}", str_at(key_ref, "/key")));
        env.insert(str_at(e, "/name").to_string(), value.to_string());
    }
    for var in env_names(&text) {
        assert!(env.contains_key(&var), "the Deployment does not set {var}");
    }
    set_env(&env);
    let config = rwsplit::config::Config::from_toml_str(&text).expect("ConfigMap config loads");
    assert_eq!(port_of(&config.proxy.listen), 6033);
    let admin = config.admin.listen.expect("admin API on");
    assert!(
        admin.ip().is_unspecified(),
        "the kubelet must reach {admin}"
    );
    assert_eq!(port_of(&admin), 6080);
}

#[test]
fn grafana_provisions_the_dashboard_and_the_datasource_it_defaults_to() {
    let dash = json_file("deploy/grafana/rwsplit-dashboard.json");
    assert!(dash["schemaVersion"].as_i64().is_some_and(|v| v >= 36));
    let ds = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = str_at(&ds, "/datasources/0/uid");
    assert_eq!(str_at(&ds, "/datasources/0/type"), "prometheus");
    let var = dash["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(str_at(var, "/current/value"), uid);
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(ids.insert(int_at(p, "/id")), "duplicate panel id");
        assert!(!p["targets"].as_array().expect("targets").is_empty());
    }
    let provider = yaml_file("deploy/grafana/provisioning/dashboards/rwsplit.yml");
    let compose = yaml_file("deploy/docker-compose.yml");
    let dir = str_at(&provider, "/providers/0/options/path");
    let mount = format!("./grafana/rwsplit-dashboard.json:{dir}/rwsplit-dashboard.json:ro");
    let volumes = compose["services"]["grafana"]["volumes"]
        .as_array()
        .expect("grafana volumes");
    assert!(volumes.iter().any(|v| v == mount.as_str()), "{mount}");
}
