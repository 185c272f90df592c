#!/usr/bin/env python3
"""Checks of the Helm chart at the repository root, without a helm binary.

Called by hack/chart-check.sh, which installs the tools and builds hack/render-chart (a Go
emulation of `helm template`). For each scenario of values it checks that:

  * the chart renders, twice with byte-identical output (GitOps tools must see no drift);
  * every document is YAML without duplicate keys and has apiVersion, kind and metadata.name,
    namespaced objects in the release namespace;
  * every built-in kind validates strictly against the Kubernetes 1.29 and 1.36 OpenAPI
    schemas (kubernetes-validate); cert-manager and Prometheus Operator objects get
    structural checks;
  * the invariants between objects and the operator's config hold (Service and webhook
    configuration names, certificate wiring, RBAC names, ports, probes, security context).

It also checks values.schema.json (Draft 7 meta-schema, values.yaml valid, config keys equal
to the settings in src/config.rs, bad values rejected), Chart.lock's digest, the rendered CRD
against charts/crds, and which files `helm package .` would include and how big the archive
would be; and that webhook-certs/ makes a certificate that verifies and webhook
configurations that validate.
"""

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCENARIO_DIR = os.path.join(ROOT, "hack", "chart-scenarios")
KUBE_VERSIONS = ["1.29.0", "1.36.0"]
MAX_PACKAGE_BYTES = 100 * 1024

CLUSTER_SCOPED = {
    "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Namespace",
}
# Kinds whose schemas are not part of Kubernetes; checked structurally below.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name}: {detail}" if detail else name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate keys, which Kubernetes' strict decoding refuses."""


def _construct_unique_mapping(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                _construct_unique_mapping)


class Renderer:
    def __init__(self, binary):
        self.binary = binary

    def run(self, args, notes=None):
        cmd = [self.binary] + list(args)
        if notes:
            cmd += ["--notes", notes]
        proc = subprocess.run(cmd + [ROOT], capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr


def split_documents(text):
    """(source, object) for every document of `helm template`-style output."""
    docs = []
    for chunk in re.split(r"(?m)^---\n", text):
        if not chunk.strip():
            continue
        match = re.match(r"# Source: (\S+)\n", chunk)
        source = match.group(1) if match else "?"
        docs.append((source, yaml.load(chunk, Loader=UniqueKeyLoader)))
    return docs


def find(docs, kind, name=None):
    return [o for _, o in docs if o and o.get("kind") == kind
            and (name is None or o["metadata"]["name"] == name)]


def one(report, docs, kind, name=None, scenario=""):
    found = find(docs, kind, name)
    report.check(f"{scenario}: exactly one {kind}" + (f" {name}" if name else ""),
                 len(found) == 1, f"found {len(found)}")
    return found[0] if found else {}


def contains_key(obj, key):
    if isinstance(obj, dict):
        return key in obj or any(contains_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(contains_key(v, key) for v in obj)
    return False


def settings_fields():
    """camelCase names of the fields of `pub struct Settings` in src/config.rs."""
    text = open(os.path.join(ROOT, "src", "config.rs"), encoding="utf-8").read()
    body = re.search(r"pub struct Settings \{(.*?)\n\}", text, re.S).group(1)
    names = re.findall(r"^\s*pub (\w+):", body, re.M)
    return [re.sub(r"_(\w)", lambda m: m.group(1).upper(), n) for n in names]


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


# --- per-scenario checks ---------------------------------------------------------------------

def check_documents(report, scenario, docs, namespace):
    for source, obj in docs:
        where = f"{scenario}: {source}"
        if not report.check(f"{where}: is a mapping", isinstance(obj, dict)):
            continue
        meta = obj.get("metadata") or {}
        report.check(f"{where}: apiVersion, kind, metadata.name",
                     bool(obj.get("apiVersion")) and bool(obj.get("kind")) and bool(meta.get("name")))
        name = str(meta.get("name", ""))
        report.check(f"{where}: name {name} is a DNS subdomain",
                     len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) is not None)
        if obj.get("kind") in CLUSTER_SCOPED:
            report.check(f"{where}: cluster-scoped without namespace", "namespace" not in meta)
        else:
            report.check(f"{where}: in the release namespace", meta.get("namespace") == namespace,
                         f"namespace {meta.get('namespace')!r}")
        labels = meta.get("labels") or {}
        if obj.get("kind") != "CustomResourceDefinition":
            report.check(f"{where}: standard labels",
                         labels.get("app.kubernetes.io/managed-by") == "Helm"
                         and "app.kubernetes.io/instance" in labels and "helm.sh/chart" in labels)
        report.check(f"{where}: no caBundle (the operator or cert-manager injects it)",
                     not contains_key(obj, "caBundle"))


def check_kubernetes_schemas(report, scenario, docs):
    for source, obj in docs:
        if not isinstance(obj, dict):
            continue
        key = (obj.get("apiVersion"), obj.get("kind"))
        name = f"{scenario}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if key in CUSTOM_KINDS:
            check_custom_kind(report, name, obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
                report.check(f"{name}: valid for Kubernetes {version}", True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                report.check(f"{name}: valid for Kubernetes {version}", False, f"{path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                report.check(f"{name}: has a Kubernetes {version} schema", False, str(e))


def check_custom_kind(report, name, obj):
    spec = obj.get("spec") or {}
    kind = obj["kind"]
    if kind == "Certificate":
        ok = (isinstance(spec.get("secretName"), str) and spec.get("dnsNames")
              and isinstance(spec.get("issuerRef"), dict) and spec["issuerRef"].get("name")
              and set(spec) <= {"secretName", "secretTemplate", "commonName", "dnsNames", "duration",
                                "renewBefore", "privateKey", "usages", "issuerRef"})
        report.check(f"{name}: Certificate structure", bool(ok), json.dumps(spec)[:300])
    elif kind == "Issuer":
        report.check(f"{name}: Issuer structure", spec == {"selfSigned": {}}, json.dumps(spec))
    elif kind == "ServiceMonitor":
        endpoints = spec.get("endpoints") or []
        ok = (endpoints and all(e.get("port") and e.get("scheme") in ("http", "https") for e in endpoints)
              and (spec.get("selector") or {}).get("matchLabels")
              and set(spec) <= {"namespaceSelector", "selector", "endpoints"})
        report.check(f"{name}: ServiceMonitor structure", bool(ok), json.dumps(spec)[:300])


def check_invariants(report, scenario, docs, values, namespace, crd_text):
    s = scenario
    cm = one(report, docs, "ConfigMap", scenario=s)
    config = yaml.safe_load((cm.get("data") or {}).get("config.yaml", "")) or {}
    fields = settings_fields()
    report.check(f"{s}: config.yaml keys are settings of src/config.rs",
                 set(config) <= set(fields), str(set(config) - set(fields)))
    report.check(f"{s}: operatorNamespace and podName come from the downward API",
                 "operatorNamespace" not in config and "podName" not in config)
    webhook_enabled = values["config"]["webhookEnabled"]
    cert_manager = values["webhook"]["certManager"]["enabled"]

    dep = one(report, docs, "Deployment", scenario=s)
    pod = dep.get("spec", {}).get("template", {})
    pod_labels = pod.get("metadata", {}).get("labels", {})
    report.check(f"{s}: Deployment selector matches its pods",
                 selector_matches(dep["spec"]["selector"]["matchLabels"], pod_labels))
    report.check(f"{s}: replicas", dep["spec"]["replicas"] == values["replicaCount"])
    report.check(f"{s}: config checksum annotation",
                 re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"].get("checksum/config", "")) is not None)
    spec = pod["spec"]
    container = spec["containers"][0]
    report.check(f"{s}: args run --config", container["args"][:3] == ["run", "--config", "/etc/kube-changejob/config.yaml"],
                 str(container["args"]))
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    report.check(f"{s}: config mounted from the ConfigMap",
                 mounts.get("config", {}).get("mountPath") == "/etc/kube-changejob"
                 and volumes.get("config", {}).get("configMap", {}).get("name") == cm["metadata"]["name"])
    report.check(f"{s}: emptyDir at /tmp", mounts.get("tmp", {}).get("mountPath") == "/tmp"
                 and "emptyDir" in volumes.get("tmp", {}))
    env = {e["name"]: e for e in container.get("env", [])}
    report.check(f"{s}: POD_NAME and POD_NAMESPACE from the downward API",
                 env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
                 and env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    report.check(f"{s}: metrics port follows metricsBindAddress",
                 str(ports.get("metrics")) == config["metricsBindAddress"].rsplit(":", 1)[1])
    if webhook_enabled:
        report.check(f"{s}: webhook port follows webhookBindAddress",
                     str(ports.get("webhook")) == config["webhookBindAddress"].rsplit(":", 1)[1])
    scheme = "HTTPS" if config["metricsSecure"] else "HTTP"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        report.check(f"{s}: {probe} {path} on metrics over {scheme}",
                     get.get("path") == path and get.get("port") == "metrics" and get.get("scheme") == scheme, str(get))
    csc, psc = container.get("securityContext", {}), spec.get("securityContext", {})
    report.check(f"{s}: container security context",
                 csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532 and csc.get("runAsGroup") == 65532
                 and csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
                 and csc.get("capabilities", {}).get("drop") == ["ALL"]
                 and csc.get("seccompProfile", {}).get("type") == "RuntimeDefault", json.dumps(csc))
    report.check(f"{s}: pod security context",
                 psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532
                 and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", json.dumps(psc))
    report.check(f"{s}: terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds") == 30)

    # Services select the operator pods; the webhook Service is the one named in the config.
    for svc in find(docs, "Service"):
        report.check(f"{s}: Service {svc['metadata']['name']} selects the pods",
                     selector_matches(svc["spec"]["selector"], pod_labels))
    service_name = config.get("webhookServiceName")
    mutating = config.get("mutatingWebhookConfiguration")
    validating = config.get("validatingWebhookConfiguration")
    if webhook_enabled:
        svc = one(report, docs, "Service", service_name, scenario=s)
        svc_port = svc.get("spec", {}).get("ports", [{}])[0]
        report.check(f"{s}: webhook Service {service_name} 443 -> webhook",
                     svc_port.get("port") == values["webhook"]["servicePort"] and svc_port.get("targetPort") == "webhook")
        for kind, name, path in (("MutatingWebhookConfiguration", mutating, "/mutate"),
                                 ("ValidatingWebhookConfiguration", validating, "/validate")):
            conf = one(report, docs, kind, name, scenario=s)
            hooks = conf.get("webhooks", [])
            report.check(f"{s}: {kind} has one webhook", len(hooks) == 1)
            for hook in hooks:
                ref = hook["clientConfig"].get("service", {})
                report.check(f"{s}: {kind} calls {service_name}{path}",
                             ref == {"name": service_name, "namespace": namespace, "port": values["webhook"]["servicePort"], "path": path},
                             str(ref))
                report.check(f"{s}: {kind} rules cover only changetriggeredjobs CREATE/UPDATE",
                             hook["rules"] == [{"apiGroups": ["triggers.changejob.dev"], "apiVersions": ["v1alpha"],
                                                "operations": ["CREATE", "UPDATE"], "resources": ["changetriggeredjobs"],
                                                "scope": "Namespaced"}], str(hook["rules"]))
                report.check(f"{s}: {kind} policies",
                             hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
                             and hook["matchPolicy"] == "Equivalent"
                             and hook["failurePolicy"] == values["webhook"]["failurePolicy"]
                             and hook["timeoutSeconds"] == values["webhook"]["timeoutSeconds"]
                             and (kind != "MutatingWebhookConfiguration" or hook.get("reinvocationPolicy") == "Never"))
            annotation = (conf.get("metadata", {}).get("annotations") or {}).get("cert-manager.io/inject-ca-from")
            if cert_manager:
                cert = one(report, docs, "Certificate", scenario=s)
                report.check(f"{s}: {kind} injects the CA of the Certificate",
                             annotation == f"{namespace}/{cert.get('metadata', {}).get('name')}", str(annotation))
            else:
                report.check(f"{s}: {kind} has no cert-manager annotation", annotation is None)
    else:
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Certificate", "Issuer"):
            report.check(f"{s}: no {kind} without the webhook", not find(docs, kind))

    # Certificates: cert-manager mode mounts its Secret where the operator reads files.
    if webhook_enabled and cert_manager:
        report.check(f"{s}: cert mode files", config.get("webhookCertMode") == "files")
        cert = one(report, docs, "Certificate", scenario=s)
        cspec = cert.get("spec", {})
        report.check(f"{s}: Certificate writes config.webhookCertSecret",
                     cspec.get("secretName") == config.get("webhookCertSecret"))
        report.check(f"{s}: Certificate names the webhook Service",
                     f"{service_name}.{namespace}.svc" in cspec.get("dnsNames", []), str(cspec.get("dnsNames")))
        report.check(f"{s}: the Secret is mounted at config.webhookCertDir",
                     mounts.get("webhook-cert", {}).get("mountPath") == config.get("webhookCertDir")
                     and volumes.get("webhook-cert", {}).get("secret", {}).get("secretName") == config.get("webhookCertSecret"))
        issuers = find(docs, "Issuer")
        if values["webhook"]["certManager"]["issuerRef"]:
            report.check(f"{s}: no Issuer with an external issuerRef", not issuers)
        else:
            report.check(f"{s}: Certificate uses the chart's self-signed Issuer",
                         len(issuers) == 1 and cspec.get("issuerRef", {}).get("name") == issuers[0]["metadata"]["name"])
    else:
        report.check(f"{s}: cert mode self-managed", config.get("webhookCertMode") == "self-managed")
        report.check(f"{s}: no certificate volume", "webhook-cert" not in volumes)
        report.check(f"{s}: no cert-manager objects", not find(docs, "Certificate") and not find(docs, "Issuer"))

    # RBAC.
    sa_name = spec.get("serviceAccountName")
    if values["serviceAccount"]["create"]:
        one(report, docs, "ServiceAccount", sa_name, scenario=s)
    if values["rbac"]["create"]:
        full = dep["metadata"]["name"]
        role = one(report, docs, "ClusterRole", f"{full}-manager-role", scenario=s)
        rules = role.get("rules", [])

        def granted(group, resource, verb, name=None):
            return any((group in r.get("apiGroups", []) or "*" in r.get("apiGroups", []))
                       and (resource in r.get("resources", []) or ("*" in r.get("resources", []) and "/" not in resource))
                       and verb in r.get("verbs", [])
                       and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)

        needed = [("triggers.changejob.dev", "changetriggeredjobs", v) for v in ("get", "list", "watch", "patch", "update")]
        needed += [("triggers.changejob.dev", "changetriggeredjobs/status", v) for v in ("get", "patch", "update")]
        needed += [("triggers.changejob.dev", "changetriggeredjobs/finalizers", "update")]
        needed += [("batch", "jobs", v) for v in ("get", "list", "watch", "create", "delete", "patch")]
        needed += [(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch", "update")]
        needed += [("authorization.k8s.io", "subjectaccessreviews", "create"),
                   ("authentication.k8s.io", "tokenreviews", "create")]
        for g, r, v in needed:
            report.check(f"{s}: ClusterRole grants {v} {r}", granted(g, r, v))
        report.check(f"{s}: ClusterRole may not create or delete changetriggeredjobs",
                     not granted("triggers.changejob.dev", "changetriggeredjobs", "create")
                     and not granted("triggers.changejob.dev", "changetriggeredjobs", "delete"))
        for res, name in (("mutatingwebhookconfigurations", mutating), ("validatingwebhookconfigurations", validating)):
            report.check(f"{s}: patch {res} limited to {name}",
                         granted("admissionregistration.k8s.io", res, "patch", name)
                         and not granted("admissionregistration.k8s.io", res, "patch", "someone-elses"))
        for rule in values["rbac"]["watchedResources"]:
            report.check(f"{s}: watched resources rule present", rule in rules, str(rule))
        write_verbs = {"create", "update", "patch", "delete", "deletecollection", "*"}
        for rule in rules:
            if "*" in rule.get("resources", []):
                report.check(f"{s}: wildcard rule is read-only", not (set(rule["verbs"]) & write_verbs), str(rule))
        binding = one(report, docs, "ClusterRoleBinding", f"{full}-manager-rolebinding", scenario=s)
        report.check(f"{s}: ClusterRoleBinding binds the ServiceAccount",
                     binding.get("subjects") == [{"kind": "ServiceAccount", "name": sa_name, "namespace": namespace}]
                     and binding.get("roleRef", {}).get("name") == f"{full}-manager-role")
        nsrole = one(report, docs, "Role", full, scenario=s)
        nsrules = nsrole.get("rules", [])
        secret_rules = [r for r in nsrules if r.get("resources") == ["secrets"]]
        create_rule = [r for r in secret_rules if r["verbs"] == ["create"]]
        named_rule = [r for r in secret_rules if r.get("resourceNames")]
        expected = {config["fingerprintKeySecret"]}
        if webhook_enabled and not cert_manager:
            expected.add(config["webhookCertSecret"])
        report.check(f"{s}: Role creates Secrets (create cannot be limited by name)",
                     len(create_rule) == 1 and "resourceNames" not in create_rule[0])
        report.check(f"{s}: Role reads and updates only the operator's Secrets",
                     len(named_rule) == 1 and set(named_rule[0]["resourceNames"]) == expected
                     and set(named_rule[0]["verbs"]) == {"get", "list", "watch", "update", "patch"},
                     str(named_rule))
        report.check(f"{s}: Role grants leases",
                     any(r.get("resources") == ["leases"] and {"get", "create", "update"} <= set(r["verbs"]) for r in nsrules))
        rb = one(report, docs, "RoleBinding", full, scenario=s)
        report.check(f"{s}: RoleBinding binds the ServiceAccount",
                     rb.get("subjects") == [{"kind": "ServiceAccount", "name": sa_name, "namespace": namespace}])
        aggregated = {r["metadata"]["name"]: r for r in find(docs, "ClusterRole")
                      if any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"].get("labels", {}))}
        if values["rbac"]["aggregateToDefaultRoles"]:
            for level in ("admin", "edit", "view"):
                role = aggregated.get(f"{full}-{level}", {})
                labels = role.get("metadata", {}).get("labels", {})
                verbs = {v for r in role.get("rules", []) if "changetriggeredjobs" in r["resources"] for v in r["verbs"]}
                ok = labels.get(f"rbac.authorization.k8s.io/aggregate-to-{level}") == "true"
                ok = ok and (verbs == {"get", "list", "watch"} if level == "view" else {"create", "delete", "patch"} <= verbs)
                report.check(f"{s}: aggregated {level} role", ok, str(verbs))
        else:
            report.check(f"{s}: no aggregated roles", not aggregated)

    # Optional objects.
    pdb = find(docs, "PodDisruptionBudget")
    report.check(f"{s}: PodDisruptionBudget iff enabled", bool(pdb) == values["podDisruptionBudget"]["enabled"])
    for p in pdb:
        report.check(f"{s}: PDB selects the pods", selector_matches(p["spec"]["selector"]["matchLabels"], pod_labels))
    netpol = find(docs, "NetworkPolicy")
    report.check(f"{s}: NetworkPolicy iff enabled", bool(netpol) == values["networkPolicy"]["enabled"])
    for n in netpol:
        report.check(f"{s}: NetworkPolicy selects the pods",
                     selector_matches(n["spec"]["podSelector"]["matchLabels"], pod_labels))
        ingress_ports = [p.get("port") for r in n["spec"].get("ingress") or [] for p in r.get("ports", [])]
        report.check(f"{s}: NetworkPolicy admits the webhook port from anywhere",
                     not webhook_enabled or any(r.get("ports") == [{"port": "webhook", "protocol": "TCP"}] and "from" not in r
                                                for r in n["spec"]["ingress"]), str(ingress_ports))
        report.check(f"{s}: NetworkPolicy allows egress to the API server",
                     any({p["port"] for p in r.get("ports", [])} == set(values["networkPolicy"]["apiServer"]["ports"])
                         for r in n["spec"].get("egress") or []))
    monitors = find(docs, "ServiceMonitor")
    report.check(f"{s}: ServiceMonitor iff enabled", bool(monitors) == values["metrics"]["serviceMonitor"]["enabled"])
    metrics_svc = find(docs, "Service", f"{dep['metadata']['name']}-metrics")
    for m in monitors:
        endpoint = m["spec"]["endpoints"][0]
        report.check(f"{s}: ServiceMonitor scheme follows metricsSecure",
                     endpoint["scheme"] == ("https" if config["metricsSecure"] else "http")
                     and (not config["metricsSecure"] or endpoint.get("tlsConfig", {}).get("insecureSkipVerify") is True))
        report.check(f"{s}: ServiceMonitor selects the metrics Service",
                     bool(metrics_svc) and selector_matches(m["spec"]["selector"]["matchLabels"], metrics_svc[0]["metadata"]["labels"])
                     and not selector_matches(m["spec"]["selector"]["matchLabels"],
                                              (find(docs, "Service", service_name) or [{"metadata": {"labels": {}}}])[0]["metadata"]["labels"]))

    # The CRD comes verbatim from charts/crds, only when enabled, and is kept on uninstall.
    crds = find(docs, "CustomResourceDefinition")
    report.check(f"{s}: CRD iff crds.enabled", bool(crds) == values["crds"]["enabled"])
    for crd in crds:
        report.check(f"{s}: CRD is identical to charts/crds", crd == yaml.safe_load(crd_text))
        report.check(f"{s}: CRD has helm.sh/resource-policy: keep",
                     crd["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep")


def effective_values(args):
    """values.yaml overlaid with the scenario's -f files and --set (the simple forms used here)."""
    values = yaml.safe_load(open(os.path.join(ROOT, "values.yaml"), encoding="utf-8"))

    def merge(a, b):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v
    it = iter(args)
    for a in it:
        if a == "-f":
            merge(values, yaml.safe_load(open(next(it), encoding="utf-8")) or {})
        elif a == "--set":
            key, val = next(it).split("=", 1)
            cur = values
            parts = key.split(".")
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = {"true": True, "false": False}.get(val, val)
    return values


SCENARIOS = [
    ("default", []),
    ("cert-manager", ["-f", os.path.join(SCENARIO_DIR, "cert-manager.yaml")]),
    ("observability", ["-f", os.path.join(SCENARIO_DIR, "observability.yaml")]),
    ("crds-disabled", ["--set", "crds.enabled=false"]),
    ("webhook-disabled", ["-f", os.path.join(SCENARIO_DIR, "webhook-disabled.yaml")]),
    ("customized", ["-f", os.path.join(SCENARIO_DIR, "customized.yaml"), "--name", "platform", "--namespace", "ops"]),
    ("other-release", ["--name", "ctj-staging", "--namespace", "staging-tools"]),
]

# Values that must be rejected, with a fragment of the expected message.
BAD_VALUES = [
    (["--set", "replicaCount=0"], "replicaCount"),
    (["--set", "unknownKey=1"], "unknownKey"),
    (["--set", "config.pollIntervall=30s"], "pollIntervall"),
    (["--set", "config.pollInterval=soon"], "pollInterval"),
    (["--set", "config.logFormat=xml"], "logFormat"),
    (["--set", "config.operatorNamespace=elsewhere"], "operatorNamespace"),
    (["--set", "config.webhookBindAddress=localhost:9443"], "webhookBindAddress"),
    (["--set", "config.webhookCertMode=files"], "contradicts webhook.certManager.enabled"),
    (["--set", "config.apiQps=100,config.apiBurst=10"], "apiBurst"),
    (["--set", "config.leaderElection=false"], "leaderElection"),
    (["--set", "webhook.failurePolicy=Sometimes"], "failurePolicy"),
    (["--set", "webhook.timeoutSeconds=31"], "timeoutSeconds"),
    (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    (["--set", "podAntiAffinity=maybe"], "podAntiAffinity"),
    (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
    (["--set", "podLabels.app\\.kubernetes\\.io/name=other"], "podLabels"),
    (["-f", "@watched-write"], "watchedResources"),
    (["--kube-version", "1.20.0"], "incompatible with Kubernetes"),
]


def check_bad_values(report, renderer, tmp):
    watched_write = os.path.join(tmp, "watched-write.yaml")
    with open(watched_write, "w") as f:
        f.write("rbac:\n  watchedResources:\n    - apiGroups: ['']\n      resources: [secrets]\n      verbs: [get, create]\n")
    for args, fragment in BAD_VALUES:
        args = [watched_write if a == "@watched-write" else a for a in args]
        rc, _, err = renderer.run(args)
        report.check(f"rejects {' '.join(args[-1:])}", rc != 0 and fragment in err,
                     f"rc={rc}, stderr={err.strip()[:300]}")


def check_schema(report):
    schema = json.load(open(os.path.join(ROOT, "values.schema.json"), encoding="utf-8"))
    values = yaml.safe_load(open(os.path.join(ROOT, "values.yaml"), encoding="utf-8"))
    try:
        jsonschema.Draft7Validator.check_schema(schema)
        report.check("values.schema.json is a valid Draft 7 schema", True)
    except jsonschema.SchemaError as e:
        report.check("values.schema.json is a valid Draft 7 schema", False, e.message)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(values)]
    report.check("values.yaml is valid against values.schema.json (Python jsonschema)", not errors, "; ".join(errors))
    fields = settings_fields()
    report.check("values.yaml config keys are exactly the settings of src/config.rs",
                 list(values["config"]) == fields, f"{list(values['config'])} vs {fields}")
    report.check("values.schema.json config properties are exactly the settings",
                 list(schema["properties"]["config"]["properties"]) == fields)

    def strict_objects(node, path="#"):
        """Objects the chart owns (with explicit properties) must reject unknown keys."""
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                report.check(f"schema {path} has additionalProperties: false", node.get("additionalProperties") is False)
            for k, v in node.items():
                strict_objects(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                strict_objects(v, f"{path}/{i}")
    strict_objects(schema)

    # Every key of values.yaml is documented: a "# --" comment right above it or above one of
    # its ancestors (for values that are Kubernetes objects, e.g. resources). Plain sections
    # (a key with nothing after the colon) need no comment of their own.
    lines = open(os.path.join(ROOT, "values.yaml"), encoding="utf-8").read().splitlines()
    undocumented, stack = [], []  # stack: (indent, documented)
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(- )?([A-Za-z][\w.-]*):(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent = len(m.group(1)) + (2 if m.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and lines[j].strip() == "":
            j -= 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# -- "):
            j -= 1
        own = j >= 0 and lines[j].strip().startswith("# -- ") and (j == i - 1 or all(
            lines[k].strip().startswith("#") for k in range(j, i)))
        documented = own or any(d for _, d in stack)
        is_section = m.group(4).strip() == ""
        if not documented and not is_section:
            undocumented.append(m.group(3))
        stack.append((indent, documented))
    report.check("every key of values.yaml is documented", not undocumented, str(undocumented))


def check_lock(report, renderer):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "hack", "chart-lock.py"), "--check", ROOT],
                          capture_output=True, text=True)
    report.check("Chart.lock is what hack/chart-lock.py writes", proc.returncode == 0, proc.stderr.strip())
    proc = subprocess.run([renderer.binary, "--lock-digest", ROOT], capture_output=True, text=True)
    lock = yaml.safe_load(open(os.path.join(ROOT, "Chart.lock"), encoding="utf-8"))
    report.check("Chart.lock digest equals helm's HashReq (Go json.Marshal of chart.Dependency)",
                 proc.returncode == 0 and proc.stdout.strip() == lock["digest"], f"{proc.stdout.strip()} vs {lock['digest']}")


def package_files(renderer, chart_dir):
    proc = subprocess.run([renderer.binary, "--package-files", chart_dir], capture_output=True, text=True, check=True)
    files = []
    for line in proc.stdout.splitlines():
        size, name = line.split("\t", 1)
        files.append((name, int(size)))
    return files


FORBIDDEN = re.compile(r"^(src|target|e2e|docs|tests|benches|examples|hack|webhook-certs|\.ci|\.github|\.git|\.cargo)(/|$)"
                       r"|(^|/)(Cargo\.(toml|lock)|Dockerfile|\.dockerignore|\.gitignore)$|\.tgz$")


def check_package(report, renderer, tmp):
    files = package_files(renderer, ROOT)
    names = [n for n, _ in files]
    bad = [n for n in names if FORBIDDEN.search(n) or (n.endswith(".md") and os.path.basename(n) != "README.md")]
    report.check("helm package leaves out everything but the chart", not bad, str(bad))
    for required in ("Chart.yaml", "Chart.lock", "values.yaml", "values.schema.json", "templates/_helpers.tpl",
                     "templates/deployment.yaml", "templates/NOTES.txt", "charts/crds/Chart.yaml",
                     "charts/crds/templates/changetriggeredjobs.yaml"):
        report.check(f"package contains {required}", required in names)
    # Build the archive as `helm package` would (gzip'd tar under "<chart>/") to measure it.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, _ in files:
            data = open(os.path.join(ROOT, name), "rb").read()
            info = tarfile.TarInfo(f"kube-changejob/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    size = len(buf.getvalue())
    raw = sum(s for _, s in files)
    report.check(f"package is small ({size} bytes compressed, {raw} raw, {len(files)} files)",
                 size <= MAX_PACKAGE_BYTES, f"limit {MAX_PACKAGE_BYTES}")
    # The same .helmignore on a tree with everything the repository may grow.
    tree = os.path.join(tmp, "tree")
    probe_paths = {
        "Chart.yaml": True, "values.yaml": True, "README.md": True, "LICENSE": True,
        "templates/x.yaml": True, "templates/.hidden.yaml": False, "charts/crds/README.md": True,
        "charts/crds/templates/crd.yaml": True, "charts/crds-0.1.0.tgz": False, "kube-changejob-0.1.0.tgz": False,
        "src/main.rs": False, "target/release/kube-changejob": False, "e2e/run.sh": False, "docs/x.md": False,
        "tests/t.rs": False, "benches/b.rs": False, "hack/x.sh": False, "webhook-certs/out/tls.key": False,
        ".ci/run": False, ".github/workflows/release.yml": False, ".git": False, "Cargo.toml": False,
        "Cargo.lock": False, "Dockerfile": False, ".dockerignore": False, "CHANGELOG.md": False,
        "CONTRIBUTING.md": False, "README-dev.md": False, "SECURITY.md": False, "readme.md": False,
        "templates/notes.md": False,
    }
    for rel in probe_paths:
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("x\n")
    with open(os.path.join(tree, ".helmignore"), "w") as f:
        f.write(open(os.path.join(ROOT, ".helmignore")).read())
    kept = {n for n, _ in package_files(renderer, tree)}
    for rel, keep in probe_paths.items():
        report.check(f".helmignore {'keeps' if keep else 'drops'} {rel}", (rel in kept) == keep)
    return size, raw, len(files)


def check_dev_certificates(report, tmp):
    """webhook-certs/: generate.sh makes a verifiable certificate, render.sh valid configurations."""
    out = os.path.join(tmp, "dev-certs")
    env = dict(os.environ, OUT=out, EXTRA_SANS="IP:172.18.0.1")
    gen = subprocess.run(["bash", os.path.join(ROOT, "webhook-certs", "generate.sh")], env=env,
                         capture_output=True, text=True)
    if not report.check("webhook-certs/generate.sh runs", gen.returncode == 0, gen.stderr.strip()):
        return
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", os.path.join(out, "ca.crt"),
                             os.path.join(out, "tls.crt")], capture_output=True, text=True)
    report.check("generated serving certificate verifies against the generated CA", verify.returncode == 0,
                 verify.stdout + verify.stderr)
    san = subprocess.run(["openssl", "x509", "-in", os.path.join(out, "tls.crt"), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True).stdout
    report.check("serving certificate names localhost, host.docker.internal, 127.0.0.1 and EXTRA_SANS",
                 all(x in san for x in ("DNS:localhost", "DNS:host.docker.internal", "IP Address:127.0.0.1",
                                        "IP Address:172.18.0.1")), san)
    bundle = base64.b64encode(open(os.path.join(out, "ca.crt"), "rb").read()).decode()
    report.check("generate.sh prints the CA bundle", gen.stdout.strip() == bundle)
    rendered = subprocess.run(["bash", os.path.join(ROOT, "webhook-certs", "render.sh"), "https://172.18.0.1:9443"],
                              env=env, capture_output=True, text=True)
    if not report.check("webhook-certs/render.sh runs", rendered.returncode == 0, rendered.stderr.strip()):
        return
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    chart_rules = None
    chart = subprocess.run([RENDER_BINARY, ROOT], capture_output=True, text=True)
    for _, obj in split_documents(chart.stdout):
        if obj.get("kind") == "ValidatingWebhookConfiguration":
            chart_rules = obj["webhooks"][0]["rules"]
    for obj in docs:
        name = f"dev {obj['kind']}"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
                report.check(f"{name}: valid for Kubernetes {version}", True)
            except kubernetes_validate.ValidationError as e:
                report.check(f"{name}: valid for Kubernetes {version}", False, e.message)
        hook = obj["webhooks"][0]
        path = "/mutate" if obj["kind"].startswith("Mutating") else "/validate"
        report.check(f"{name}: calls the URL with caBundle",
                     hook["clientConfig"] == {"url": "https://172.18.0.1:9443" + path, "caBundle": bundle})
        report.check(f"{name}: same rules as the chart", hook["rules"] == chart_rules)
    report.check("render.sh renders both configurations", len(docs) == 2)


RENDER_BINARY = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--render-chart", required=True, help="path of the built render-chart binary")
    args = parser.parse_args()
    global RENDER_BINARY
    RENDER_BINARY = args.render_chart
    renderer = Renderer(args.render_chart)
    report = Report()
    crd_text = open(os.path.join(ROOT, "charts", "crds", "templates", "changetriggeredjobs.yaml"), encoding="utf-8").read()
    report.check("charts/crds template has no template actions (verbatim generated CRD)", "{{" not in crd_text)
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario, sargs in SCENARIOS:
            namespace = sargs[sargs.index("--namespace") + 1] if "--namespace" in sargs else "kube-changejob-system"
            notes = os.path.join(tmp, f"{scenario}-NOTES.txt")
            rc, out, err = renderer.run(sargs, notes=notes)
            if not report.check(f"{scenario}: renders", rc == 0, err.strip()):
                continue
            rc2, out2, _ = renderer.run(sargs)
            report.check(f"{scenario}: two renders are byte-identical", rc2 == 0 and out == out2)
            try:
                docs = split_documents(out)
            except yaml.YAMLError as e:
                report.check(f"{scenario}: YAML without duplicate keys", False, str(e))
                continue
            counts[scenario] = len(docs)
            notes_text = open(notes).read() if os.path.exists(notes) else ""
            report.check(f"{scenario}: NOTES.txt renders", notes_text.strip() != "" and "<no value>" not in notes_text)
            values = effective_values(sargs)
            check_documents(report, scenario, docs, namespace)
            check_kubernetes_schemas(report, scenario, docs)
            check_invariants(report, scenario, docs, values, namespace, crd_text)

        # The checksum follows the config and nothing else.
        def checksum(extra):
            rc, out, err = renderer.run(extra)
            dep = find(split_documents(out), "Deployment")[0] if rc == 0 else {}
            return dep.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}).get("checksum/config")
        base = checksum([])
        report.check("config change rolls the pods (checksum changes)", base and base != checksum(["--set", "config.logLevel=debug"]))
        report.check("non-config change keeps the checksum", base and base == checksum(["--set", "podAnnotations.a=b"]))

        check_bad_values(report, renderer, tmp)
        check_schema(report)
        check_lock(report, renderer)
        size, raw, nfiles = check_package(report, renderer, tmp)
        check_dev_certificates(report, tmp)

    print("chart-check: documents per scenario: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"chart-check: package {size} bytes gzip'd ({raw} bytes in {nfiles} files)")
    for f in report.failed:
        print(f"  failed: {f}")
    print(f"chart-check: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
