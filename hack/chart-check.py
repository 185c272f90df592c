#!/usr/bin/env python3
"""Checks of the Helm chart at the repository root, with the real helm, promtool and kubectl.

Called by hack/chart-check.sh, which installs the tools. `helm lint --strict` passes for every
scenario of values, and for each scenario `helm template` checks that:

  * the chart renders, twice with byte-identical output (GitOps tools must see no drift);
  * every document is YAML without duplicate keys and has apiVersion, kind and metadata.name,
    namespaced objects in the release namespace;
  * every built-in kind validates strictly against the Kubernetes 1.29 and 1.36 OpenAPI
    schemas (kubernetes-validate); cert-manager and Prometheus Operator objects get
    structural checks;
  * the invariants between objects and the operator's config hold (Service and webhook
    configuration names, certificate wiring, RBAC names, ports, probes, security context).

It also checks values.schema.json (Draft 7 meta-schema, values.yaml valid, config keys equal
to the settings in src/config.rs, bad values rejected by helm), that `helm dependency build`
accepts Chart.lock, the rendered CRD against charts/crds, which files `helm package .`
includes and how big the archive is, an OCI round trip (both charts pushed to a local
registry, then `helm show values` and `helm template` from oci://), the PrometheusRule
(`promtool check rules` and `promtool test rules`) and the Grafana dashboard (valid JSON whose
queries name only metrics the operator exports), the CRD adoption step for a reinstall under
another release (kubectl), and that webhook-certs/ makes a certificate that verifies and
webhook configurations that validate.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

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
    ("monitoring.coreos.com/v1", "PrometheusRule"),
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


DEFAULT_RELEASE = "kube-changejob"
DEFAULT_NAMESPACE = "kube-changejob-system"
NOTES_TEMPLATE = "templates/zz-rendered-notes.yaml"


def release_args(args):
    """(release name, namespace, the other arguments) of a scenario's arguments."""
    name, namespace, rest = DEFAULT_RELEASE, DEFAULT_NAMESPACE, []
    it = iter(args)
    for a in it:
        if a == "--name":
            name = next(it)
        elif a == "--namespace":
            namespace = next(it)
        else:
            rest.append(a)
    return name, namespace, rest


class Renderer:
    """`helm template` of one chart (a directory, a .tgz or an oci:// reference)."""

    def __init__(self, helm, chart=ROOT, extra=()):
        self.helm = helm
        self.chart = chart
        self.extra = list(extra)

    def run(self, args, notes_chart=None):
        name, namespace, rest = release_args(args)
        chart = notes_chart or self.chart
        cmd = [self.helm, "template", name, chart, "--namespace", namespace] + self.extra + rest
        if notes_chart:
            cmd += ["--show-only", NOTES_TEMPLATE]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr


def helm(helm_binary, *args, check=True, **kwargs):
    proc = subprocess.run([helm_binary] + list(args), capture_output=True, text=True, timeout=300, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def notes_chart(helm_binary, package, tmp):
    """The packaged chart plus one template that renders NOTES.txt as a YAML document.

    `helm template` renders NOTES.txt but never prints it; including it from a template of its
    own makes helm's engine print exactly what `helm install` would show."""
    out = os.path.join(tmp, "notes-chart")
    os.makedirs(out, exist_ok=True)
    with tarfile.open(package) as tar:
        tar.extractall(out, filter="data")
    chart = os.path.join(out, "kube-changejob")
    with open(os.path.join(chart, NOTES_TEMPLATE), "w") as f:
        f.write('kind: RenderedNotes\nnotes: {{ include "kube-changejob/templates/NOTES.txt" . | toJson }}\n')
    return chart


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
    elif kind == "PrometheusRule":
        groups = spec.get("groups") or []
        ok = (set(spec) == {"groups"} and groups
              and all(g.get("name") and g.get("rules") and set(g) <= {"name", "interval", "rules"} for g in groups)
              and all(isinstance(r.get("expr"), str) and (("alert" in r) != ("record" in r))
                      and set(r) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
                      for g in groups for r in g["rules"]))
        report.check(f"{name}: PrometheusRule structure", bool(ok), json.dumps(spec)[:300])


def check_invariants(report, scenario, docs, values, namespace, crd_text):
    s = scenario
    cm = one(report, docs, "ConfigMap", dep_name(docs), scenario=s)
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

    rules = find(docs, "PrometheusRule")
    report.check(f"{s}: PrometheusRule iff enabled", bool(rules) == values["metrics"]["prometheusRule"]["enabled"])
    dashboards = [c for c in find(docs, "ConfigMap") if "grafana_dashboard" in (c["metadata"].get("labels") or {})]
    report.check(f"{s}: dashboard ConfigMap iff enabled",
                 bool(dashboards) == values["metrics"]["grafanaDashboard"]["enabled"])

    # The CRD comes verbatim from charts/crds, only when enabled, and is kept on uninstall.
    crds = find(docs, "CustomResourceDefinition")
    report.check(f"{s}: CRD iff crds.enabled", bool(crds) == values["crds"]["enabled"])
    for crd in crds:
        report.check(f"{s}: CRD is identical to charts/crds", crd == yaml.safe_load(crd_text))
        report.check(f"{s}: CRD has helm.sh/resource-policy: keep",
                     crd["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep")


def dep_name(docs):
    deps = find(docs, "Deployment")
    return deps[0]["metadata"]["name"] if deps else "?"


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


def check_lock(report, helm_binary, tmp):
    """`helm dependency build` refuses a Chart.lock whose digest does not match Chart.yaml."""
    copy = os.path.join(tmp, "lock-check")
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "target", "src", "tests", "e2e", "benches",
                                                              "docs", "examples", "webhook-certs", "*.tgz"))
    proc = helm(helm_binary, "dependency", "build", copy, check=False)
    report.check("helm dependency build accepts Chart.lock (digest matches Chart.yaml)", proc.returncode == 0,
                 proc.stderr.strip())
    proc = helm(helm_binary, "dependency", "list", ROOT, check=False)
    report.check("helm dependency list: the CRD subchart is unpacked in charts/",
                 proc.returncode == 0 and re.search(r"kube-changejob-crds\s.*\sunpacked", proc.stdout) is not None,
                 proc.stdout + proc.stderr)


def package(helm_binary, chart_dir, dest):
    """`helm package` of a chart directory: the archive's path."""
    os.makedirs(dest, exist_ok=True)
    proc = helm(helm_binary, "package", chart_dir, "--destination", dest)
    return proc.stdout.strip().rsplit(" ", 1)[-1]


def package_files(archive):
    """(path inside the chart, size) of every file of a packaged chart."""
    with tarfile.open(archive) as tar:
        return [(m.name.split("/", 1)[1], m.size) for m in tar.getmembers() if m.isfile()]


FORBIDDEN = re.compile(r"^(src|target|e2e|docs|tests|benches|examples|hack|webhook-certs|\.ci|\.github|\.git|\.cargo)(/|$)"
                       r"|(^|/)(Cargo\.(toml|lock)|Dockerfile|\.dockerignore|\.gitignore)$|\.tgz$")


def check_package(report, helm_binary, tmp):
    archive = package(helm_binary, ROOT, os.path.join(tmp, "dist"))
    files = package_files(archive)
    names = [n for n, _ in files]
    bad = [n for n in names if FORBIDDEN.search(n) or (n.endswith(".md") and os.path.basename(n) != "README.md")]
    report.check("helm package leaves out everything but the chart", not bad, str(bad))
    for required in ("Chart.yaml", "Chart.lock", "values.yaml", "values.schema.json", "templates/_helpers.tpl",
                     "templates/deployment.yaml", "templates/NOTES.txt", "templates/prometheusrule.yaml",
                     "templates/grafana-dashboard.yaml", "files/grafana-dashboard.json", "charts/kube-changejob-crds/Chart.yaml",
                     "charts/kube-changejob-crds/templates/changetriggeredjobs.yaml"):
        report.check(f"package contains {required}", required in names)
    size = os.path.getsize(archive)
    raw = sum(s for _, s in files)
    report.check(f"package is small ({size} bytes compressed, {raw} raw, {len(files)} files)",
                 size <= MAX_PACKAGE_BYTES, f"limit {MAX_PACKAGE_BYTES}")
    # The same .helmignore on a tree with everything the repository may grow.
    tree = os.path.join(tmp, "tree")
    probe_paths = {
        "Chart.yaml": True, "values.yaml": True, "README.md": True, "LICENSE": True,
        "templates/x.yaml": True, "templates/.hidden.yaml": False, "charts/crds/README.md": True,
        "charts/crds/Chart.yaml": True, "charts/crds/templates/crd.yaml": True,
        "charts/crds-0.1.0.tgz": False, "kube-changejob-0.1.0.tgz": False,
        "src/main.rs": False, "target/release/kube-changejob": False, "e2e/run.sh": False, "docs/x.md": False,
        "tests/t.rs": False, "benches/b.rs": False, "hack/x.sh": False, "webhook-certs/out/tls.key": False,
        ".ci/run": False, ".github/workflows/release.yml": False, ".git": False, "Cargo.toml": False,
        "Cargo.lock": False, "Dockerfile": False, ".dockerignore": False, "CHANGELOG.md": False,
        "CONTRIBUTING.md": False, "README-dev.md": False, "SECURITY.md": False, "readme.md": False,
        "templates/notes.md": False,
    }
    contents = {
        "Chart.yaml": "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
        "charts/crds/Chart.yaml": "apiVersion: v2\nname: crds\nversion: 0.1.0\n",
        "values.yaml": "{}\n",
    }
    for rel in probe_paths:
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write(contents.get(rel, "x\n"))
    with open(os.path.join(tree, ".helmignore"), "w") as f:
        f.write(open(os.path.join(ROOT, ".helmignore")).read())
    kept = {n for n, _ in package_files(package(helm_binary, tree, os.path.join(tmp, "probe-dist")))}
    for rel, keep in probe_paths.items():
        report.check(f".helmignore {'keeps' if keep else 'drops'} {rel}", (rel in kept) == keep)
    return archive, size, raw, len(files)


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
    _, chart, _ = RENDERER.run([])
    for _, obj in split_documents(chart):
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


# --- lint, OCI round trip, reinstall under another release ----------------------------------

def check_lint(report, helm_binary):
    for scenario, sargs in SCENARIOS:
        _, namespace, rest = release_args(sargs)
        proc = helm(helm_binary, "lint", ROOT, "--strict", "--namespace", namespace, *rest, check=False)
        report.check(f"{scenario}: helm lint --strict", proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-500:])
    proc = helm(helm_binary, "lint", os.path.join(ROOT, "charts", "crds"), "--strict", check=False)
    report.check("CRD chart: helm lint --strict", proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-500:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1, for one run."""

    def __init__(self, binary, tmp):
        self.port = free_port()
        self.dir = os.path.join(tmp, "registry")
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.log = open(os.path.join(self.dir, "registry.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", config], stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("the local registry did not start: " + open(self.log.name).read()[-500:])

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def check_oci(report, helm_binary, registry_binary, archive, tmp):
    """Both charts pushed to a local OCI registry and used from there as users do."""
    version = yaml.safe_load(open(os.path.join(ROOT, "Chart.yaml")))["version"]
    crd_archive = package(helm_binary, os.path.join(ROOT, "charts", "crds"), os.path.join(tmp, "crd-dist"))
    with Registry(registry_binary, tmp) as reg:
        base = f"oci://127.0.0.1:{reg.port}/charts"
        for pkg in (archive, crd_archive):
            proc = helm(helm_binary, "push", pkg, base, "--plain-http", check=False)
            report.check(f"helm push {os.path.basename(pkg)} to {base}", proc.returncode == 0,
                         (proc.stdout + proc.stderr).strip())
        ref = f"{base}/kube-changejob"
        proc = helm(helm_binary, "show", "values", ref, "--version", version, "--plain-http", check=False)
        report.check("helm show values from oci:// is values.yaml",
                     proc.returncode == 0 and proc.stdout.rstrip("\n") == open(os.path.join(ROOT, "values.yaml")).read().rstrip("\n"),
                     proc.stderr.strip())
        proc = helm(helm_binary, "show", "chart", ref, "--version", version, "--plain-http", check=False)
        report.check("helm show chart from oci:// names the chart and version",
                     proc.returncode == 0 and (yaml.safe_load(proc.stdout) or {}).get("version") == version,
                     proc.stderr.strip())
        for scenario, sargs in SCENARIOS:
            remote = Renderer(helm_binary, ref, ["--version", version, "--plain-http"])
            rc, out, err = remote.run(sargs)
            _, local, _ = RENDERER.run(sargs)
            report.check(f"{scenario}: helm template from oci:// equals the local render", rc == 0 and out == local,
                         err.strip()[:300])
        crds = Renderer(helm_binary, f"{base}/kube-changejob-crds", ["--version", version, "--plain-http"])
        rc, out, err = crds.run(["--name", "kube-changejob-crds"])
        docs = split_documents(out) if rc == 0 else []
        crd_file = yaml.safe_load(open(os.path.join(ROOT, "charts", "crds", "templates", "changetriggeredjobs.yaml")))
        report.check("CRD chart from oci:// renders exactly the CRD", [o for _, o in docs] == [crd_file], err.strip()[:300])


# The adoption step of docs/installation.md ("Reinstalling under another release"), for a CRD
# that a previous, uninstalled release left behind (RELEASE and NAMESPACE are the new ones).
ADOPT_COMMAND = ("kubectl annotate crd changetriggeredjobs.triggers.changejob.dev --overwrite "
                 "meta.helm.sh/release-name=RELEASE meta.helm.sh/release-namespace=NAMESPACE")


def helm_may_import(obj, release, namespace):
    """Helm's rule for adopting an existing object into a release (pkg/action/validate.go,
    existingResourceConflict): the managed-by label is Helm and both annotations name it."""
    meta = obj.get("metadata", {})
    return ((meta.get("labels") or {}).get("app.kubernetes.io/managed-by") == "Helm"
            and (meta.get("annotations") or {}).get("meta.helm.sh/release-name") == release
            and (meta.get("annotations") or {}).get("meta.helm.sh/release-namespace") == namespace)


def check_reinstall(report, helm_binary, kubectl, tmp):
    """Uninstall of one release, install of another elsewhere, as far as it goes without a cluster."""
    _, first, _ = RENDERER.run(["--name", "first", "--namespace", "team-a"])
    _, second, _ = RENDERER.run(["--name", "second", "--namespace", "team-b"])
    crd_first = find(split_documents(first), "CustomResourceDefinition")
    crd_second = find(split_documents(second), "CustomResourceDefinition")
    report.check("reinstall: both releases render the same CRD (so the second must adopt the first's)",
                 len(crd_first) == 1 and crd_first == crd_second)
    if not crd_first:
        return
    # What `helm uninstall first` leaves: the kept CRD with the metadata helm stamped at install.
    left = json.loads(json.dumps(crd_first[0]))
    left["metadata"].setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
    left["metadata"]["annotations"].update({"meta.helm.sh/release-name": "first",
                                            "meta.helm.sh/release-namespace": "team-a"})
    report.check("reinstall: helm refuses to import the left-behind CRD into release second",
                 not helm_may_import(left, "second", "team-b"))
    path = os.path.join(tmp, "left-crd.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(left, f)
    words = ADOPT_COMMAND.replace("RELEASE", "second").replace("NAMESPACE", "team-b").split()
    # The same command, on the file instead of the cluster (--local never contacts a server).
    args = [a for a in words[1:] if a not in ("crd", "changetriggeredjobs.triggers.changejob.dev")]
    proc = subprocess.run([kubectl] + args + ["--local", "-f", path, "-o", "json"], capture_output=True, text=True)
    adopted = json.loads(proc.stdout) if proc.returncode == 0 else {}
    report.check("reinstall: after the adoption step helm imports the CRD into release second",
                 helm_may_import(adopted, "second", "team-b"), proc.stderr.strip())
    report.check("reinstall: the adoption step keeps helm.sh/resource-policy: keep and the spec",
                 adopted.get("spec") == left["spec"]
                 and adopted.get("metadata", {}).get("annotations", {}).get("helm.sh/resource-policy") == "keep")
    docs_text = open(os.path.join(ROOT, "docs", "installation.md"), encoding="utf-8").read()
    report.check("reinstall: docs/installation.md gives the adoption step", ADOPT_COMMAND in " ".join(docs_text.replace("\\\n", " ").split()))
    proc = helm(helm_binary, "install", "--help")
    report.check("reinstall: helm install has --take-ownership (the one-flag alternative the docs give)",
                 "--take-ownership" in proc.stdout and "--take-ownership" in docs_text)
    # The other path: the CRD chart as its own release, the operator chart without it.
    _, without, _ = RENDERER.run(["--name", "second", "--namespace", "team-b", "--set", "crds.enabled=false"])
    report.check("reinstall: with crds.enabled=false the operator chart renders no CRD",
                 not find(split_documents(without), "CustomResourceDefinition"))


# --- alerts and dashboard ---------------------------------------------------------------------

def exported_metrics(metrics_text):
    """Series names the operator exports, from `kube-changejob metrics` (its registry's text)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.M):
        names.add(name)
        if kind in ("histogram", "summary"):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "le", "true", "false",
}


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions, aggregations'
    label lists, label matchers, durations or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables, e.g. $__rate_interval
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def check_alerts(report, helm_binary, promtool, exported, tmp):
    rc, out, err = RENDERER.run(["--set", "metrics.prometheusRule.enabled=true"])
    rules = find(split_documents(out), "PrometheusRule") if rc == 0 else []
    if not report.check("PrometheusRule renders with metrics.prometheusRule.enabled=true", len(rules) == 1, err.strip()):
        return
    groups = rules[0]["spec"]["groups"]
    path = os.path.join(tmp, "kube-changejob-rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    proc = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    report.check("promtool check rules accepts the PrometheusRule's groups", proc.returncode == 0,
                 (proc.stdout + proc.stderr).strip())
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    for alert in ("KubeChangejobOperatorDown", "KubeChangejobNoLeader", "KubeChangejobReconcileErrors",
                  "KubeChangejobDegraded", "KubeChangejobSlowTrigger", "KubeChangejobWebhookErrors"):
        report.check(f"PrometheusRule has alert {alert}", alert in alerts, str(sorted(alerts)))
    for g in groups:
        for r in g["rules"]:
            unknown = {n for n in metric_names(r["expr"]) if n != "up"} - exported
            report.check(f"alert {r.get('alert')}: names only exported metrics", not unknown, str(unknown))
            report.check(f"alert {r.get('alert')}: severity label and summary",
                         r.get("labels", {}).get("severity") in ("warning", "critical")
                         and bool(r.get("annotations", {}).get("summary")))
    test = os.path.join(tmp, "alerts-test.yaml")
    shutil.copy(os.path.join(ROOT, "hack", "chart-tests", "alerts-test.yaml"), test)
    tested = {a["alertname"] for t in yaml.safe_load(open(test))["tests"] for a in t.get("alert_rule_test", [])}
    report.check("promtool unit test covers at least two alerts", len(tested & alerts) >= 2, str(tested))
    proc = subprocess.run([promtool, "test", "rules", test], capture_output=True, text=True, cwd=tmp)
    report.check("promtool test rules passes", proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-1500:])
    # Selecting labels the Prometheus Operator's ruleSelector may need, and the release's job.
    rc, out, _ = RENDERER.run(["--set", "metrics.prometheusRule.enabled=true",
                               "--set", "metrics.prometheusRule.labels.release=prometheus"])
    rule = (find(split_documents(out), "PrometheusRule") or [{}])[0]
    report.check("PrometheusRule carries metrics.prometheusRule.labels",
                 rule.get("metadata", {}).get("labels", {}).get("release") == "prometheus")


def check_dashboard(report, exported):
    rc, out, err = RENDERER.run(["--set", "metrics.grafanaDashboard.enabled=true"])
    maps = [o for o in find(split_documents(out), "ConfigMap") if "grafana_dashboard" in o["metadata"].get("labels", {})] \
        if rc == 0 else []
    if not report.check("dashboard ConfigMap renders with the Grafana sidecar label", len(maps) == 1, err.strip()):
        return
    data = maps[0].get("data", {})
    report.check("dashboard ConfigMap holds one .json file", len(data) == 1 and next(iter(data)).endswith(".json"))
    try:
        dashboard = json.loads(next(iter(data.values())))
    except (ValueError, StopIteration) as e:
        report.check("dashboard is valid JSON", False, str(e))
        return
    report.check("dashboard is valid JSON", True)
    report.check("dashboard has a title, a uid and panels",
                 bool(dashboard.get("title")) and bool(dashboard.get("uid")) and bool(dashboard.get("panels")))
    exprs = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    report.check(f"dashboard has queries ({len(exprs)})", len(exprs) >= 5)
    used = set().union(*(metric_names(e) for e in exprs)) if exprs else set()
    report.check("dashboard queries name only metrics the operator exports", used and not (used - exported - {"up"}),
                 str(sorted(used - exported)))
    report.check("dashboard uses the per-condition CTJ gauge", "changejob_changetriggeredjobs" in used)
    rc, out, _ = RENDERER.run(["--set", "metrics.grafanaDashboard.enabled=true",
                               "--set", "metrics.grafanaDashboard.namespace=monitoring"])
    cm = [o for o in find(split_documents(out), "ConfigMap") if "grafana_dashboard" in o["metadata"].get("labels", {})]
    report.check("dashboard ConfigMap goes to metrics.grafanaDashboard.namespace",
                 len(cm) == 1 and cm[0]["metadata"]["namespace"] == "monitoring")


RENDERER = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", required=True, help="path of the helm v3 binary")
    parser.add_argument("--registry", required=True, help="path of the docker-registry binary")
    parser.add_argument("--promtool", required=True, help="path of promtool")
    parser.add_argument("--kubectl", required=True, help="path of kubectl")
    parser.add_argument("--metrics", required=True, help="file with the output of `kube-changejob metrics`")
    args = parser.parse_args()
    global RENDERER
    RENDERER = renderer = Renderer(args.helm)
    exported = exported_metrics(open(args.metrics, encoding="utf-8").read())
    report = Report()
    report.check("kube-changejob metrics lists the changejob_ metrics",
                 {"changejob_reconciles_total", "changejob_leader", "changejob_changetriggeredjobs"} <= exported,
                 str(sorted(exported)))
    crd_text = open(os.path.join(ROOT, "charts", "crds", "templates", "changetriggeredjobs.yaml"), encoding="utf-8").read()
    report.check("charts/crds template has no template actions (verbatim generated CRD)", "{{" not in crd_text)
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        check_lint(report, args.helm)
        archive, size, raw, nfiles = check_package(report, args.helm, tmp)
        notes = notes_chart(args.helm, archive, tmp)
        for scenario, sargs in SCENARIOS:
            _, namespace, _ = release_args(sargs)
            rc, out, err = renderer.run(sargs)
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
            rc, notes_out, err = renderer.run(sargs, notes_chart=notes)
            notes_text = (yaml.safe_load(notes_out.split("\n", 2)[-1]) or {}).get("notes", "") if rc == 0 else ""
            report.check(f"{scenario}: NOTES.txt renders", notes_text.strip() != "" and "<no value>" not in notes_text,
                         err.strip())
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
        check_lock(report, args.helm, tmp)
        check_oci(report, args.helm, args.registry, archive, tmp)
        check_reinstall(report, args.helm, args.kubectl, tmp)
        check_alerts(report, args.helm, args.promtool, exported, tmp)
        check_dashboard(report, exported)
        check_dev_certificates(report, tmp)

    print("chart-check: documents per scenario: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"chart-check: package {size} bytes gzip'd ({raw} bytes in {nfiles} files)")
    for f in report.failed:
        print(f"  failed: {f}")
    print(f"chart-check: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
