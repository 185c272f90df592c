package main

// Behaviour of render-chart on testdata/demo, a small chart that uses every Helm feature the
// real chart relies on. Each expectation is what `helm template` gives for the same input.

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const demo = "testdata/demo"

func render(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(append(args, demo), &out)
	return out.String(), err
}

func mustRender(t *testing.T, args ...string) string {
	t.Helper()
	out, err := render(t, args...)
	if err != nil {
		t.Fatalf("render %v: %v", args, err)
	}
	return out
}

func expectContains(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func expectError(t *testing.T, want string, args ...string) {
	t.Helper()
	_, err := render(t, args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("render %v: want an error containing %q, got %v", args, want, err)
	}
}

func TestRendersTemplatesWithHelmFunctionsAndScopes(t *testing.T) {
	out := mustRender(t, "--name", "rel", "--namespace", "ns")
	expectContains(t, out,
		"# Source: demo/templates/configmap.yaml\n",
		"name: demo-rel\n",
		"namespace: ns\n",
		`greeting: "hello"`,
		`count: "3"`,
		`list: "[\"a\",\"b\"]"`,
		`tpl: "rel-from-tpl"`,
		`nested: "2"`,
		`file: "line1\nline2\n"`,
		`lines: "2"`,
		`kube: "v1.29.0"`,
		`minor: "29"`,
		`apps: "true"`,
		`example: "false"`,
		`app: "9.9"`,
		`template: "demo/templates/configmap.yaml"`,
		`missing: ""`,
		fmt.Sprintf("sum: %q", fmt.Sprintf("%x", sha256.Sum256([]byte("abc")))[:8]),
		"  block: |\n    a: 1\n    b:\n      c: 2\n",
		// Subchart: its own defaults under the parent's overrides, plus the parent's globals.
		"# Source: demo/charts/sub/templates/configmap.yaml\n",
		"color: blue\n",
		`size: "1"`,
		"region: eu\n",
		"chart: sub\n",
	)
	if strings.Contains(out, "Installed") {
		t.Error("NOTES.txt must not be part of the manifests")
	}
}

func TestOrdersDocumentsByKindLikeHelm(t *testing.T) {
	out := mustRender(t)
	sa := strings.Index(out, "kind: ServiceAccount")
	cm := strings.Index(out, "kind: ConfigMap")
	if sa < 0 || cm < 0 || sa > cm {
		t.Errorf("ServiceAccount must come before ConfigMap:\n%s", out)
	}
	if n := strings.Count(out, "---\n# Source: "); n != 3 {
		t.Errorf("want 3 documents, got %d", n)
	}
}

func TestValuesFilesAndSetOverrideDefaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "v.yaml")
	if err := os.WriteFile(file, []byte("greeting: hi\nnested:\n  a: null\nsub:\n  size: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, "-f", file, "--set", "count=5,list={x,y}", "--api-versions", "example.com/v1")
	expectContains(t, out, `greeting: "hi"`, `count: "5"`, `list: "[\"x\",\"y\"]"`, `size: "7"`, `example: "true"`,
		"  block: |\n    b:\n      c: 2\n")
}

func TestConditionFalseDropsTheSubchart(t *testing.T) {
	out := mustRender(t, "--set", "sub.enabled=false")
	if strings.Contains(out, "charts/sub") {
		t.Errorf("disabled subchart was rendered:\n%s", out)
	}
}

func TestRejectsValuesAgainstTheSchema(t *testing.T) {
	expectError(t, "count", "--set", "count=0")
	expectError(t, "Additional property typo is not allowed", "--set", "typo=1")
}

func TestRequiredFailAndKubeVersion(t *testing.T) {
	expectError(t, "greeting is required", "--set", "greeting=")
	expectError(t, "boom requested", "--set", "boom=true")
	expectError(t, "incompatible with Kubernetes v1.24.0", "--kube-version", "1.24.0")
}

func TestWritesNotes(t *testing.T) {
	notes := filepath.Join(t.TempDir(), "NOTES.txt")
	mustRender(t, "--name", "rel", "--notes", notes)
	data, err := os.ReadFile(notes)
	if err != nil || strings.TrimSpace(string(data)) != "Installed rel." {
		t.Errorf("NOTES.txt: %q, %v", data, err)
	}
}

func TestPackageFilesFollowHelmignore(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"--package-files", demo}, &out); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"notes.bak", "ignored/broken.yaml", "templates/.hidden.yaml"} {
		if strings.Contains(out.String(), "\t"+gone+"\n") {
			t.Errorf("%s should be ignored:\n%s", gone, out.String())
		}
	}
	expectContains(t, out.String(), "\tChart.yaml\n", "\tcharts/sub/templates/configmap.yaml\n", "\tfiles/data.txt\n")
}

func TestNegatedHelmignoreRuleIgnoresEverythingElse(t *testing.T) {
	// Helm's quirk, and the reason the real chart's .helmignore avoids "!README.md".
	var rules ignoreRules
	for _, line := range []string{"*.md", "!README.md"} {
		if err := rules.add(line); err != nil {
			t.Fatal(err)
		}
	}
	if !rules.ignore("values.yaml", false) {
		t.Error("with a negated rule, Helm ignores files that do not match it")
	}
	if !rules.ignore("README.md", false) {
		t.Error("the first matching rule wins, so README.md is ignored by *.md anyway")
	}
}

func TestLockDigestIsHelmsHashReq(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"--lock-digest", demo}, &out); err != nil {
		t.Fatal(err)
	}
	// json.Marshal([2][]*chart.Dependency{req, lock}) for the demo chart, written out.
	payload := `[[{"name":"sub","version":"0.1.0","repository":"file://charts/sub","condition":"sub.enabled"}],` +
		`[{"name":"sub","version":"0.1.0","repository":"file://charts/sub"}]]`
	want := fmt.Sprintf("sha256:%x\n", sha256.Sum256([]byte(payload)))
	if out.String() != want {
		t.Errorf("digest %q, want %q", out.String(), want)
	}
}
