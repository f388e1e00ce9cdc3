package audit

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// Diff lists the fields that differ between two JSON values (nil: absent)
// as "- path: old" and "+ path: new" lines, sorted by path. A value that is
// not JSON is compared whole.
func Diff(before, after []byte) []string {
	a, b := flatten(before), flatten(after)
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		va, inA := a[p]
		vb, inB := b[p]
		if inA && inB && va == vb {
			continue
		}
		if inA {
			out = append(out, "- "+p+": "+va)
		}
		if inB {
			out = append(out, "+ "+p+": "+vb)
		}
	}
	return out
}

// flatten maps each leaf path of a JSON value to its JSON text.
func flatten(raw []byte) map[string]string {
	out := map[string]string{}
	if raw == nil {
		return out
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		out["."] = strconv.Quote(string(raw))
		return out
	}
	walk(".", v, out)
	return out
}

func walk(path string, v any, out map[string]string) {
	join := func(k string) string {
		if path == "." {
			return k
		}
		return path + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[path] = "{}"
		}
		for k, e := range t {
			walk(join(k), e, out)
		}
	case []any:
		if len(t) == 0 {
			out[path] = "[]"
		}
		for i, e := range t {
			walk(fmt.Sprintf("%s[%d]", path, i), e, out)
		}
	default:
		b, _ := json.Marshal(t) // decoded JSON scalars always encode
		out[path] = string(b)
	}
}
