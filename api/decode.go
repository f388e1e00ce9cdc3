package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Limits of DecodeDocuments. Policy files of tens of thousands of objects
// fit; anything larger is almost certainly a mistake (or an attack on the
// YAML parser).
const (
	MaxFileBytes     = 32 << 20
	MaxDocumentBytes = 1 << 20
	MaxDocuments     = 50000
)

// ErrTooLarge is returned (wrapped) when input exceeds a decoding limit.
var ErrTooLarge = errors.New("huge documents are not accepted")

// DocumentError locates a failure in a multi-document file.
type DocumentError struct {
	File  string // file name as given to DecodeDocuments
	Index int    // 1-based document number, counting non-empty documents
	Line  int    // 1-based line where the document starts
	Err   error  // what is wrong; FieldErrors after validation
}

// Error returns "file: document N (line L): error".
func (e *DocumentError) Error() string {
	return fmt.Sprintf("%s: document %d (line %d): %v", e.File, e.Index, e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e *DocumentError) Unwrap() error { return e.Err }

// PolicyKeyKind is the first key segment of stored policies:
// policies/<kind>/<namespace or _>/<name>.
const PolicyKeyKind = "policies"

// clusterScopedSegment stands for the namespace of cluster-scoped objects in keys.
const clusterScopedSegment = "_"

// IsPolicyKind reports whether kind is one of the four stored policy kinds.
func IsPolicyKind(kind string) bool {
	return kind == KindNetworkPolicy || kind == KindAdminNetworkPolicy || kind == KindBaselineAdminNetworkPolicy ||
		kind == KindClusterNetworkPolicy
}

// ClusterScoped reports whether objects of kind have no namespace.
func ClusterScoped(kind string) bool {
	return kind == KindAdminNetworkPolicy || kind == KindBaselineAdminNetworkPolicy || kind == KindNamespace ||
		kind == KindClusterNetworkPolicy || kind == KindNode
}

// PolicyKey returns the key of a policy relative to the store prefix:
// "policies/<kind>/<namespace or _>/<name>".
func PolicyKey(kind, namespace, name string) string {
	if namespace == "" {
		namespace = clusterScopedSegment
	}
	return PolicyKeyKind + "/" + kind + "/" + namespace + "/" + name
}

// ParsePolicyKey reverses PolicyKey (namespace "" for cluster-scoped
// kinds); ok is false for keys that are not policy keys, such as other
// entries of store.Snapshot.Other.
func ParsePolicyKey(key string) (kind, namespace, name string, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != PolicyKeyKind || !IsPolicyKind(parts[1]) || parts[2] == "" || parts[3] == "" {
		return "", "", "", false
	}
	namespace = parts[2]
	if namespace == clusterScopedSegment {
		namespace = ""
	}
	return parts[1], namespace, parts[3], true
}

// newObject returns an empty object for apiVersion and kind.
func newObject(apiVersion, kind string) (Object, error) {
	want := map[string]string{
		KindNetworkPolicy:              NetworkingV1,
		KindAdminNetworkPolicy:         PolicyV1Alpha1,
		KindBaselineAdminNetworkPolicy: PolicyV1Alpha1,
		KindNamespace:                  CoreV1,
		KindEndpoint:                   SkeinV1,
		KindNode:                       SkeinV1,
	}
	if kind == "" {
		return nil, FieldError{Path: "kind", Msg: "required value"}
	}
	if kind == KindClusterNetworkPolicy {
		// Upstream serves the same schema as v1beta1 and v1alpha2.
		if apiVersion != PolicyV1Beta1 && apiVersion != PolicyV1Alpha2 {
			return nil, FieldError{Path: "apiVersion", Msg: fmt.Sprintf("unknown apiVersion %q for kind %s (want %s or %s)", apiVersion, kind, PolicyV1Beta1, PolicyV1Alpha2)}
		}
		return &ClusterNetworkPolicy{}, nil
	}
	v, ok := want[kind]
	if !ok {
		return nil, FieldError{Path: "kind", Msg: fmt.Sprintf("unknown kind %q (want NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy, Namespace, Endpoint or Node)", kind)}
	}
	if apiVersion != v {
		return nil, FieldError{Path: "apiVersion", Msg: fmt.Sprintf("unknown apiVersion %q for kind %s (want %s)", apiVersion, kind, v)}
	}
	switch kind {
	case KindNetworkPolicy:
		return &NetworkPolicy{}, nil
	case KindAdminNetworkPolicy:
		return &AdminNetworkPolicy{}, nil
	case KindBaselineAdminNetworkPolicy:
		return &BaselineAdminNetworkPolicy{}, nil
	case KindNamespace:
		return &NamespaceDoc{}, nil
	case KindNode:
		return &NodeDoc{}, nil
	default:
		return &EndpointDoc{}, nil
	}
}

// DefaultNamespace is the namespace of namespaced documents that name none,
// as with kubectl.
const DefaultNamespace = "default"

// Defaults applies decode-time defaulting to o: the namespace of namespaced
// objects ("default"), none for cluster-scoped ones, policyTypes and port
// protocols (TCP).
func Defaults(o Object) {
	switch v := o.(type) {
	case *NetworkPolicy:
		if v.Namespace == "" {
			v.Namespace = DefaultNamespace
		}
		PolicyDefaults(v)
	case *AdminNetworkPolicy:
		v.Namespace = ""
		AdminPolicyPortDefaults(v.Spec.Ingress, v.Spec.Egress)
	case *BaselineAdminNetworkPolicy:
		v.Namespace = ""
		AdminPolicyPortDefaults(v.Spec.Ingress, v.Spec.Egress)
	case *ClusterNetworkPolicy:
		v.Namespace = ""
	case *NamespaceDoc:
		v.Namespace = ""
	case *NodeDoc:
		v.Namespace = ""
	case *EndpointDoc:
		if v.Namespace == "" {
			v.Namespace = DefaultNamespace
		}
		for i := range v.Ports {
			if v.Ports[i].Protocol == "" {
				v.Ports[i].Protocol = ProtocolTCP
			}
		}
	}
}

// DecodePolicy decodes a stored policy (the JSON value at PolicyKey, as in
// store.Snapshot.Other), defaults and validates it. Unknown fields are
// ignored so that older agents read objects written by newer CLIs.
func DecodePolicy(kind string, raw []byte) (Object, error) {
	if !IsPolicyKind(kind) {
		return nil, fmt.Errorf("decode policy: %q is not a policy kind", kind)
	}
	if err := CheckDuplicateKeys(raw, 0); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	var tm TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	if tm.Kind != kind {
		return nil, fmt.Errorf("decode %s: value has kind %q", kind, tm.Kind)
	}
	o, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, jsonError(err))
	}
	Defaults(o)
	if err := ValidateObject(o); err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, objectName(o), err)
	}
	return o, nil
}

// objectName returns "ns/name", or "name" for cluster-scoped objects.
func objectName(o Object) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

// ObjectName returns "ns/name", or "name" for cluster-scoped objects.
func ObjectName(o Object) string { return objectName(o) }

// document is one document of a file, as JSON, before decoding.
type document struct {
	line  int    // where it starts in the file
	json  []byte // nil when yamlErr is set
	err   error
	lines fieldLines // line of each field in the file; nil when unknown
}

// DecodeDocuments decodes a file of YAML documents separated by "---", or of
// JSON (one object, a stream of objects, or an array of objects). A
// document of kind List (apiVersion v1) contributes its items. Every object
// is decoded strictly (unknown fields are errors), defaulted (see Defaults)
// and validated. Any bad document rejects the whole file with a
// *DocumentError naming name, the document and its first line. Empty
// documents are skipped. Two objects of the same kind, namespace and name are
// an error.
func DecodeDocuments(name string, data []byte) ([]Object, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the limit of %d: %w", name, len(data), MaxFileBytes, ErrTooLarge)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	var err error
	if looksLikeJSON(data) {
		docs, err = splitJSON(data)
	} else {
		docs, err = splitYAML(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []Object
	seen := map[string]int{}
	for i, d := range docs {
		derr := func(err error) error { return &DocumentError{File: name, Index: i + 1, Line: d.line, Err: err} }
		if d.err != nil {
			return nil, derr(d.err)
		}
		objs, err := decodeDocument(d.json)
		if err != nil {
			return nil, derr(withLines(err, d.lines))
		}
		for j, o := range objs {
			key := o.GetKind() + " " + objectName(o)
			if prev, dup := seen[key]; dup {
				err := fmt.Errorf("%s %s is also defined in document %d", o.GetKind(), objectName(o), prev)
				if len(objs) > 1 || isList(d.json) {
					err = fmt.Errorf("items[%d]: %w", j, err)
				}
				return nil, derr(err)
			}
			seen[key] = i + 1
		}
		out = append(out, objs...)
	}
	return out, nil
}

func isList(j []byte) bool {
	var tm TypeMeta
	return json.Unmarshal(j, &tm) == nil && tm.Kind == "List"
}

// decodeDocument decodes one JSON document: an object or a List of them.
func decodeDocument(j []byte) ([]Object, error) {
	var tm TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, errors.New("not an object")
	}
	if tm.Kind != "List" {
		o, err := decodeObject(j)
		if err != nil {
			return nil, err
		}
		return []Object{o}, nil
	}
	var list struct {
		TypeMeta `json:",inline"`
		Metadata json.RawMessage   `json:"metadata,omitempty"`
		Items    []json.RawMessage `json:"items"`
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, jsonError(err)
	}
	if list.APIVersion != CoreV1 {
		return nil, FieldError{Path: "apiVersion", Msg: fmt.Sprintf("unknown apiVersion %q for kind List (want v1)", list.APIVersion)}
	}
	out := make([]Object, 0, len(list.Items))
	for i, item := range list.Items {
		o, err := decodeObject(item)
		if err != nil {
			return nil, prefixPaths(err, fmt.Sprintf("items[%d]", i))
		}
		out = append(out, o)
	}
	return out, nil
}

// decodeObject decodes, defaults and validates one object strictly.
func decodeObject(j []byte) (Object, error) {
	var tm TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, errors.New("not an object")
	}
	o, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	generic, err := genericObject(j)
	if err != nil {
		return nil, err
	}
	var unknown FieldErrors
	unknownFields(reflect.TypeOf(o), generic, "", &unknown)
	if len(unknown) > 0 {
		return nil, unknown
	}
	j, err = json.Marshal(generic)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o); err != nil {
		return nil, jsonError(err)
	}
	Defaults(o)
	if err := ValidateObject(o); err != nil {
		return nil, err
	}
	return o, nil
}

// prefixPaths puts prefix before the paths of field errors, so that they
// still name the field (and find its line); other errors get it as text.
func prefixPaths(err error, prefix string) error {
	switch e := err.(type) {
	case FieldError:
		e.Path = joinPath(prefix, e.Path)
		return e
	case FieldErrors:
		out := make(FieldErrors, len(e))
		for i, fe := range e {
			fe.Path = joinPath(prefix, fe.Path)
			out[i] = fe
		}
		return out
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func joinPath(prefix, path string) string {
	if path == "" {
		return prefix
	}
	return prefix + "." + path
}

// withLines sets the file line of each field error from lines.
func withLines(err error, lines fieldLines) error {
	if lines == nil {
		return err
	}
	switch e := err.(type) {
	case FieldError:
		e.Line = lines.lookup(e.Path)
		return e
	case FieldErrors:
		out := make(FieldErrors, len(e))
		for i, fe := range e {
			fe.Line = lines.lookup(fe.Path)
			out[i] = fe
		}
		return out
	}
	return err
}

// serverMetadata are metadata fields the API server sets. They are dropped,
// with status, so that `kubectl get -o yaml` output can be applied.
var serverMetadata = []string{
	"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
	"deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences", "finalizers",
}

// genericObject decodes j as a JSON object without server-set fields.
func genericObject(j []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("not an object")
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range serverMetadata {
			delete(md, k)
		}
	}
	return m, nil
}

// jsonError rewrites encoding/json errors into field-path form.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldError{Path: te.Field, Msg: fmt.Sprintf("invalid type: got a %s, want %s", te.Value, kindName(te.Type))}
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	}
	return t.String()
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownFields walks a generically decoded value alongside t and records
// object keys that t has no field for, case-sensitively (encoding/json
// would accept "PodSelector" for "podSelector"; the API server does not),
// and scalars where a string is due, with their exact path. Other type
// mismatches are left to the typed decode.
func unknownFields(t reflect.Type, v any, path string, out *FieldErrors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[IntOrString]() {
		if !isIntOrString(v) {
			b, _ := json.Marshal(v) // v came from json.Unmarshal
			*out = append(*out, FieldError{Path: path, Msg: fmt.Sprintf("invalid value %s: want an integer or a string", b)})
		}
		return
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.String:
		switch v := v.(type) {
		case bool:
			*out = append(*out, FieldError{Path: path, Msg: fmt.Sprintf("invalid type: got the boolean %v, want a string (quote the value)", v)})
		case json.Number:
			*out = append(*out, FieldError{Path: path, Msg: fmt.Sprintf("invalid type: got the number %s, want a string (quote the value)", v)})
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := map[string]reflect.Type{}
		jsonFields(t, fields)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				*out = append(*out, FieldError{Path: p, Msg: "unknown field"})
				continue
			}
			unknownFields(ft, m[k], p, out)
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range l {
			unknownFields(t.Elem(), e, idx(path, i), out)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			unknownFields(t.Elem(), m[k], path+"["+k+"]", out)
		}
	}
}

// isIntOrString reports whether a generically decoded value (numbers as
// json.Number) fits an IntOrString.
func isIntOrString(v any) bool {
	switch v := v.(type) {
	case string:
		return true
	case json.Number:
		_, err := strconv.ParseInt(string(v), 10, 32)
		return err == nil
	}
	return false
}

// jsonFields records the JSON names of t's fields, descending into
// embedded structs as encoding/json does.
func jsonFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			jsonFields(f.Type, into)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = f.Type
	}
}

// looksLikeJSON reports whether data starts like a JSON array or an object
// with a quoted key; a YAML flow mapping ({apiVersion: v1, ...}) does not.
func looksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 {
		return false
	}
	if t[0] == '[' {
		return true
	}
	if t[0] != '{' {
		return false
	}
	t = bytes.TrimLeft(t[1:], " \t\r\n")
	return len(t) > 0 && (t[0] == '"' || t[0] == '}')
}

// splitJSON splits a JSON stream (objects or arrays of objects) into
// documents.
func splitJSON(data []byte) ([]document, error) {
	var docs []document
	lines := &lineCounter{b: data}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		start := skipSpace(data, int(dec.InputOffset()))
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, jsonSyntaxError(data, err)
		}
		if raw[0] != '[' {
			line := lines.at(start)
			fl := fieldLines{}
			if err := addDoc(&docs, line, raw, scanJSON(raw, line-1, fl)); err != nil {
				return nil, err
			}
			docs[len(docs)-1].lines = fl
			continue
		}
		// An array: each element is a document.
		adec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := adec.Token(); err != nil {
			return nil, err
		}
		for adec.More() {
			off := start + skipSpace(raw, int(adec.InputOffset()))
			var elem json.RawMessage
			if err := adec.Decode(&elem); err != nil {
				return nil, err
			}
			line := lines.at(off)
			fl := fieldLines{}
			if err := addDoc(&docs, line, elem, scanJSON(elem, line-1, fl)); err != nil {
				return nil, err
			}
			docs[len(docs)-1].lines = fl
		}
	}
}

// jsonSyntaxError adds the line to a JSON syntax error.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("line %d: invalid JSON: %s", lineAt(data, int(se.Offset)), se.Error())
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// addDoc appends a document, enforcing the size and count limits.
func addDoc(docs *[]document, line int, j []byte, err error) error {
	n := len(*docs) + 1
	if n > MaxDocuments {
		return fmt.Errorf("more than %d documents: %w", MaxDocuments, ErrTooLarge)
	}
	if len(j) > MaxDocumentBytes {
		err = fmt.Errorf("%d bytes, more than the limit of %d per document: %w", len(j), MaxDocumentBytes, ErrTooLarge)
		j = nil
	}
	*docs = append(*docs, document{line: line, json: j, err: err})
	return nil
}

// skipSpace returns the offset of the first byte at or after off that is
// neither JSON whitespace nor a comma.
func skipSpace(b []byte, off int) int {
	for off < len(b) && strings.IndexByte(" \t\r\n,", b[off]) >= 0 {
		off++
	}
	return off
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(b []byte, off int) int {
	return 1 + bytes.Count(b[:min(off, len(b))], []byte("\n"))
}

// lineCounter returns lines of increasing offsets in b in linear total time.
type lineCounter struct {
	b    []byte
	off  int
	line int
}

func (c *lineCounter) at(off int) int {
	off = min(off, len(c.b))
	if off < c.off {
		c.off, c.line = 0, 0
	}
	c.line += bytes.Count(c.b[c.off:off], []byte("\n"))
	c.off = off
	return c.line + 1
}

// splitYAML splits data at "---" lines and converts each non-empty
// document to JSON.
func splitYAML(data []byte) ([]document, error) {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	chunkStart := 0 // index into lines of the first line of the current chunk
	flush := func(end int) error {
		chunk := bytes.Join(lines[chunkStart:end], nil)
		first := -1
		for i := chunkStart; i < end; i++ {
			l := bytes.TrimSpace(lines[i])
			if len(l) > 0 && l[0] != '#' && l[0] != '%' {
				first = i
				break
			}
		}
		if first < 0 {
			return nil // empty document
		}
		if len(docs) >= MaxDocuments {
			return fmt.Errorf("more than %d documents: %w", MaxDocuments, ErrTooLarge)
		}
		if len(chunk) > MaxDocumentBytes {
			return addDoc(&docs, first+1, chunk, nil)
		}
		j, fl, err := yamlToJSONLines(chunk, chunkStart)
		if err != nil {
			return addDoc(&docs, first+1, nil, err)
		}
		if t := bytes.TrimSpace(j); bytes.Equal(t, []byte("null")) {
			return nil // only comments
		}
		if err := addDoc(&docs, first+1, j, nil); err != nil {
			return err
		}
		docs[len(docs)-1].lines = fl
		return nil
	}
	for i, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) || bytes.Equal(t, []byte("...")) {
			if err := flush(i); err != nil {
				return nil, err
			}
			chunkStart = i + 1
			if rest := bytes.TrimSpace(t[3:]); len(rest) > 0 && rest[0] != '#' {
				return nil, fmt.Errorf("line %d: content after the document separator is not supported", i+1)
			}
		}
	}
	if err := flush(len(lines)); err != nil {
		return nil, err
	}
	return docs, nil
}
