package main

// Values as Helm 3 computes them: user files merged in order, --set on top, then coalesced
// with the chart's and subcharts' defaults (null deletes a key, globals are copied into
// subcharts), disabled dependencies removed, and the result checked against
// values.schema.json with the JSON-Schema library Helm 3 uses (xeipuuv/gojsonschema).

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

const globalKey = "global"

func istable(v interface{}) bool {
	_, ok := v.(map[string]interface{})
	return ok
}

// deepCopy copies maps and slices so coalescing never changes a chart's defaults.
func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []interface{}:
		s := make([]interface{}, len(t))
		for i, x := range t {
			s[i] = deepCopy(x)
		}
		return s
	default:
		return v
	}
}

// mergeMaps is Helm's merge of successive -f files and --set: later wins, maps merge.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k]; ok {
				if bvm, ok := bv.(map[string]interface{}); ok {
					out[k] = mergeMaps(bvm, vm)
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

// coalesceTables fills dst with src's keys that dst lacks; a null in dst deletes the key.
func coalesceTables(dst, src map[string]interface{}) map[string]interface{} {
	if dst == nil {
		return src
	}
	for key, val := range src {
		if dv, ok := dst[key]; ok && dv == nil {
			delete(dst, key)
		} else if !ok {
			dst[key] = deepCopy(val)
		} else if istable(val) {
			if istable(dv) {
				coalesceTables(dv.(map[string]interface{}), val.(map[string]interface{}))
			}
		}
	}
	return dst
}

// coalesceGlobals copies the parent's globals into a subchart's values (parent wins for
// scalars, tables merge top-down), as Helm does.
func coalesceGlobals(dest, src map[string]interface{}) {
	dg, _ := dest[globalKey].(map[string]interface{})
	if dg == nil {
		dg = map[string]interface{}{}
	}
	sg, _ := src[globalKey].(map[string]interface{})
	for key, val := range sg {
		if istable(val) {
			vv := deepCopy(val).(map[string]interface{})
			if destv, ok := dg[key]; ok {
				if destm, ok := destv.(map[string]interface{}); ok {
					coalesceTables(vv, destm)
				}
			}
			dg[key] = vv
		} else if dv, ok := dg[key]; ok && istable(dv) {
			continue
		} else {
			dg[key] = val
		}
	}
	dest[globalKey] = dg
}

// coalesce merges the chart's default values (and its enabled subcharts') under v.
func coalesce(c *Chart, v map[string]interface{}) map[string]interface{} {
	for key, val := range c.Values {
		if value, ok := v[key]; ok {
			if value == nil {
				delete(v, key)
			} else if dest, ok := value.(map[string]interface{}); ok {
				if src, ok := val.(map[string]interface{}); ok {
					coalesceTables(dest, src)
				}
			}
		} else {
			v[key] = deepCopy(val)
		}
	}
	for _, sub := range c.Deps {
		name := sub.Metadata.Name
		if _, ok := v[name]; !ok {
			v[name] = map[string]interface{}{}
		}
		if dv, ok := v[name].(map[string]interface{}); ok {
			coalesceGlobals(dv, v)
			v[name] = coalesce(sub, dv)
		}
	}
	return v
}

// pathValue looks up "a.b.c" in values.
func pathValue(v map[string]interface{}, p string) (interface{}, bool) {
	parts := strings.Split(p, ".")
	var cur interface{} = v
	for _, part := range parts {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// processDependencyEnabled drops subcharts whose condition is false, like Helm: the first
// condition path that resolves to a boolean decides; without one the subchart is enabled.
func processDependencyEnabled(c *Chart, userVals map[string]interface{}) {
	merged := coalesce(c, deepCopy(userVals).(map[string]interface{}))
	var kept []*Chart
	for _, sub := range c.Deps {
		enabled := true
		for _, d := range c.Metadata.Dependencies {
			if d.Name != sub.Metadata.Name || d.Condition == "" {
				continue
			}
			for _, cond := range strings.Split(d.Condition, ",") {
				if v, ok := pathValue(merged, strings.TrimSpace(cond)); ok {
					if b, ok := v.(bool); ok {
						enabled = b
						break
					}
				}
			}
		}
		if enabled {
			kept = append(kept, sub)
		}
	}
	c.Deps = kept
}

// validateSchemas checks values against the chart's schema and each subchart's values
// against its own, collecting every message like Helm does.
func validateSchemas(c *Chart, values map[string]interface{}) error {
	var sb strings.Builder
	var walk func(c *Chart, v map[string]interface{})
	walk = func(c *Chart, v map[string]interface{}) {
		if c.Schema != nil {
			if err := validateAgainstSchema(c.Schema, v); err != nil {
				fmt.Fprintf(&sb, "%s:\n%s", c.Metadata.Name, err)
			}
		}
		for _, sub := range c.Deps {
			sv, _ := v[sub.Metadata.Name].(map[string]interface{})
			if sv == nil {
				sv = map[string]interface{}{}
			}
			walk(sub, sv)
		}
	}
	walk(c, values)
	if sb.Len() > 0 {
		return fmt.Errorf("values don't meet the specifications of the schema(s) in the following chart(s):\n%s", sb.String())
	}
	return nil
}

func validateAgainstSchema(schema []byte, values map[string]interface{}) error {
	valuesJSON, err := json.Marshal(values)
	if err != nil {
		return err
	}
	if _, err := yaml.YAMLToJSON(schema); err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(valuesJSON))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if result.Valid() {
		return nil
	}
	var sb strings.Builder
	for _, e := range result.Errors() {
		fmt.Fprintf(&sb, "- %s\n", e)
	}
	return fmt.Errorf("%s", sb.String())
}

// readValuesFile reads a -f file the way Helm does (YAML through JSON: numbers are float64).
func readValuesFile(name string) (map[string]interface{}, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	v := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return v, nil
}

// parseSet applies one --set argument (a=b,c.d=e, lists as {x,y}) to values, typing scalars
// like Helm's strvals: true/false, null, integers, otherwise strings. Backslash escapes the
// next character.
func parseSet(arg string, values map[string]interface{}) error {
	for _, pair := range splitUnescaped(arg, ',', true) {
		if pair == "" {
			continue
		}
		kv := splitUnescaped(pair, '=', false)
		if len(kv) != 2 {
			return fmt.Errorf("--set %q: expected key=value", pair)
		}
		keys := splitUnescaped(kv[0], '.', false)
		var val interface{}
		raw := kv[1]
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			list := []interface{}{}
			inner := raw[1 : len(raw)-1]
			if inner != "" {
				for _, item := range splitUnescaped(inner, ',', false) {
					list = append(list, typedVal(unescape(item)))
				}
			}
			val = list
		} else {
			val = typedVal(unescape(raw))
		}
		cur := values
		for i, k := range keys {
			k = unescape(k)
			if i == len(keys)-1 {
				cur[k] = val
				break
			}
			next, ok := cur[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				cur[k] = next
			}
			cur = next
		}
	}
	return nil
}

// splitUnescaped splits on sep outside backslash escapes (and, for commas, outside {...}).
func splitUnescaped(s string, sep rune, braces bool) []string {
	var parts []string
	var cur strings.Builder
	depth := 0
	escaped := false
	first := true
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case braces && r == '{':
			depth++
			cur.WriteRune(r)
		case braces && r == '}':
			depth--
			cur.WriteRune(r)
		case r == sep && depth == 0 && (sep != '=' || first):
			parts = append(parts, cur.String())
			cur.Reset()
			if sep == '=' {
				first = false
			}
		default:
			cur.WriteRune(r)
		}
	}
	parts = append(parts, cur.String())
	return parts
}

func unescape(s string) string {
	var out strings.Builder
	escaped := false
	for _, r := range s {
		if escaped {
			out.WriteRune(r)
			escaped = false
		} else if r == '\\' {
			escaped = true
		} else {
			out.WriteRune(r)
		}
	}
	return out.String()
}

func typedVal(s string) interface{} {
	switch strings.ToLower(s) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if len(s) > 0 && (s[0] != '0' || s == "0") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
	}
	return s
}
