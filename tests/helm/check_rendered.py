"""Checks one `helm template` output of the binlake chart (called by check.sh).

    check_rendered.py RENDERED.yaml BINLAKE_BINARY WORKDIR CHART_VALUES [VALUES ...]

- the ConfigMap's binlake.toml parses as TOML and equals, field by field, what the values
  (the chart's values.yaml overlaid with the given files, as Helm merges them) say;
- every ${VAR} it references is set in the capture container from a Secret (and every
  Secret-backed variable is referenced), and no secret value is in the ConfigMap;
- the capture Deployment: one replica, Recreate, checksum/config annotation, the config
  mounted where the args point, --log-format, the restricted securityContext;
- the standard app.kubernetes.io/* labels on every resource, component where it belongs;
- ServiceAccount and PodDisruptionBudget exactly when enabled;
- `binlake validate` accepts the rendered TOML, with the referenced variables set.

Exits 1 with every problem listed, 0 when all hold.
"""

import os
import re
import subprocess
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11: check.sh installs tomli into the venv
    import tomli as tomllib

CONFIG_FILE = "/etc/binlake/binlake.toml"
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]
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


def expected_config(v):
    s, k, c, e = v["source"], v["kafka"], v["capture"]["settings"], v["encoding"]
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
    if s["passwordSecret"]["name"]:
        source["password"] = "${BINLAKE_MYSQL_PASSWORD}"
    if s["start"]:
        source["start"] = s["start"]
    kafka = {"bootstrap_servers": k["bootstrapServers"], "request_timeout": k["requestTimeout"]}
    client = dict(k["client"])
    for item in k["clientSecrets"]:
        client[item["setting"]] = "${%s}" % kafka_env(item["setting"])
    if client:
        kafka["client"] = client
    capture = {
        "partitions": c["partitions"],
        "replication_factor": c["replicationFactor"],
        "tombstones": c["tombstones"],
        "transaction_topic": c["transactionTopic"],
        "max_batch_rows": c["maxBatchRows"],
        "linger": c["linger"],
        "heartbeat_interval": c["heartbeatInterval"],
        "max_message_bytes": c["maxMessageBytes"],
        "transaction_timeout": c["transactionTimeout"],
    }
    if c["deadLetterTopic"]:
        capture["dead_letter_topic"] = c["deadLetterTopic"]
    if c["topicConfigs"]:
        capture["topic_configs"] = c["topicConfigs"]
    return {
        "name": v["name"],
        "source": source,
        "kafka": kafka,
        "capture": capture,
        "snapshot": {
            "mode": v["snapshot"]["mode"],
            "chunk_size": v["snapshot"]["chunkSize"],
        },
        "encoding": {
            "decimal_handling": e["decimalHandling"],
            "bigint_unsigned_handling": e["bigintUnsignedHandling"],
            "schemas": e["schemas"],
        },
    }


def diff(path, want, got):
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                problem(f"binlake.toml: {path}{key} is missing (want {want[key]!r})")
            elif key not in want:
                problem(f"binlake.toml: {path}{key} = {got[key]!r} is not in the values")
            else:
                diff(f"{path}{key}.", want[key], got[key])
    elif want != got or type(want) is not type(got):
        problem(f"binlake.toml: {path.rstrip('.')} = {got!r}, want {want!r}")


def check_labels(doc, component):
    kind, name = doc["kind"], doc["metadata"]["name"]
    labels = doc["metadata"].get("labels") or {}
    for label in STANDARD_LABELS:
        if not labels.get(label):
            problem(f"{kind} {name}: label {label} is missing")
    if labels.get("app.kubernetes.io/part-of") != "binlake":
        problem(f"{kind} {name}: app.kubernetes.io/part-of is not binlake")
    if component and labels.get("app.kubernetes.io/component") != component:
        problem(f"{kind} {name}: app.kubernetes.io/component is not {component}")


def check_deployment(d, v, config_map, refs):
    name = d["metadata"]["name"]
    spec = d["spec"]
    if spec.get("replicas") != 1:
        problem(f"Deployment {name}: replicas {spec.get('replicas')}, want 1")
    if (spec.get("strategy") or {}).get("type") != "Recreate":
        problem(f"Deployment {name}: strategy is not Recreate")
    pod = spec["template"]
    check_labels({"kind": "Deployment (pod template)", "metadata": {"name": name, "labels": pod["metadata"].get("labels")}}, "capture")
    selector = spec["selector"]["matchLabels"]
    for k, val in selector.items():
        if pod["metadata"]["labels"].get(k) != val:
            problem(f"Deployment {name}: selector {k}={val} does not match the pod labels")
    checksum = (pod["metadata"].get("annotations") or {}).get("checksum/config", "")
    if not re.fullmatch(r"[0-9a-f]{64}", checksum):
        problem(f"Deployment {name}: no checksum/config annotation")
    podspec = pod["spec"]
    containers = podspec["containers"]
    if len(containers) != 1:
        problem(f"Deployment {name}: {len(containers)} containers, want 1")
    c = containers[0]
    want_args = ["--log-format", v["logFormat"], "capture", "--config", CONFIG_FILE]
    if c.get("args") != want_args:
        problem(f"Deployment {name}: args {c.get('args')}, want {want_args}")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    volumes = {vol["name"]: vol for vol in podspec.get("volumes", [])}
    cm_volume = (volumes.get("config") or {}).get("configMap", {}).get("name")
    if cm_volume != config_map["metadata"]["name"]:
        problem(f"Deployment {name}: volume config is {cm_volume}, want the ConfigMap")
    if (mounts.get("config") or {}).get("mountPath") != os.path.dirname(CONFIG_FILE):
        problem(f"Deployment {name}: the config is not mounted at {os.path.dirname(CONFIG_FILE)}")

    # Restricted security context (pod and container levels together).
    psc, sc = podspec.get("securityContext") or {}, c.get("securityContext") or {}
    def eff(key):
        return sc.get(key, psc.get(key))
    for key, want in [("runAsNonRoot", True), ("runAsUser", 10001)]:
        if eff(key) != want:
            problem(f"Deployment {name}: securityContext.{key} is {eff(key)!r}, want {want!r}")
    for key, want in [("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)]:
        if sc.get(key) != want:
            problem(f"Deployment {name}: container securityContext.{key} is {sc.get(key)!r}")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        problem(f"Deployment {name}: capabilities do not drop ALL")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(f"Deployment {name}: seccompProfile is not RuntimeDefault")
    if podspec.get("automountServiceAccountToken") is not False and not v["serviceAccount"]["automountToken"]:
        problem(f"Deployment {name}: the API token is mounted")

    # Secret environment: referenced in the TOML <=> injected from a Secret.
    env = {e["name"]: e for e in c.get("env", [])}
    if env.get("RUST_LOG", {}).get("value") != v["logLevel"]:
        problem(f"Deployment {name}: RUST_LOG is not {v['logLevel']!r}")
    want_refs = {}
    if v["source"]["passwordSecret"]["name"]:
        ps = v["source"]["passwordSecret"]
        want_refs["BINLAKE_MYSQL_PASSWORD"] = (ps["name"], ps["key"])
    for item in v["kafka"]["clientSecrets"]:
        want_refs[kafka_env(item["setting"])] = (item["secretName"], item["secretKey"])
    for var in sorted(refs - set(env)):
        problem(f"Deployment {name}: binlake.toml references ${{{var}}} but the container does not set {var}")
    for var, (secret, key) in sorted(want_refs.items()):
        ref = ((env.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if (ref.get("name"), ref.get("key")) != (secret, key):
            problem(f"Deployment {name}: {var} is not taken from Secret {secret} key {key}: {env.get(var)}")
        if var not in refs:
            problem(f"Deployment {name}: {var} is set from a Secret but binlake.toml does not use it")


def main():
    rendered, binary, workdir, *values_files = sys.argv[1:]
    values = {}
    for f in values_files:
        with open(f, encoding="utf-8") as fh:
            values = merge(values, yaml.safe_load(fh) or {})
    with open(rendered, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        component = "capture" if d["kind"] in ("Deployment", "PodDisruptionBudget") else None
        check_labels(d, component)
    if by_kind.get("Secret"):
        problem("the chart renders a Secret; it must only reference existing ones")

    cms = [d for d in by_kind.get("ConfigMap", []) if "binlake.toml" in (d.get("data") or {})]
    if len(cms) != 1:
        problem(f"{len(cms)} ConfigMaps with binlake.toml, want 1")
        return report()
    toml_text = cms[0]["data"]["binlake.toml"]
    try:
        parsed = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        problem(f"binlake.toml is not valid TOML: {e}\n{toml_text}")
        return report()
    diff("", expected_config(values), parsed)

    deployments = by_kind.get("Deployment", [])
    capture = [d for d in deployments if d["metadata"]["labels"].get("app.kubernetes.io/component") == "capture"]
    refs = env_refs(parsed)
    if values["capture"]["enabled"]:
        if len(capture) != 1:
            problem(f"{len(capture)} capture Deployments, want 1")
        else:
            check_deployment(capture[0], values, cms[0], refs)
    if len(deployments) != len(capture):
        problem("a Deployment other than capture is rendered")
    if by_kind.get("StatefulSet"):
        problem("a StatefulSet is rendered")

    want_pdb = values["capture"]["enabled"] and values["capture"]["podDisruptionBudget"]["enabled"]
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if len(pdbs) != int(bool(want_pdb)):
        problem(f"{len(pdbs)} PodDisruptionBudgets, want {int(bool(want_pdb))}")
    sas = by_kind.get("ServiceAccount", [])
    if len(sas) != int(bool(values["serviceAccount"]["create"])):
        problem(f"{len(sas)} ServiceAccounts, want {int(bool(values['serviceAccount']['create']))}")
    if capture:
        sa = capture[0]["spec"]["template"]["spec"].get("serviceAccountName")
        want_sa = values["serviceAccount"]["name"] or (sas[0]["metadata"]["name"] if sas else "default")
        if sa != want_sa:
            problem(f"capture runs as ServiceAccount {sa}, want {want_sa}")

    # binlake itself must accept the file, with the referenced variables set.
    path = os.path.join(workdir, "binlake.toml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(toml_text)
    dummy = "dummy-secret-Zq8"
    env = dict(os.environ) | {var: dummy for var in refs}
    run = subprocess.run([binary, "validate", path], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        problem(f"binlake validate exited {run.returncode}:\n{run.stdout}{run.stderr}\n--- {path}\n{toml_text}")
    elif dummy in run.stdout + run.stderr:
        problem("binlake validate printed a secret value")
    return report(f"{len(docs)} manifests; binlake validate ok; ${{}} refs: {', '.join(sorted(refs)) or 'none'}")


def report(ok_message=""):
    if problems:
        for p in problems:
            print(f"    - {p}")
        return 1
    print(ok_message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
