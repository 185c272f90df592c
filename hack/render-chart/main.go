// Command render-chart renders a Helm 3 chart like `helm template` does, for CI machines
// without a helm binary. It reproduces what this project's chart relies on: values files and
// --set, coalescing with chart and subchart defaults, dependency conditions, values.schema.json
// validation, the kubeVersion constraint, Helm's template functions, and the output format and
// order of `helm template`. It also reports the Chart.lock digest Helm would compute and the
// files `helm package` would put into the archive (.helmignore semantics).
//
// Build offline with Debian's Go packages (GOPATH mode):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render-chart ./hack/render-chart
//
// Usage:
//
//	render-chart [-f values.yaml]... [--set k=v]... [--name N] [--namespace NS]
//	             [--kube-version 1.29.0] [--api-versions group/version]... [--notes FILE] CHART_DIR
//	render-chart --lock-digest CHART_DIR
//	render-chart --package-files CHART_DIR
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver"
	"sigs.k8s.io/yaml"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// installOrder is Helm's InstallOrder: the order `helm template` prints kinds in.
var installOrder = []string{
	"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
	"RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
	"ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
	"IngressClass", "Ingress", "APIService",
}

// Helm's releaseutil.SplitManifests separator.
var docSeparator = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

type manifest struct {
	source  string
	content string
	kind    string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "render-chart: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole command, separated from main for the tests.
func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("render-chart", flag.ContinueOnError)
	var valueFiles, sets, apiVersions multiFlag
	fs.Var(&valueFiles, "f", "values file (repeatable)")
	fs.Var(&valueFiles, "values", "values file (repeatable)")
	fs.Var(&sets, "set", "key=value override (repeatable)")
	fs.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	name := fs.String("name", "kube-changejob", "release name")
	namespace := fs.String("namespace", "kube-changejob-system", "release namespace")
	kubeVersion := fs.String("kube-version", "1.29.0", "Kubernetes version for .Capabilities")
	notes := fs.String("notes", "", "also write the rendered NOTES.txt to this file")
	lockDigest := fs.Bool("lock-digest", false, "print the Chart.lock digest Helm would compute and exit")
	packageFiles := fs.Bool("package-files", false, "list the files `helm package` would include (size<TAB>path) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("expected exactly one chart directory")
	}
	dir := fs.Arg(0)

	if *packageFiles {
		files, err := chartFiles(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Fprintf(stdout, "%d\t%s\n", len(f.Data), f.Name)
		}
		return nil
	}

	chart, err := loadChart(dir)
	if err != nil {
		return fmt.Errorf("loading %s: %w", dir, err)
	}
	if *lockDigest {
		digest, err := hashReq(dir, chart.Metadata.Dependencies)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, digest)
		return nil
	}
	if err := checkDependencies(chart); err != nil {
		return err
	}

	caps, err := capabilities(*kubeVersion, apiVersions)
	if err != nil {
		return err
	}
	if kv := chart.Metadata.KubeVersion; kv != "" {
		constraint, err := semver.NewConstraint(kv)
		if err != nil {
			return fmt.Errorf("Chart.yaml kubeVersion %q: %w", kv, err)
		}
		v, err := semver.NewVersion(caps.KubeVersion.Version)
		if err != nil || !constraint.Check(v) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", kv, caps.KubeVersion.Version)
		}
	}

	user := map[string]interface{}{}
	for _, f := range valueFiles {
		v, err := readValuesFile(f)
		if err != nil {
			return err
		}
		user = mergeMaps(user, v)
	}
	for _, s := range sets {
		if err := parseSet(s, user); err != nil {
			return err
		}
	}

	processDependencyEnabled(chart, user)
	values := coalesce(chart, deepCopy(user).(map[string]interface{}))
	if err := validateSchemas(chart, values); err != nil {
		return err
	}

	top := map[string]interface{}{
		"Release": map[string]interface{}{
			"Name":      *name,
			"Namespace": *namespace,
			"IsUpgrade": false,
			"IsInstall": true,
			"Revision":  1,
			"Service":   "Helm",
		},
		"Capabilities": caps,
	}
	tpls := allTemplates(chart, top, values)
	e := &engine{}
	rendered, err := e.renderWithReferences(tpls, tpls)
	if err != nil {
		return err
	}

	var manifests []manifest
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			if *notes != "" && n == path.Join(chart.FullPath(), "templates", "NOTES.txt") {
				if err := os.WriteFile(*notes, []byte(rendered[n]), 0o644); err != nil {
					return err
				}
			}
			continue
		}
		content := strings.TrimSpace(rendered[n])
		if content == "" {
			continue
		}
		for _, doc := range docSeparator.Split(content, -1) {
			if doc == "" {
				continue
			}
			doc = strings.TrimSpace(doc)
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return fmt.Errorf("YAML parse error on %s: %w", n, err)
			}
			manifests = append(manifests, manifest{source: n, content: doc, kind: head.Kind})
		}
	}
	sortManifests(manifests)
	var out bytes.Buffer
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	_, err = stdout.Write(out.Bytes())
	return err
}

// sortManifests orders manifests like Helm's kind sorter: by install order of their kind,
// unknown kinds last (alphabetically), then by template path.
func sortManifests(manifests []manifest) {
	order := map[string]int{}
	for i, k := range installOrder {
		order[k] = i
	}
	sort.SliceStable(manifests, func(i, j int) bool {
		a, b := manifests[i], manifests[j]
		oa, aok := order[a.kind]
		ob, bok := order[b.kind]
		if !aok {
			oa = len(installOrder)
		}
		if !bok {
			ob = len(installOrder)
		}
		if oa == ob {
			if !aok && !bok && a.kind != b.kind {
				return a.kind < b.kind
			}
			return a.source < b.source
		}
		return oa < ob
	})
}

// capabilities builds .Capabilities for a Kubernetes version, with the API versions every
// supported cluster serves plus --api-versions.
func capabilities(version string, extra []string) (*Capabilities, error) {
	v, err := semver.NewVersion(version)
	if err != nil {
		return nil, fmt.Errorf("--kube-version %q: %w", version, err)
	}
	apis := VersionSet{
		"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "apps/v1",
		"authentication.k8s.io/v1", "authorization.k8s.io/v1", "autoscaling/v1", "autoscaling/v2",
		"batch/v1", "certificates.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
		"events.k8s.io/v1", "networking.k8s.io/v1", "node.k8s.io/v1", "policy/v1",
		"rbac.authorization.k8s.io/v1", "scheduling.k8s.io/v1", "storage.k8s.io/v1",
	}
	apis = append(apis, extra...)
	return &Capabilities{
		KubeVersion: KubeVersion{
			Version: "v" + v.String(),
			Major:   fmt.Sprint(v.Major()),
			Minor:   fmt.Sprint(v.Minor()),
		},
		APIVersions: apis,
		HelmVersion: map[string]string{"version": "v3"},
	}, nil
}

// hashReq is helm's resolver.HashReq for file:// dependencies: the lock entry of each is its
// name, repository and the version in the subchart's Chart.yaml.
func hashReq(dir string, req []*Dependency) (string, error) {
	lock := make([]*Dependency, 0, len(req))
	for _, d := range req {
		if !strings.HasPrefix(d.Repository, "file://") {
			return "", fmt.Errorf("dependency %s: only file:// repositories are supported", d.Name)
		}
		data, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(d.Repository, "file://"), "Chart.yaml"))
		if err != nil {
			return "", err
		}
		var sub Metadata
		if err := yaml.Unmarshal(data, &sub); err != nil {
			return "", err
		}
		lock = append(lock, &Dependency{Name: d.Name, Repository: d.Repository, Version: sub.Version})
	}
	data, err := json.Marshal([2][]*Dependency{req, lock})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data)), nil
}
