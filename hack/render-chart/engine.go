package main

// The template engine, following Helm 3's pkg/engine: one text/template set holding every
// template of the chart and its subcharts, missingkey=zero, sprig's functions (minus env and
// expandenv) plus Helm's toYaml/fromYaml/toJson/fromJson/include/tpl/required/lookup, each
// template executed with its own chart's scope (.Values, .Chart, .Files, .Template).

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// KubeVersion mirrors helm's chartutil.KubeVersion.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

// VersionSet mirrors helm's chartutil.VersionSet.
type VersionSet []string

// Has reports whether an API version ("group/version" or "group/version/Kind") is available.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities mirrors helm's chartutil.Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files mirrors helm's engine.files (.Files in templates).
type Files map[string][]byte

// Get returns a file's content as a string ("" if absent).
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a file's content.
func (f Files) GetBytes(name string) []byte { return f[name] }

// Lines returns a file's lines.
func (f Files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

// Glob returns the files whose names match a pattern.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func newFiles(files []*File) Files {
	f := Files{}
	for _, x := range files {
		f[x.Name] = x.Data
	}
	return f
}

type renderable struct {
	tpl      string
	vals     map[string]interface{}
	basePath string
}

const warnStart, warnEnd = "HELM_ERR_START", "HELM_ERR_END"

var warnRegex = regexp.MustCompile(warnStart + `(.*)` + warnEnd)

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func (e *engine) funcMap(t *template.Template, refs map[string]renderable) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["toToml"] = func(interface{}) string { return "toToml is not supported by render-chart" }
	// Without a cluster, `helm template` answers lookup with an empty map.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	included := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		included[name]--
		return buf.String(), err
	}
	f["tpl"] = func(tpl string, vals map[string]interface{}) (string, error) {
		tmpl, _ := vals["Template"].(map[string]interface{})
		name, _ := tmpl["Name"].(string)
		base, _ := tmpl["BasePath"].(string)
		out, err := e.renderWithReferences(map[string]renderable{name: {tpl: tpl, vals: vals, basePath: base}}, refs)
		if err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", tpl, err)
		}
		return out[name], nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, fmt.Errorf("%s%s%s", warnStart, warn, warnEnd)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, fmt.Errorf("%s%s%s", warnStart, warn, warnEnd)
		}
		return val, nil
	}
	return f
}

type engine struct{}

// sortTemplates orders templates like Helm: deeper paths first, then by name.
func sortTemplates(tpls map[string]renderable) []string {
	keys := make([]string, 0, len(tpls))
	for k := range tpls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca == cb {
			return a > b
		}
		return ca > cb
	})
	return keys
}

func (e *engine) renderWithReferences(tpls, refs map[string]renderable) (rendered map[string]string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering template failed: %v", r)
		}
	}()
	t := template.New("gotpl").Option("missingkey=zero")
	t.Funcs(e.funcMap(t, refs))
	for _, name := range sortTemplates(tpls) {
		if _, err := t.New(name).Parse(tpls[name].tpl); err != nil {
			return nil, fmt.Errorf("parse error in %s: %w", name, err)
		}
	}
	for _, name := range sortTemplates(refs) {
		if t.Lookup(name) == nil {
			if _, err := t.New(name).Parse(refs[name].tpl); err != nil {
				return nil, fmt.Errorf("parse error in %s: %w", name, err)
			}
		}
	}
	rendered = map[string]string{}
	for _, name := range sortTemplates(tpls) {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		vals := tpls[name].vals
		vals["Template"] = map[string]interface{}{"Name": name, "BasePath": tpls[name].basePath}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, vals); err != nil {
			if parts := warnRegex.FindStringSubmatch(err.Error()); len(parts) >= 2 {
				return nil, fmt.Errorf("execution error in %s: %s", name, parts[1])
			}
			return nil, err
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return rendered, nil
}

// allTemplates collects every template with the values scope of its chart.
func allTemplates(c *Chart, top map[string]interface{}, values map[string]interface{}) map[string]renderable {
	out := map[string]renderable{}
	var walk func(c *Chart, vals map[string]interface{})
	walk = func(c *Chart, vals map[string]interface{}) {
		next := map[string]interface{}{
			"Chart":        c.Metadata,
			"Files":        newFiles(c.Files),
			"Release":      top["Release"],
			"Capabilities": top["Capabilities"],
			"Values":       vals,
		}
		for _, sub := range c.Deps {
			sv, _ := vals[sub.Metadata.Name].(map[string]interface{})
			if sv == nil {
				sv = map[string]interface{}{}
			}
			walk(sub, sv)
		}
		for _, f := range c.Templates {
			out[templatePath(c, f)] = renderable{
				tpl:      string(f.Data),
				vals:     next,
				basePath: path.Join(c.FullPath(), "templates"),
			}
		}
	}
	walk(c, values)
	return out
}
