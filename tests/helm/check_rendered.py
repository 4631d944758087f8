"""Checks one `helm template` output of the binlake chart (called by check.sh).

    check_rendered.py [--notes NOTES.txt] RENDERED.yaml BINLAKE_BINARY WORKDIR CHART_VALUES [VALUES ...]

- the ConfigMap holds one TOML file per enabled component (capture.toml, materialize.toml,
  run.toml), each parses and equals, field by field, what the values (the chart's
  values.yaml overlaid with the given files, as Helm merges them) say for that command;
- every ${VAR} a file references is set in its component's container, from a Secret (or,
  for non-secret lake.storage options, a plain value), and the container gets no other
  secret: materialize never sees the MySQL password, capture never the object-store keys;
- each Deployment: replicas and strategy (capture and run: 1, Recreate; materialize:
  replicas or none under an HPA), a checksum/config annotation equal to the sha256 of its
  file, its file mounted where the args point, --log-format, the http container port, the
  probes the values say, the restricted securityContext, the lake volume at a local
  lake root (emptyDir or claim) and none for an object store;
- the standard app.kubernetes.io/* labels on every resource, component where it belongs;
- metrics Services (one per component, selecting exactly its pods, port http,
  publishNotReadyAddresses, prometheus.io annotations), the ServiceMonitor, the HPA, the
  PodDisruptionBudgets, the lake PersistentVolumeClaim and the ServiceAccount exactly
  when the values ask for them, pointing at what they should;
- NOTES.txt (with --notes) names every enabled Deployment and how to read its /status;
- `binlake validate` accepts every rendered file, with the referenced variables set.

Exits 1 with every problem listed, 0 when all hold.
"""

import hashlib
import os
import re
import subprocess
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11: check.sh installs tomli into the venv
    import tomli as tomllib

CONFIG_DIR = "/etc/binlake"
COMPONENTS = ["capture", "materialize", "run"]
# What each component's file holds beyond name, [source], [encoding] and [http] (the
# chart's binlake.sections).
SECTIONS = {
    "capture": {"password", "kafka", "capture", "snapshot"},
    "materialize": {"kafka", "lake", "materialize"},
    "run": {"password", "snapshot", "lake"},
}
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]
COMPONENT_KINDS = {"Deployment", "PodDisruptionBudget", "Service", "HorizontalPodAutoscaler"}
ENV_REF = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

problems = []


def problem(msg):
    problems.append(msg)


def merge(base, over):
    """Helm's coalescing: maps merge recursively, anything else replaces, null deletes."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def env_refs(value):
    """The ${VAR} references in every string value of a parsed TOML document."""
    if isinstance(value, str):
        # "$${" is a literal "${", not a reference.
        return set(ENV_REF.findall(value.replace("$${", "")))
    if isinstance(value, dict):
        return set().union(*(env_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_refs(v) for v in value))
    return set()


def kafka_env(setting):
    return "BINLAKE_KAFKA_" + re.sub(r"[^A-Z0-9]", "_", setting.upper())


def lake_env(option):
    return "BINLAKE_LAKE_" + re.sub(r"[^A-Z0-9]", "_", option.upper())


def enabled_components(v):
    return [c for c in COMPONENTS if v[c]["enabled"]]


def lake_local_path(v):
    """The local folder of lake.root, or None for an object store."""
    root = v["lake"].get("root", "")
    if root.startswith("file://"):
        return root[len("file://"):].rstrip("/")
    if "://" in root:
        return None
    return root.rstrip("/")


def materialize_workers(v, bound):
    """How many materialize pods may run: bound "max" (HPA maxReplicas) or "min"."""
    m = v["materialize"]
    if m["autoscaling"]["enabled"]:
        return m["autoscaling"]["maxReplicas" if bound == "max" else "minReplicas"]
    return m["replicas"]


def expected_config(v, comp):
    """The TOML document the values say `binlake <comp>` reads."""
    sections = SECTIONS[comp]
    s, e = v["source"], v["encoding"]
    source = {
        "host": s["host"],
        "port": s["port"],
        "user": s["user"],
        "server_id": s["serverId"],
        "connect_timeout": s["connectTimeout"],
        "include": s["include"],
        "exclude": s["exclude"],
        "exclude_columns": s["excludeColumns"],
    }
    if "password" in sections and s["passwordSecret"]["name"]:
        source["password"] = "${BINLAKE_MYSQL_PASSWORD}"
    if s["start"]:
        source["start"] = s["start"]
    if s["keyColumns"]:
        source["key_columns"] = s["keyColumns"]
    t = s["tls"]
    if t["mode"] != "disabled":
        source["tls"] = t["mode"]
        if t["secretName"]:
            source["tls_ca"] = "/etc/binlake/source-tls/" + t["caKey"]
            if t["certKey"]:
                source["tls_cert"] = "/etc/binlake/source-tls/" + t["certKey"]
                source["tls_key"] = "/etc/binlake/source-tls/" + t["keyKey"]
    out = {
        "name": v["name"],
        "shutdown_grace": v["shutdownGrace"],
        "source": source,
        "encoding": {
            "decimal_handling": e["decimalHandling"],
            "bigint_unsigned_handling": e["bigintUnsignedHandling"],
            "schemas": e["schemas"],
        },
        "http": {"listen": f"0.0.0.0:{v['http']['port']}"},
    }
    if "kafka" in sections:
        k = v["kafka"]
        kafka = {
            "bootstrap_servers": k["bootstrapServers"],
            "request_timeout": k["requestTimeout"],
            "topic_name": k["topicName"],
        }
        if k["topics"]:
            kafka["topics"] = k["topics"]
        client = dict(k["client"])
        for item in k["clientSecrets"]:
            client[item["setting"]] = "${%s}" % kafka_env(item["setting"])
        if client:
            kafka["client"] = client
        out["kafka"] = kafka
    if "capture" in sections:
        c = v["capture"]["settings"]
        capture = {
            "partitions": c["partitions"],
            "replication_factor": c["replicationFactor"],
            "tombstones": c["tombstones"],
            "transaction_topic": c["transactionTopic"],
            "max_batch_rows": c["maxBatchRows"],
            "linger": c["linger"],
            "catch_up_linger": c["catchUpLinger"],
            "heartbeat_interval": c["heartbeatInterval"],
            "max_message_bytes": c["maxMessageBytes"],
            "transaction_timeout": c["transactionTimeout"],
        }
        if c["deadLetterTopic"]:
            capture["dead_letter_topic"] = c["deadLetterTopic"]
        if c["topicConfigs"]:
            capture["topic_configs"] = c["topicConfigs"]
        out["capture"] = capture
    if "snapshot" in sections:
        out["snapshot"] = {
            "mode": v["snapshot"]["mode"],
            "chunk_size": v["snapshot"]["chunkSize"],
            "readers": v["snapshot"]["readers"],
            "reread_on_schema_change": v["snapshot"]["rereadOnSchemaChange"],
        }
    if "lake" in sections:
        lk = v["lake"]
        lake = {
            "root": lk["root"],
            "buckets": lk["buckets"],
            "flush_interval": lk["flushInterval"],
            "max_batch_rows": lk["maxBatchRows"],
            "max_batch_bytes": lk["maxBatchBytes"],
            "before_images": lk["beforeImages"],
            "maintenance_interval": lk["maintenanceInterval"],
            "compact_min_files": lk["compactMinFiles"],
            "vacuum_retention": lk["vacuumRetention"],
            "replica_mode": lk["replicaMode"],
            "index_dir": lk["indexDir"],
            "index_cache_mb": lk["indexCacheMb"],
            "max_deleted_fraction": lk["maxDeletedFraction"],
        }
        if lk["storage"]:
            # Every option is a reference, never the value itself.
            lake["storage"] = {opt: "${%s}" % lake_env(opt) for opt in lk["storage"]}
        out["lake"] = lake
    ms = v["materialize"]["settings"]
    if "materialize" in sections and (ms["group"] or ms.get("staticMembership")):
        out["materialize"] = {}
        if ms["group"]:
            out["materialize"]["group"] = ms["group"]
        if ms.get("staticMembership"):
            # Each worker is the static member named after its pod.
            out["materialize"]["instance_id"] = "${POD_NAME}"
    return out


def expected_env(v, comp):
    """The variables the container must set for its file: name -> ("secret", name, key)
    or ("value", value)."""
    sections = SECTIONS[comp]
    want = {}
    ps = v["source"]["passwordSecret"]
    if "password" in sections and ps["name"]:
        want["BINLAKE_MYSQL_PASSWORD"] = ("secret", ps["name"], ps["key"])
    if "kafka" in sections:
        for item in v["kafka"]["clientSecrets"]:
            want[kafka_env(item["setting"])] = ("secret", item["secretName"], item["secretKey"])
    if "lake" in sections:
        for opt, src in v["lake"]["storage"].items():
            if "value" in src:
                want[lake_env(opt)] = ("value", src["value"])
            else:
                want[lake_env(opt)] = ("secret", src["secretName"], src["secretKey"])
    if "materialize" in sections and v["materialize"]["settings"].get("staticMembership"):
        want["POD_NAME"] = ("field", "metadata.name")
    return want


def diff(where, path, want, got):
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                problem(f"{where}: {path}{key} is missing (want {want[key]!r})")
            elif key not in want:
                problem(f"{where}: {path}{key} = {got[key]!r} is not in the values")
            else:
                diff(where, f"{path}{key}.", want[key], got[key])
    elif want != got or type(want) is not type(got):
        problem(f"{where}: {path.rstrip('.')} = {got!r}, want {want!r}")


def labels_of(doc):
    return (doc.get("metadata") or {}).get("labels") or {}


def component_of(doc):
    return labels_of(doc).get("app.kubernetes.io/component")


def check_labels(doc):
    kind, name = doc["kind"], doc["metadata"]["name"]
    labels = labels_of(doc)
    for label in STANDARD_LABELS:
        if not labels.get(label):
            problem(f"{kind} {name}: label {label} is missing")
    if labels.get("app.kubernetes.io/part-of") != "binlake":
        problem(f"{kind} {name}: app.kubernetes.io/part-of is not binlake")
    comp = labels.get("app.kubernetes.io/component")
    if kind in COMPONENT_KINDS and comp not in COMPONENTS:
        problem(f"{kind} {name}: app.kubernetes.io/component is {comp!r}, want one of {COMPONENTS}")
    if kind not in COMPONENT_KINDS and comp is not None:
        problem(f"{kind} {name}: shared by the components, but labelled component {comp!r}")


def probe_value(c, key):
    p = c.get(key)
    return p or None


def check_deployment(d, v, comp, config_map, toml_text, refs, sas):
    name = d["metadata"]["name"]
    where = f"Deployment {name}"
    spec = d["spec"]
    c = v[comp]
    local = lake_local_path(v) if "lake" in SECTIONS[comp] else None
    vol = v["lake"]["volume"]

    # Replicas and strategy.
    strategy = (spec.get("strategy") or {}).get("type")
    if comp == "materialize":
        want_replicas = None if c["autoscaling"]["enabled"] else c["replicas"]
        want_strategy = "Recreate" if local and vol["type"] != "emptyDir" else "RollingUpdate"
    else:
        want_replicas, want_strategy = 1, "Recreate"
    if spec.get("replicas") != want_replicas:
        problem(f"{where}: replicas {spec.get('replicas')}, want {want_replicas}")
    if strategy != want_strategy:
        problem(f"{where}: strategy {strategy}, want {want_strategy}")

    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels") or {}
    check_labels({"kind": "Deployment", "metadata": {"name": f"{name} (pod template)", "labels": pod_labels}})
    if pod_labels.get("app.kubernetes.io/component") != comp:
        problem(f"{where}: pod label app.kubernetes.io/component is not {comp}")
    selector = spec["selector"]["matchLabels"]
    if selector.get("app.kubernetes.io/component") != comp:
        problem(f"{where}: the selector does not select component {comp}")
    for k, val in selector.items():
        if pod_labels.get(k) != val:
            problem(f"{where}: selector {k}={val} does not match the pod labels")
    checksum = (pod["metadata"].get("annotations") or {}).get("checksum/config", "")
    if checksum != hashlib.sha256(toml_text.encode()).hexdigest():
        problem(f"{where}: checksum/config {checksum!r} is not the sha256 of {comp}.toml")

    podspec = pod["spec"]
    containers = podspec["containers"]
    if len(containers) != 1:
        problem(f"{where}: {len(containers)} containers, want 1")
    ctr = containers[0]
    config_file = f"{CONFIG_DIR}/{comp}.toml"
    want_args = ["--log-format", v["logFormat"], comp, "--config", config_file]
    if ctr.get("args") != want_args:
        problem(f"{where}: args {ctr.get('args')}, want {want_args}")
    mounts = {m["name"]: m for m in ctr.get("volumeMounts", [])}
    volumes = {vol_["name"]: vol_ for vol_ in podspec.get("volumes", [])}
    cm_volume = (volumes.get("config") or {}).get("configMap") or {}
    if cm_volume.get("name") != config_map["metadata"]["name"]:
        problem(f"{where}: volume config is {cm_volume.get('name')}, want the ConfigMap")
    if cm_volume.get("items") != [{"key": f"{comp}.toml", "path": f"{comp}.toml"}]:
        problem(f"{where}: volume config does not mount {comp}.toml (alone): {cm_volume.get('items')}")
    if (mounts.get("config") or {}).get("mountPath") != CONFIG_DIR:
        problem(f"{where}: the config is not mounted at {CONFIG_DIR}")

    # The HTTP endpoint and the probes.
    ports = {p.get("name"): p for p in ctr.get("ports", [])}
    if (ports.get("http") or {}).get("containerPort") != v["http"]["port"]:
        problem(f"{where}: container port http is {ports.get('http')}, want {v['http']['port']}")
    for key in ["livenessProbe", "readinessProbe", "startupProbe"]:
        want, got = probe_value(c, key), ctr.get(key)
        if want != got:
            problem(f"{where}: {key} {got}, want {want}")
        http_get = (got or {}).get("httpGet")
        if http_get and http_get.get("port") not in ("http", v["http"]["port"]):
            problem(f"{where}: {key} probes port {http_get.get('port')}, not the http port")
    # The defaults probe the endpoint: liveness /healthz, readiness /readyz.
    for key, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        default = DEFAULTS[comp].get(key)
        if c.get(key) == default and ((ctr.get(key) or {}).get("httpGet") or {}).get("path") != path:
            problem(f"{where}: the default {key} does not GET {path}")

    # The source's TLS files, from the Secret, where the config says they are.
    t = v["source"]["tls"]
    if t["mode"] != "disabled" and t["secretName"]:
        if (mounts.get("source-tls") or {}).get("mountPath") != "/etc/binlake/source-tls":
            problem(f"{where}: the TLS Secret is not mounted at /etc/binlake/source-tls")
        if ((volumes.get("source-tls") or {}).get("secret") or {}).get("secretName") != t["secretName"]:
            problem(f"{where}: volume source-tls is not Secret {t['secretName']}")
    elif "source-tls" in mounts or "source-tls" in volumes:
        problem(f"{where}: a source-tls volume without source.tls")

    # The lake volume.
    lake_mount = mounts.get("lake")
    lake_volume = volumes.get("lake")
    if local:
        if (lake_mount or {}).get("mountPath") != local or lake_mount.get("readOnly"):
            problem(f"{where}: the local lake root {local} is not mounted writable: {lake_mount}")
        if vol["type"] == "emptyDir":
            if (lake_volume or {}).get("emptyDir", {}).get("sizeLimit") != vol["size"]:
                problem(f"{where}: volume lake is not an emptyDir of {vol['size']}: {lake_volume}")
        else:
            want_claim = vol["existingClaim"] if vol["type"] == "existingClaim" else LAKE_CLAIM[0]
            got_claim = ((lake_volume or {}).get("persistentVolumeClaim") or {}).get("claimName")
            if got_claim != want_claim:
                problem(f"{where}: volume lake claims {got_claim}, want {want_claim}")
    elif lake_mount or lake_volume:
        problem(f"{where}: a lake volume without a local lake root")

    # Restricted security context (pod and container levels together).
    psc, sc = podspec.get("securityContext") or {}, ctr.get("securityContext") or {}

    def eff(key):
        return sc.get(key, psc.get(key))

    for key, want in [("runAsNonRoot", True), ("runAsUser", 10001)]:
        if eff(key) != want:
            problem(f"{where}: securityContext.{key} is {eff(key)!r}, want {want!r}")
    for key, want in [("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)]:
        if sc.get(key) != want:
            problem(f"{where}: container securityContext.{key} is {sc.get(key)!r}")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        problem(f"{where}: capabilities do not drop ALL")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(f"{where}: seccompProfile is not RuntimeDefault")
    if podspec.get("automountServiceAccountToken") is not False and not v["serviceAccount"]["automountToken"]:
        problem(f"{where}: the API token is mounted")
    sa = podspec.get("serviceAccountName")
    want_sa = v["serviceAccount"]["name"] or (sas[0]["metadata"]["name"] if sas else "default")
    if sa != want_sa:
        problem(f"{where}: runs as ServiceAccount {sa}, want {want_sa}")

    # Environment: referenced in the TOML <=> set; secrets from Secrets; no other secret.
    env = {e["name"]: e for e in ctr.get("env", [])}
    if env.get("RUST_LOG", {}).get("value") != v["logLevel"]:
        problem(f"{where}: RUST_LOG is not {v['logLevel']!r}")
    want_env = expected_env(v, comp)
    for var in sorted(refs - set(env)):
        problem(f"{where}: {comp}.toml references ${{{var}}} but the container does not set {var}")
    for var, want in sorted(want_env.items()):
        got = env.get(var) or {}
        if want[0] == "secret":
            ref = (got.get("valueFrom") or {}).get("secretKeyRef") or {}
            if (ref.get("name"), ref.get("key")) != want[1:]:
                problem(f"{where}: {var} is not taken from Secret {want[1]} key {want[2]}: {got}")
        elif want[0] == "field":
            ref = (got.get("valueFrom") or {}).get("fieldRef") or {}
            if ref.get("fieldPath") != want[1]:
                problem(f"{where}: {var} is not the pod's {want[1]}: {got}")
        elif got.get("value") != want[1] or "valueFrom" in got:
            problem(f"{where}: {var} is not the value {want[1]!r}: {got}")
        if var not in refs:
            problem(f"{where}: {var} is set but {comp}.toml does not use it")
    for var, e in env.items():
        if var.startswith("BINLAKE_") and var not in want_env:
            problem(f"{where}: {var} is set but {comp} does not need it")
        if "secretKeyRef" in (e.get("valueFrom") or {}) and var not in want_env:
            problem(f"{where}: {var} comes from a Secret {comp} does not need")


def check_services(by_kind, v, deployments):
    services = by_kind.get("Service", [])
    enabled = enabled_components(v)
    ms = v["metrics"]["service"]
    want = enabled if ms["enabled"] else []
    got = {component_of(s): s for s in services}
    if sorted(got) != sorted(want) or len(services) != len(want):
        problem(f"Services for {sorted(c for c in got if c)}, want {want}")
    for comp, svc in got.items():
        if comp not in deployments:
            continue
        name = svc["metadata"]["name"]
        where = f"Service {name}"
        spec = svc["spec"]
        if name != deployments[comp]["metadata"]["name"]:
            problem(f"{where}: not named like Deployment {deployments[comp]['metadata']['name']}")
        if spec.get("selector") != deployments[comp]["spec"]["selector"]["matchLabels"]:
            problem(f"{where}: selector {spec.get('selector')} is not the {comp} pods'")
        if spec.get("type") != ms["type"]:
            problem(f"{where}: type {spec.get('type')}, want {ms['type']}")
        if spec.get("publishNotReadyAddresses") is not True:
            problem(f"{where}: publishNotReadyAddresses is not true (pods not ready would not be scraped)")
        if spec.get("ports") != [{"name": "http", "port": v["http"]["port"], "targetPort": "http", "protocol": "TCP"}]:
            problem(f"{where}: ports {spec.get('ports')}")
        annotations = svc["metadata"].get("annotations") or {}
        prom = {k: val for k, val in annotations.items() if k.startswith("prometheus.io/")}
        want_prom = (
            {"prometheus.io/scrape": "true", "prometheus.io/port": str(v["http"]["port"]), "prometheus.io/path": "/metrics"}
            if ms["prometheusAnnotations"]
            else {}
        )
        want_prom.update({k: val for k, val in ms["annotations"].items() if k.startswith("prometheus.io/")})
        if prom != want_prom:
            problem(f"{where}: prometheus.io annotations {prom}, want {want_prom}")
        for k, val in ms["annotations"].items():
            if annotations.get(k) != val:
                problem(f"{where}: annotation {k} is not {val!r}")
    return services


def check_service_monitor(by_kind, v, services):
    sms = by_kind.get("ServiceMonitor", [])
    sm_values = v["metrics"]["serviceMonitor"]
    want = 1 if sm_values["enabled"] else 0
    if len(sms) != want:
        problem(f"{len(sms)} ServiceMonitors, want {want}")
    if not sms:
        return
    sm = sms[0]
    where = f"ServiceMonitor {sm['metadata']['name']}"
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        problem(f"{where}: apiVersion {sm['apiVersion']}")
    for k, val in sm_values["labels"].items():
        if labels_of(sm).get(k) != val:
            problem(f"{where}: label {k} is not {val!r}")
    spec = sm["spec"]
    match = spec["selector"].get("matchLabels") or {}
    if "app.kubernetes.io/instance" not in match:
        problem(f"{where}: the selector would select other releases' Services: {match}")
    for svc in services:
        if any(labels_of(svc).get(k) != val for k, val in match.items()):
            problem(f"{where}: does not select Service {svc['metadata']['name']}")
    if (spec.get("namespaceSelector") or {}).get("matchNames") != [NAMESPACE[0]]:
        problem(f"{where}: namespaceSelector is not the release's namespace")
    endpoints = spec.get("endpoints") or []
    if len(endpoints) != 1:
        problem(f"{where}: {len(endpoints)} endpoints, want 1")
        return
    ep = endpoints[0]
    if ep.get("port") != "http" or ep.get("path") != "/metrics":
        problem(f"{where}: endpoint {ep}, want port http path /metrics")
    for key in ["interval", "scrapeTimeout"]:
        if ep.get(key) != (sm_values[key] or None):
            problem(f"{where}: {key} {ep.get(key)!r}, want {sm_values[key]!r}")


def check_hpa(by_kind, v, deployments):
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    m = v["materialize"]
    want = 1 if m["enabled"] and m["autoscaling"]["enabled"] else 0
    if len(hpas) != want:
        problem(f"{len(hpas)} HorizontalPodAutoscalers, want {want}")
    if not hpas or "materialize" not in deployments:
        return
    h, a = hpas[0], m["autoscaling"]
    where = f"HorizontalPodAutoscaler {h['metadata']['name']}"
    if h["apiVersion"] != "autoscaling/v2":
        problem(f"{where}: apiVersion {h['apiVersion']}, want autoscaling/v2")
    target = h["spec"]["scaleTargetRef"]
    want_target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployments["materialize"]["metadata"]["name"]}
    if target != want_target:
        problem(f"{where}: scaleTargetRef {target}, want {want_target}")
    if (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) != (a["minReplicas"], a["maxReplicas"]):
        problem(f"{where}: replicas {h['spec']['minReplicas']}..{h['spec']['maxReplicas']}")
    want_metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a["targetCPUUtilizationPercentage"]}}}]
    if h["spec"].get("metrics") != want_metrics:
        problem(f"{where}: metrics {h['spec'].get('metrics')}, want {want_metrics}")
    if h["spec"].get("behavior") != (a["behavior"] or None):
        problem(f"{where}: behavior {h['spec'].get('behavior')}, want {a['behavior']}")


def check_pdbs(by_kind, v, deployments):
    want = {}
    for comp in enabled_components(v):
        pdb = v[comp].get("podDisruptionBudget") or {}
        if not pdb.get("enabled"):
            continue
        if comp == "materialize" and materialize_workers(v, "min") <= 1:
            continue
        want[comp] = pdb["maxUnavailable"]
    pdbs = by_kind.get("PodDisruptionBudget", [])
    got = {component_of(p): p for p in pdbs}
    if sorted(got) != sorted(want) or len(pdbs) != len(want):
        problem(f"PodDisruptionBudgets for {sorted(c for c in got if c)}, want {sorted(want)}")
    for comp, p in got.items():
        if comp not in want or comp not in deployments:
            continue
        where = f"PodDisruptionBudget {p['metadata']['name']}"
        if p["spec"].get("maxUnavailable") != want[comp]:
            problem(f"{where}: maxUnavailable {p['spec'].get('maxUnavailable')}, want {want[comp]}")
        if p["spec"]["selector"].get("matchLabels") != deployments[comp]["spec"]["selector"]["matchLabels"]:
            problem(f"{where}: does not select exactly the {comp} pods")


def check_pvc(by_kind, v):
    pvcs = by_kind.get("PersistentVolumeClaim", [])
    lake_used = v["materialize"]["enabled"] or v["run"]["enabled"]
    vol = v["lake"]["volume"]
    want = 1 if lake_used and lake_local_path(v) and vol["type"] == "pvc" else 0
    if len(pvcs) != want:
        problem(f"{len(pvcs)} PersistentVolumeClaims, want {want}")
    if not pvcs:
        return
    pvc = pvcs[0]
    where = f"PersistentVolumeClaim {pvc['metadata']['name']}"
    LAKE_CLAIM[0] = pvc["metadata"]["name"]
    spec = pvc["spec"]
    if spec.get("accessModes") != [vol["accessMode"]]:
        problem(f"{where}: accessModes {spec.get('accessModes')}")
    if spec["resources"]["requests"].get("storage") != vol["size"]:
        problem(f"{where}: requests {spec['resources']['requests']}")
    if spec.get("storageClassName") != (vol["storageClassName"] or None):
        problem(f"{where}: storageClassName {spec.get('storageClassName')!r}")
    if (pvc["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") != "keep":
        problem(f"{where}: not kept on uninstall (helm.sh/resource-policy: keep)")


def check_notes(path, v, deployments):
    with open(path, encoding="utf-8") as fh:
        notes = fh.read()
    for comp, d in deployments.items():
        name = d["metadata"]["name"]
        for want in [f"{comp}: Deployment {name}", f"port-forward deployment/{name} ", "/status"]:
            if want not in notes:
                problem(f"NOTES.txt does not say {want!r}")
        if comp != "capture" and f"binlake status --config {CONFIG_DIR}/{comp}.toml" not in notes:
            problem(f"NOTES.txt does not say how to run binlake status in the {comp} pod")
    if not deployments and "Nothing runs" not in notes:
        problem("NOTES.txt does not say that nothing runs")
    local = lake_local_path(v) if (v["materialize"]["enabled"] or v["run"]["enabled"]) else None
    if local and v["lake"]["volume"]["type"] == "emptyDir" and "LOST WITH THE POD" not in notes:
        problem("NOTES.txt does not warn that an emptyDir lake is lost with the pod")


def validate_with_binlake(binary, workdir, comp, toml_text, refs, v):
    path = os.path.join(workdir, f"{comp}.toml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(toml_text)
    dummy = "dummy-secret-Zq8"
    env = dict(os.environ) | {var: dummy for var in refs}
    # Non-secret storage options are set to their values, as the pod does.
    for var, want in expected_env(v, comp).items():
        if want[0] == "value":
            env[var] = want[1]
        elif want[0] == "field":
            env[var] = "binlake-materialize-7d9c-x2x4q"
    run = subprocess.run([binary, "validate", path], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        problem(f"binlake validate {comp}.toml exited {run.returncode}:\n{run.stdout}{run.stderr}\n--- {path}\n{toml_text}")
    elif dummy in run.stdout + run.stderr:
        problem(f"binlake validate {comp}.toml printed a secret value")


DEFAULTS = {}
LAKE_CLAIM = [None]
NAMESPACE = [None]


def main():
    args = sys.argv[1:]
    notes = None
    if args[:1] == ["--notes"]:
        notes, args = args[1], args[2:]
    rendered, binary, workdir, chart_values, *values_files = args
    values = {}
    for f in [chart_values, *values_files]:
        with open(f, encoding="utf-8") as fh:
            values = merge(values, yaml.safe_load(fh) or {})
    with open(chart_values, encoding="utf-8") as fh:
        chart_defaults = yaml.safe_load(fh)
    for comp in COMPONENTS:
        DEFAULTS[comp] = chart_defaults[comp]
    with open(rendered, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        check_labels(d)
    if by_kind.get("Secret"):
        problem("the chart renders a Secret; it must only reference existing ones")
    if by_kind.get("StatefulSet"):
        problem("a StatefulSet is rendered")

    cms = by_kind.get("ConfigMap", [])
    if len(cms) != 1:
        problem(f"{len(cms)} ConfigMaps, want 1")
        return report()
    cm = cms[0]
    NAMESPACE[0] = cm["metadata"]["namespace"]
    data = cm.get("data") or {}
    enabled = enabled_components(values)
    if sorted(data) != sorted(f"{c}.toml" for c in enabled):
        problem(f"the ConfigMap holds {sorted(data)}, want one file per enabled component {enabled}")
        return report()
    parsed = {}
    for comp in enabled:
        try:
            parsed[comp] = tomllib.loads(data[f"{comp}.toml"])
        except tomllib.TOMLDecodeError as e:
            problem(f"{comp}.toml is not valid TOML: {e}\n{data[f'{comp}.toml']}")
            continue
        diff(f"{comp}.toml", "", expected_config(values, comp), parsed[comp])
    if problems:
        return report()

    check_pvc(by_kind, values)
    sas = by_kind.get("ServiceAccount", [])
    if len(sas) != int(bool(values["serviceAccount"]["create"])):
        problem(f"{len(sas)} ServiceAccounts, want {int(bool(values['serviceAccount']['create']))}")
    deployments = {}
    for d in by_kind.get("Deployment", []):
        comp = component_of(d)
        if comp in deployments:
            problem(f"two Deployments of component {comp}")
        deployments[comp] = d
    if sorted(deployments) != sorted(enabled):
        problem(f"Deployments of {sorted(c or '?' for c in deployments)}, want {enabled}")
    all_refs = set()
    for comp in enabled:
        refs = env_refs(parsed[comp])
        all_refs |= refs
        if comp in deployments:
            check_deployment(deployments[comp], values, comp, cm, data[f"{comp}.toml"], refs, sas)
    services = check_services(by_kind, values, deployments)
    check_service_monitor(by_kind, values, services)
    check_hpa(by_kind, values, deployments)
    check_pdbs(by_kind, values, deployments)
    if notes:
        check_notes(notes, values, deployments)

    # binlake itself must accept every file, with the referenced variables set.
    for comp in enabled:
        validate_with_binlake(binary, workdir, comp, data[f"{comp}.toml"], env_refs(parsed[comp]), values)
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    return report(
        f"{kinds}; binlake validate ok: {', '.join(f'{c}.toml' for c in enabled) or 'no files'}; "
        f"${{}} refs: {', '.join(sorted(all_refs)) or 'none'}"
    )


def report(ok_message=""):
    if problems:
        for p in problems:
            print(f"    - {p}")
        return 1
    print(ok_message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
