#!/usr/bin/env python3
"""Write (or, with --check, verify) Chart.lock exactly as `helm dependency update` would.

Helm 3 stores in Chart.lock a digest of the dependencies: "sha256:" + the hex SHA-256 of
Go's `json.Marshal([2][]*chart.Dependency{requested, locked})` (internal/resolver.HashReq).
`helm dependency build` refuses a lock whose digest does not match Chart.yaml, so the digest
must be byte-exact, which means reproducing Go's encoding/json output for chart.Dependency:

  * fields in struct order: name, version, repository, condition, tags, enabled,
    import-values, alias;
  * `repository` and `name` are always written, the others only when non-empty
    (`omitempty`; enabled=false is therefore omitted);
  * compact separators and Go's HTML escaping of <, > and & (plus U+2028/U+2029).

For a `file://` dependency the locked entry is {name, version of the subchart's Chart.yaml,
repository}. The `generated` timestamp is fixed (not "now") so that regenerating the lock
never produces a diff by itself.

Needs PyYAML. Usage: hack/chart-lock.py [--check] [CHART_DIR]
"""

import hashlib
import json
import os
import sys

import yaml

GENERATED = "2026-11-22T00:00:00Z"

# Go struct field order of helm's chart.Dependency, with each field's omitempty flag.
FIELDS = [
    ("name", False),
    ("version", True),
    ("repository", False),
    ("condition", True),
    ("tags", True),
    ("enabled", True),
    ("import-values", True),
    ("alias", True),
]


def go_dependency(dep):
    """The dependency as Go would encode it: ordered keys, empty values dropped."""
    out = {}
    for key, omitempty in FIELDS:
        value = dep.get(key)
        if value is None:
            value = False if key == "enabled" else ([] if key in ("tags", "import-values") else "")
        if omitempty and value in ("", False, [], None):
            continue
        out[key] = value
    return out


def go_json(value):
    """Go's encoding/json.Marshal output for plain data."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def lock_for(chart_dir):
    with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as f:
        chart = yaml.safe_load(f)
    requested = [dict(d) for d in chart.get("dependencies") or []]
    locked = []
    for dep in requested:
        repo = dep.get("repository", "")
        if not repo.startswith("file://"):
            sys.exit(f"chart-lock: only file:// dependencies are supported, not {repo!r}")
        sub_dir = os.path.join(chart_dir, repo[len("file://"):])
        with open(os.path.join(sub_dir, "Chart.yaml"), encoding="utf-8") as f:
            sub = yaml.safe_load(f)
        locked.append({"name": dep["name"], "version": str(sub["version"]), "repository": repo})
    payload = go_json([[go_dependency(d) for d in requested], [go_dependency(d) for d in locked]])
    digest = "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()
    # Same layout as sigs.k8s.io/yaml.Marshal(chart.Lock): keys sorted, timestamp quoted.
    lines = ["dependencies:"]
    for d in locked:
        lines += [f"- name: {d['name']}", f"  repository: {d['repository']}", f"  version: {d['version']}"]
    lines += [f"digest: {digest}", f'generated: "{GENERATED}"', ""]
    return "\n".join(lines), payload


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    check = "--check" in sys.argv[1:]
    chart_dir = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    text, payload = lock_for(chart_dir)
    path = os.path.join(chart_dir, "Chart.lock")
    if check:
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if current != text:
            print(f"chart-lock: {path} is out of date (hashed {payload}); run hack/chart-lock.py",
                  file=sys.stderr)
            return 1
        print("chart-lock: Chart.lock digest matches Chart.yaml")
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"chart-lock: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
