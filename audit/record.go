package audit

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"
)

// KeyKind is the first key segment (after the store's prefix) of everything
// audit keeps: records under audit/log/<who>/, the retention at
// audit/retention.
const KeyKind = "audit"

// LogPrefix is the key part (after the store's prefix) under which records
// live, one sub-prefix per identity so that etcd roles can let a user add
// records under their own name only.
const LogPrefix = KeyKind + "/log/"

// RetentionKey holds the retention (a Go duration as JSON string).
const RetentionKey = KeyKind + "/retention"

// DefaultRetention is how long records are kept when no retention is set.
const DefaultRetention = 90 * 24 * time.Hour

// Actor is who makes a change and from where.
type Actor struct {
	// Who is the etcd identity: the user name given with --etcd-user, else
	// the common name of the client certificate, else "anonymous" (etcd
	// without authentication).
	Who string `json:"who"`
	// OSUser is the operating system user that ran the command.
	OSUser string `json:"osUser,omitempty"`
	// Host is the host name the command ran on.
	Host string `json:"host,omitempty"`
}

// Anonymous is Who when etcd is used without an identity.
const Anonymous = "anonymous"

// CurrentActor returns the caller's identity: etcdUser when set, else the
// CN of the certificate in certFile, plus the OS user and host name.
func CurrentActor(etcdUser, certFile string) (Actor, error) {
	a := Actor{Who: etcdUser}
	if a.Who == "" && certFile != "" {
		cn, err := CertCN(certFile)
		if err != nil {
			return Actor{}, err
		}
		a.Who = cn
	}
	if a.Who == "" {
		a.Who = Anonymous
	}
	if u, err := user.Current(); err == nil {
		a.OSUser = u.Username
	} else {
		a.OSUser = fmt.Sprintf("uid %d", os.Getuid())
	}
	if h, err := os.Hostname(); err == nil {
		a.Host = h
	}
	return a, nil
}

// CertCN returns the subject common name of the first certificate in a PEM
// file.
func CertCN(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("client certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("client certificate %s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("client certificate %s: %w", path, err)
	}
	return c.Subject.CommonName, nil
}

// Op is what a change did to its key.
type Op string

// The operations a record names.
const (
	Create Op = "create"
	Update Op = "update"
	Delete Op = "delete"
)

// Record is one change: who, what, when and from where.
type Record struct {
	Time time.Time `json:"time"`
	Actor
	Op Op `json:"op"`
	// Kind is the resource kind ("policy", "node", "namespace", ...) and
	// Name the key below it ("NetworkPolicy/default/deny").
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Diff lists changed fields of the value as "- path: old" and
	// "+ path: new" lines.
	Diff []string `json:"diff,omitempty"`
}

// kinds maps key kinds (first segment) to the names users know.
var kinds = map[string]string{
	"policies":   "policy",
	"nodes":      "node",
	"namespaces": "namespace",
	"endpoints":  "endpoint",
	"blocks":     "block",
	"bgppeers":   "bgppeer",
	"cluster":    "cluster",
	"alive":      "alive",
	"status":     "status",
	"auth":       "auth",
	KeyKind:      KeyKind,
}

// KindOf splits a key (without the store's prefix) into the record's kind
// and name.
func KindOf(rest string) (kind, name string) {
	k, name, _ := strings.Cut(rest, "/")
	if n, ok := kinds[k]; ok {
		return n, name
	}
	return k, name
}

// Kinds returns the kind names `skein audit --kind` accepts.
func Kinds() []string {
	return []string{"block", "bgppeer", "cluster", "endpoint", "namespace", "node", "policy", "restore"}
}

// New returns the record of a change of the key rest (without prefix)
// from before to after (nil: absent).
func New(a Actor, now time.Time, rest string, before, after []byte) Record {
	r := Record{Time: now.UTC(), Actor: a, Diff: Diff(before, after)}
	r.Kind, r.Name = KindOf(rest)
	switch {
	case after == nil:
		r.Op = Delete
	case before == nil:
		r.Op = Create
	default:
		r.Op = Update
	}
	return r
}

// WhoSegment is the key segment of an identity: escaped so that any CN
// (spaces, slashes) makes one segment.
func WhoSegment(who string) string { return url.PathEscape(who) }

// Key returns the key (without prefix) of r. Records sort by time within
// an identity; a random suffix keeps two records of one instant apart.
func Key(r Record) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return LogPrefix + WhoSegment(r.Who) + "/" + r.Time.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}

// Encode returns r as stored.
func Encode(r Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	return b, nil
}
