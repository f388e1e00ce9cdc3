package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	yaml "gopkg.in/yaml.v3"
)

// maxYAMLNodes bounds the nodes one document expands to, aliases
// included, against "billion laughs" documents; maxYAMLDepth bounds nesting
// (aliases included), so that no document can exhaust the goroutine stack.
// Kubernetes policies nest about 10 levels deep.
const (
	maxYAMLNodes = 1 << 20
	maxYAMLDepth = 100
)

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlToJSON converts one YAML document to JSON with YAML 1.2 scalars:
// unlike sigs.k8s.io/yaml (YAML 1.1), an unquoted y, n, yes, no, on or off
// stays a string, so `ns: y` means what it says. Duplicate keys are errors.
// Line numbers in errors are offset by lineOffset, the lines before the
// document in its file.
func yamlToJSON(doc []byte, lineOffset int) ([]byte, error) {
	j, _, err := yamlToJSONLines(doc, lineOffset)
	return j, err
}

// yamlToJSONLines is yamlToJSON that also returns the file line of every
// field and list element of the document.
func yamlToJSONLines(doc []byte, lineOffset int) ([]byte, fieldLines, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, nil, errors.New(yamlLineRE.ReplaceAllStringFunc(err.Error(), func(s string) string {
			l, _ := strconv.Atoi(s[len("line "):]) // the RE guarantees digits
			return fmt.Sprintf("line %d", l+lineOffset)
		}))
	}
	c := yamlConv{budget: maxYAMLNodes, lineOffset: lineOffset, expanding: map[*yaml.Node]bool{}, lines: fieldLines{}}
	v, err := c.value(&n, "")
	if err != nil {
		return nil, nil, err
	}
	j, err := json.Marshal(v)
	return j, c.lines, err
}

type yamlConv struct {
	budget     int
	lineOffset int
	depth      int
	// expanding holds the anchors whose alias is being expanded: meeting
	// one again means the alias contains itself.
	expanding map[*yaml.Node]bool
	lines     fieldLines
}

// field returns the path of key k under path.
func field(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func (c *yamlConv) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("yaml: line %d: %s", n.Line+c.lineOffset, fmt.Sprintf(format, args...))
}

// value converts n, found at path (recorded in c.lines by the caller).
func (c *yamlConv) value(n *yaml.Node, path string) (any, error) {
	c.budget--
	if c.budget < 0 {
		return nil, fmt.Errorf("yaml: line %d: document expands to more than %d nodes (aliases?): %w", n.Line+c.lineOffset, maxYAMLNodes, ErrTooLarge)
	}
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > maxYAMLDepth {
		return nil, fmt.Errorf("yaml: line %d: document nests more than %d levels deep (aliases included): %w", n.Line+c.lineOffset, maxYAMLDepth, ErrTooLarge)
	}
	switch n.Kind {
	case 0:
		return nil, nil // empty input
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0], path)
	case yaml.AliasNode:
		if c.expanding[n.Alias] {
			return nil, c.errorf(n, "alias *%s refers to itself (recursive alias)", n.Value)
		}
		c.expanding[n.Alias] = true
		defer delete(c.expanding, n.Alias)
		return c.value(n.Alias, path)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			c.lines.add(p, e.Line+c.lineOffset)
			v, err := c.value(e, p)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		return c.mapping(n, path)
	case yaml.ScalarNode:
		return c.scalar(n)
	}
	return nil, c.errorf(n, "unsupported YAML node")
}

func (c *yamlConv) mapping(n *yaml.Node, path string) (map[string]any, error) {
	out := make(map[string]any, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			return nil, c.errorf(k, "mapping keys must be scalars")
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if l, dup := lines[k.Value]; dup {
			return nil, c.errorf(k, "mapping key %q already defined at line %d", k.Value, l+c.lineOffset)
		}
		lines[k.Value] = k.Line
		c.lines.add(field(path, k.Value), k.Line+c.lineOffset)
		val, err := c.value(v, field(path, k.Value))
		if err != nil {
			return nil, err
		}
		out[k.Value] = val
	}
	// "<<: *base" merges keys the mapping does not set itself.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			v, err := c.value(src, path)
			if err != nil {
				return nil, err
			}
			mm, ok := v.(map[string]any)
			if !ok {
				return nil, c.errorf(src, "merge (<<) needs a mapping")
			}
			for k, val := range mm {
				if _, set := out[k]; !set {
					out[k] = val
				}
			}
		}
	}
	return out, nil
}

func (c *yamlConv) scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, c.errorf(n, "%v", err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			var u uint64
			if err := n.Decode(&u); err != nil {
				return nil, c.errorf(n, "integer %s out of range", n.Value)
			}
			return json.Number(strconv.FormatUint(u, 10)), nil
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, c.errorf(n, "%v", err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, c.errorf(n, "%s cannot be represented in JSON", n.Value)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	// Strings, timestamps, binary and custom tags keep their text.
	return n.Value, nil
}
