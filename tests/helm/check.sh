#!/usr/bin/env bash
# Checks the Helm chart in helm/binlake:
#   - helm lint --strict passes for every values file in tests/helm/values/;
#   - helm template renders each of them; every built-in manifest is valid against the
#     Kubernetes 1.30 schemas (kubernetes-validate --strict, offline), and every custom
#     resource (the ServiceMonitor) against its CRD's schema in tests/helm/crds/, as strictly
#     (validate_crds.py; kubernetes-validate only warns about kinds it has no schema for, so
#     such a warning fails the check);
#   - the rendered ConfigMap holds exactly the config files the values say (one per enabled
#     component), every ${VAR} in them is injected from a Secret (or a plain value for
#     non-secret object-store options), each workload has the secrets, probes, volumes,
#     Service, HPA and PodDisruptionBudget it should, NOTES.txt renders and says how to
#     see each component's status, and `binlake validate` accepts every file
#     (check_rendered.py);
#   - the chart refuses its bare defaults (the required values are missing) and every
#     values file in tests/helm/invalid/: helm lint --strict and helm template fail, naming
#     what each file's "# expect:" lines say.
#
# Usage: tests/helm/check.sh [BINLAKE_BINARY]
#   BINLAKE_BINARY defaults to $CARGO_TARGET_DIR/debug/binlake (make test passes it).
#
# Installs what is missing, into ~/.cache/binlake (or $BINLAKE_CACHE; fast when cached):
# helm built from the Go module proxy into bin/, and a Python venv with kubernetes-validate
# from PyPI into venv/. Needs go and python3 the first time; no network afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/tests/helm
chart=$root/helm/binlake
cache=${BINLAKE_CACHE:-$HOME/.cache/binlake}
helm_version=v3.22.0
kv_version=1.37.0   # kubernetes-validate; ships the schemas of Kubernetes 1.30
kube_version=1.30.0
binlake=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/binlake/target}/debug/binlake}

log() { echo "[helm-check] $*" >&2; }
die() { log "error: $*"; exit 1; }

started=$(date +%s)
[[ -x $binlake ]] || die "no binlake binary at $binlake: build it (cargo build --bin binlake) or pass its path"

# --- tools -------------------------------------------------------------------------------
helm=$cache/bin/helm
# A helm built by `go install` reports its version without the patch number (v3.22).
helm_is_wanted() {
    local v
    v=$("$helm" version --template '{{.Version}}' 2>/dev/null) || return 1
    [[ $v == "$helm_version" || $helm_version == "$v".* ]]
}
if [[ ! -x $helm ]] || ! helm_is_wanted; then
    command -v go >/dev/null || die "helm is missing and so is go to build it: install Go (https://go.dev/dl/) or put helm $helm_version at $helm"
    log "installing helm $helm_version into $cache/bin (go install, a few minutes the first time)"
    mkdir -p "$cache/bin"
    GOBIN=$cache/bin go install "helm.sh/helm/v3/cmd/helm@$helm_version" >&2
fi

venv=$cache/venv
kv=$venv/bin/kubernetes-validate
if [[ ! -x $kv ]] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    log "installing kubernetes-validate $kv_version into $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version" >&2
fi
if ! "$venv/bin/python" -c 'import tomllib' 2>/dev/null && ! "$venv/bin/python" -c 'import tomli' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check tomli >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# helm keeps no state between runs. --kube-version everywhere: a helm built with go install
# assumes Kubernetes v1.20 otherwise, and the manifests are validated against $kube_version.
export PYTHONDONTWRITEBYTECODE=1
export HELM_CACHE_HOME=$tmp/helm/cache HELM_CONFIG_HOME=$tmp/helm/config HELM_DATA_HOME=$tmp/helm/data

# --- checks ------------------------------------------------------------------------------
passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "  ok    $*"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "  FAIL  $*"; }

release="binlake-test"
namespace="binlake-test"

# helm template does not render NOTES.txt (helm install does, after the cluster accepted
# the manifests). A copy of the chart renders it as a manifest, so that it is checked too.
notes_chart=$tmp/notes-chart
cp -r "$chart" "$notes_chart"
mv "$notes_chart/templates/NOTES.txt" "$notes_chart/notes.txt"
echo 'notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}' >"$notes_chart/templates/zz-notes.yaml"
render_notes() { # values file, output file
    "$helm" template "$release" "$notes_chart" --kube-version "$kube_version" --namespace "$namespace" \
        -f "$1" --show-only templates/zz-notes.yaml |
        "$venv/bin/python" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(sys.stdin)["notes"])' >"$2"
}

echo "helm chart checks ($("$helm" version --template '{{.Version}}'), kubernetes-validate -k $kube_version --strict, $binlake)"

# Every values file must lint, render, validate against Kubernetes, and give configs
# binlake accepts.
for values in "$here"/values/*.yaml; do
    case_name=values/$(basename "$values")
    out=$tmp/$(basename "$values" .yaml)
    mkdir -p "$out"
    if ! "$helm" lint --strict --kube-version "$kube_version" "$chart" -f "$values" >"$out/lint.log" 2>&1; then
        fail "$case_name: helm lint --strict"
        sed 's/^/        /' "$out/lint.log"
        continue
    fi
    pass "$case_name: helm lint --strict"
    if ! "$helm" template "$release" "$chart" --kube-version "$kube_version" --namespace "$namespace" -f "$values" >"$out/rendered.yaml" 2>"$out/template.log"; then
        fail "$case_name: helm template"
        sed 's/^/        /' "$out/template.log"
        continue
    fi
    # Custom resources against their CRDs; the built-in rest into builtin.yaml.
    if "$venv/bin/python" "$here/validate_crds.py" "$out/rendered.yaml" "$here/crds" "$out/builtin.yaml" >"$out/crds.log" 2>&1; then
        grep -q 'valid against' "$out/crds.log" && pass "$case_name: $(cat "$out/crds.log")"
    else
        fail "$case_name: custom resources against their CRDs"
        cat "$out/crds.log"
    fi
    if "$kv" -k "$kube_version" --strict --quiet "$out/builtin.yaml" >"$out/kv.log" 2>&1 &&
        ! grep -q "Couldn't find schema" "$out/kv.log"; then
        pass "$case_name: $(grep -c '^kind:' "$out/builtin.yaml") built-in manifests valid for Kubernetes $kube_version"
    else
        fail "$case_name: kubernetes-validate"
        sed 's/^/        /' "$out/kv.log"
    fi
    if ! render_notes "$values" "$out/NOTES.txt" 2>"$out/notes.log"; then
        fail "$case_name: NOTES.txt does not render"
        sed 's/^/        /' "$out/notes.log"
        continue
    fi
    if "$venv/bin/python" "$here/check_rendered.py" --notes "$out/NOTES.txt" "$out/rendered.yaml" "$binlake" "$out" \
        "$chart/values.yaml" "$values" >"$out/check.log" 2>&1; then
        pass "$case_name: config, workload and NOTES checks ($(cat "$out/check.log"))"
    else
        fail "$case_name: config, workload and NOTES checks"
        cat "$out/check.log"
    fi
done

# Refused values: helm template must fail (as helm install would), and so must helm lint
# unless the file says "# refused-by: template" (helm lint only logs a template's `fail`
# as INFO; it fails on schema violations). The output must name each "# expect:" string.
# The bare defaults lack every required value.
expect_refused() { # name, values file or "", expected substrings...
    local name=$1 values=$2
    shift 2
    local log args=() lint=true
    log=$tmp/refused-$(basename "$name" .yaml)
    [[ -n $values ]] && args=(-f "$values")
    [[ -n $values ]] && grep -qx '# refused-by: template' "$values" && lint=false
    if "$helm" template "$release" "$chart" --kube-version "$kube_version" "${args[@]}" >"$log.template" 2>&1; then
        fail "$name: helm template succeeded, want a failure"
        return
    fi
    if $lint && "$helm" lint --strict --kube-version "$kube_version" "$chart" "${args[@]}" >"$log.lint" 2>&1; then
        fail "$name: helm lint passed, want a failure"
        return
    fi
    local missing=()
    for want in "$@"; do
        grep -qF -- "$want" "$log".* || missing+=("$want")
    done
    if ((${#missing[@]})); then
        fail "$name: refused without naming: ${missing[*]}"
        cat "$log".* | sed 's/^/        /'
    else
        pass "$name: refused by $($lint && echo 'helm lint and ')helm template, naming: $(printf '"%s" ' "$@")"
    fi
}
expect_refused "defaults (no required values)" "" \
    "missing property 'name'" "missing properties 'host', 'user'" "missing property 'bootstrapServers'"
for values in "$here"/invalid/*.yaml; do
    mapfile -t expects < <(sed -n 's/^# expect: //p' "$values")
    ((${#expects[@]})) || { fail "invalid/$(basename "$values"): no '# expect:' line"; continue; }
    expect_refused "invalid/$(basename "$values")" "$values" "${expects[@]}"
done

elapsed=$(($(date +%s) - started))
if ((failed)); then
    echo "helm chart: $failed FAILED, $passed passed (${elapsed}s): ${failures[*]}"
    exit 1
fi
echo "helm chart: all $passed checks passed (${elapsed}s)"
