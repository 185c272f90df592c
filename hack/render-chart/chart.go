package main

// Loading a chart directory the way Helm 3's loader does: .helmignore rules (with Helm's own
// matching quirks), Chart.yaml into the same Metadata struct, values.yaml, values.schema.json,
// templates/, unpacked subcharts under charts/, and every other file as .Files.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Maintainer mirrors helm's chart.Maintainer.
type Maintainer struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

// Dependency mirrors helm's chart.Dependency field for field and tag for tag: its JSON
// encoding is what Chart.lock's digest is computed from.
type Dependency struct {
	Name         string        `json:"name"`
	Version      string        `json:"version,omitempty"`
	Repository   string        `json:"repository"`
	Condition    string        `json:"condition,omitempty"`
	Tags         []string      `json:"tags,omitempty"`
	Enabled      bool          `json:"enabled,omitempty"`
	ImportValues []interface{} `json:"import-values,omitempty"`
	Alias        string        `json:"alias,omitempty"`
}

// Metadata mirrors helm's chart.Metadata, so templates see .Chart.Name, .Chart.AppVersion...
type Metadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []*Maintainer     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []*Dependency     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
}

// File is one file of a chart, with its path relative to the chart root.
type File struct {
	Name string
	Data []byte
}

// Chart is a loaded chart.
type Chart struct {
	Metadata  *Metadata
	Values    map[string]interface{}
	Schema    []byte
	Templates []*File
	Files     []*File
	Deps      []*Chart
	parent    *Chart
}

// FullPath is the chart's path in template names: "parent/charts/child".
func (c *Chart) FullPath() string {
	if c.parent == nil {
		return c.Metadata.Name
	}
	return c.parent.FullPath() + "/charts/" + c.Metadata.Name
}

// ignoreRule is one .helmignore line, evaluated exactly like helm's pkg/ignore.
type ignoreRule struct {
	raw     string
	pattern string
	negate  bool
	mustDir bool
	rooted  bool
	slashed bool
}

type ignoreRules []ignoreRule

func parseIgnore(file string) (ignoreRules, error) {
	rules := ignoreRules{}
	f, err := os.Open(file)
	if err != nil {
		if os.IsNotExist(err) {
			return rules.withDefaults()
		}
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if err := rules.add(s.Text()); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return rules.withDefaults()
}

// withDefaults adds Helm's one built-in rule: dotfiles in templates/ are ignored.
func (r ignoreRules) withDefaults() (ignoreRules, error) {
	err := r.add("templates/.?*")
	return r, err
}

func (r *ignoreRules) add(line string) error {
	rule := strings.TrimSpace(line)
	if rule == "" || strings.HasPrefix(rule, "#") {
		return nil
	}
	if strings.Contains(rule, "**") {
		return errors.New("double-star (**) syntax is not supported")
	}
	if _, err := filepath.Match(rule, "abc"); err != nil {
		return err
	}
	p := ignoreRule{raw: rule}
	if strings.HasPrefix(rule, "!") {
		p.negate = true
		rule = rule[1:]
	}
	if strings.HasSuffix(rule, "/") {
		p.mustDir = true
		rule = strings.TrimSuffix(rule, "/")
	}
	if strings.HasPrefix(rule, "/") {
		p.rooted = true
		rule = strings.TrimPrefix(rule, "/")
	} else if strings.Contains(rule, "/") {
		p.slashed = true
	}
	p.pattern = rule
	*r = append(*r, p)
	return nil
}

func (p ignoreRule) match(name string) bool {
	if !p.rooted && !p.slashed {
		// Without a slash, Helm matches the base name only.
		name = filepath.Base(name)
	}
	ok, err := filepath.Match(p.pattern, name)
	return err == nil && ok
}

// ignore reports whether Helm would leave the path out. Like Helm, a negated rule ignores
// every path it does NOT match (which is why "!README.md" cannot be used to re-include).
func (r ignoreRules) ignore(name string, isDir bool) bool {
	if name == "" || name == "." || name == "./" {
		return false
	}
	for _, p := range r {
		if p.negate {
			if p.mustDir && !isDir {
				return true
			}
			if !p.match(name) {
				return true
			}
			continue
		}
		if p.mustDir && !isDir {
			continue
		}
		if p.match(name) {
			return true
		}
	}
	return false
}

// chartFiles walks a chart directory and returns the files Helm would load (and package),
// sorted by path.
func chartFiles(dir string) ([]*File, error) {
	rules, err := parseIgnore(filepath.Join(dir, ".helmignore"))
	if err != nil {
		return nil, err
	}
	top := filepath.Clean(dir) + string(filepath.Separator)
	var files []*File
	err = filepath.Walk(dir, func(name string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n := strings.TrimPrefix(name, top)
		if n == "" || filepath.Clean(name) == filepath.Clean(dir) {
			return nil
		}
		n = filepath.ToSlash(n)
		if fi.IsDir() {
			if rules.ignore(n, true) {
				return filepath.SkipDir
			}
			return nil
		}
		if rules.ignore(n, false) {
			return nil
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("cannot load irregular file %s", name)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		files = append(files, &File{Name: n, Data: data})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, err
}

// loadChart loads a chart directory.
func loadChart(dir string) (*Chart, error) {
	files, err := chartFiles(dir)
	if err != nil {
		return nil, err
	}
	return loadFiles(files)
}

// loadFiles builds a chart (and its unpacked subcharts) from files relative to its root.
func loadFiles(files []*File) (*Chart, error) {
	c := &Chart{Values: map[string]interface{}{}}
	subcharts := map[string][]*File{}
	for _, f := range files {
		switch {
		case f.Name == "Chart.yaml":
			c.Metadata = &Metadata{}
			if err := yaml.Unmarshal(f.Data, c.Metadata); err != nil {
				return nil, fmt.Errorf("Chart.yaml: %w", err)
			}
		case f.Name == "Chart.lock", f.Name == "requirements.yaml", f.Name == "requirements.lock":
		case f.Name == "values.yaml":
			if err := yaml.Unmarshal(f.Data, &c.Values); err != nil {
				return nil, fmt.Errorf("values.yaml: %w", err)
			}
			if c.Values == nil {
				c.Values = map[string]interface{}{}
			}
		case f.Name == "values.schema.json":
			c.Schema = f.Data
		case strings.HasPrefix(f.Name, "templates/"):
			c.Templates = append(c.Templates, f)
		case strings.HasPrefix(f.Name, "charts/"):
			rest := strings.TrimPrefix(f.Name, "charts/")
			parts := strings.SplitN(rest, "/", 2)
			if len(parts) < 2 {
				if strings.HasSuffix(rest, ".tgz") {
					return nil, fmt.Errorf("%s: packed subcharts are not supported here (and .helmignore should exclude them)", f.Name)
				}
				c.Files = append(c.Files, f)
				continue
			}
			subcharts[parts[0]] = append(subcharts[parts[0]], &File{Name: parts[1], Data: f.Data})
		default:
			c.Files = append(c.Files, f)
		}
	}
	if c.Metadata == nil {
		return nil, errors.New("Chart.yaml is missing")
	}
	if c.Metadata.APIVersion != "v2" {
		return nil, fmt.Errorf("chart %s: apiVersion must be v2", c.Metadata.Name)
	}
	names := make([]string, 0, len(subcharts))
	for n := range subcharts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sub, err := loadFiles(subcharts[n])
		if err != nil {
			return nil, fmt.Errorf("charts/%s: %w", n, err)
		}
		sub.parent = c
		c.Deps = append(c.Deps, sub)
	}
	return c, nil
}

// checkDependencies fails like `helm template` when a declared dependency is not in charts/.
func checkDependencies(c *Chart) error {
	for _, d := range c.Metadata.Dependencies {
		found := false
		for _, sub := range c.Deps {
			if sub.Metadata.Name == d.Name {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("found in Chart.yaml, but missing in charts/ directory: %s", d.Name)
		}
	}
	return nil
}

// templatePath is a template's name as Helm reports it ("chart/templates/x.yaml").
func templatePath(c *Chart, f *File) string {
	return path.Join(c.FullPath(), f.Name)
}
