"""Splits one `helm template` output into built-in and custom resources (called by check.sh).

    validate_crds.py RENDERED.yaml CRD_DIR BUILTIN_OUT.yaml

kubernetes-validate knows only the built-in kinds: for any other kind it prints a warning
("Couldn't find schema") and exits 0, which would let a wrong custom resource through. So
the built-in resources are written to BUILTIN_OUT.yaml for kubernetes-validate, and every
other resource is validated here against the openAPIV3Schema of its
CustomResourceDefinition in CRD_DIR (the files in tests/helm/crds/, copied unchanged from
their projects). Validation is strict like `kubernetes-validate --strict`: a field the
schema does not define is an error (the API server would prune it, or refuse it with
strict field validation). A custom kind without a CRD in CRD_DIR is an error.

Prints a summary and exits 0, or prints every problem and exits 1.
"""

import glob
import os
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema with additionalProperties: false wherever properties are listed and
    unknown fields are not explicitly allowed (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crds(crd_dir):
    """(group/version, kind) -> (strict schema, source file)."""
    crds = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path, encoding="utf-8") as fh:
            for doc in yaml.safe_load_all(fh):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    api = f"{spec['group']}/{version['name']}"
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    crds[(api, spec["names"]["kind"])] = (schema, os.path.basename(path))
    return crds


def main():
    rendered, crd_dir, builtin_out = sys.argv[1:]
    crds = load_crds(crd_dir)
    with open(rendered, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    builtin, problems, checked = [], [], []
    for doc in docs:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        group = api.split("/")[0] if "/" in api else ""
        # Built-in API groups: the core group (v1), apps, policy, autoscaling, batch, …
        # (no dot) and *.k8s.io.
        if "." not in group or group.endswith(".k8s.io"):
            builtin.append(doc)
            continue
        name = (doc.get("metadata") or {}).get("name", "?")
        if (api, kind) not in crds:
            problems.append(
                f"{kind} {name} ({api}): no CustomResourceDefinition for it in {crd_dir}"
            )
            continue
        schema, source = crds[(api, kind)]
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            problems.append(f"{kind} {name}: at {where}: {e.message}")
        if not errors:
            checked.append(f"{kind} {name} valid against {source}")
    with open(builtin_out, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(builtin, fh, sort_keys=False)
    if problems:
        for p in problems:
            print(f"    - {p}")
        return 1
    print("; ".join(checked) if checked else "no custom resources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
