package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// kindAuth holds Skein's record of granted roles (auth/users/<user>), which
// explains etcd's permission errors; etcd's own users and roles enforce.
const kindAuth = "auth"

// ErrPermissionDenied wraps etcd's permission error with the role and key.
var ErrPermissionDenied = errors.New("permission denied")

// AuthUser is what `skein auth grant` recorded for an etcd user.
type AuthUser struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Namespaces limits a policy-admin; empty means every namespace.
	Namespaces []string `json:"namespaces,omitempty"`
}

// AuthUserKey returns the key (without prefix) of a user's record.
func AuthUserKey(name string) string { return kindAuth + "/users/" + url.PathEscape(name) }

// auditOps returns the op that records the change of key from before to
// after (nil: absent), or none when the client records nothing.
func (c *Client) auditOps(key string, before, after []byte) ([]clientv3.Op, error) {
	if c.actor == nil {
		return nil, nil
	}
	r := audit.New(*c.actor, time.Now(), strings.TrimPrefix(key, c.prefix), before, after)
	b, err := audit.Encode(r)
	if err != nil {
		return nil, err
	}
	return []clientv3.Op{clientv3.OpPut(c.prefix+audit.Key(r), string(b))}, nil
}

// writeErr names the role and key of a permission error, so that a denied
// write reads "permission denied: role viewer cannot write policies/...".
func (c *Client) writeErr(ctx context.Context, key string, err error) error {
	if !errors.Is(err, rpctypes.ErrPermissionDenied) && !errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
		return err
	}
	rest := strings.TrimPrefix(key, c.prefix)
	who := c.identity
	if who == "" {
		who = audit.Anonymous
	}
	role := "(none granted)"
	if c.identity != "" {
		var u AuthUser
		if gerr := c.get(ctx, c.prefix+AuthUserKey(c.identity), &u); gerr == nil {
			role = u.Role
			if len(u.Namespaces) > 0 {
				role += " (namespaces " + strings.Join(u.Namespaces, ",") + ")"
			}
		}
	}
	return fmt.Errorf("%w: role %s cannot write %s (user %s)", ErrPermissionDenied, role, rest, who)
}

// replaceKey is the one audited read-compare-write of a single key: next
// gets the current value (nil when absent) and returns the new one (nil
// deletes) and whether to write. The write and its audit record go in one
// transaction guarded by the key's revision, retried on conflict. It
// returns the value it replaced.
func (c *Client) replaceKey(ctx context.Context, key string, next func(old []byte) (nw []byte, write bool, err error)) (old []byte, wrote bool, err error) {
	for attempt := range casAttempts {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			return nil, false, fmt.Errorf("get %s: %w", key, err)
		}
		var rev int64
		old = nil
		if len(resp.Kvs) > 0 {
			old, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		nw, write, err := next(old)
		if err != nil || !write {
			return old, false, err
		}
		var op clientv3.Op
		if nw == nil {
			op = clientv3.OpDelete(key)
		} else {
			op = clientv3.OpPut(key, string(nw))
		}
		rec, err := c.auditOps(key, old, nw)
		if err != nil {
			return old, false, err
		}
		tresp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(append([]clientv3.Op{op}, rec...)...).
			Commit()
		if err != nil {
			return old, false, fmt.Errorf("write %s: %w", key, c.writeErr(ctx, key, err))
		}
		if tresp.Succeeded {
			return old, true, nil
		}
		if !sleep(ctx, time.Duration(rand.Int64N(int64(attempt+1)*int64(time.Millisecond)))) {
			return old, false, fmt.Errorf("write %s: %w", key, ctx.Err())
		}
	}
	return nil, false, fmt.Errorf("write %s: value kept changing, gave up after %d attempts", key, casAttempts)
}

// AuditRecords returns every audit record, oldest first. Undecodable
// records are reported in the error next to the others.
func (c *Client) AuditRecords(ctx context.Context) ([]audit.Record, error) {
	p := c.prefix + audit.LogPrefix
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]audit.Record, 0, len(resp.Kvs))
	var errs []error
	for _, kv := range resp.Kvs {
		var r audit.Record
		if err := api.UnmarshalJSON(kv.Value, &r); err != nil {
			errs = append(errs, fmt.Errorf("decode %s: %w", kv.Key, err))
			continue
		}
		out = append(out, r)
	}
	return audit.Select(out, audit.Filter{}), errors.Join(errs...)
}

// AuditRetention returns how long records are kept (audit.DefaultRetention
// when none is set).
func (c *Client) AuditRetention(ctx context.Context) (time.Duration, error) {
	var s string
	err := c.get(ctx, c.prefix+audit.RetentionKey, &s)
	if errors.Is(err, ErrNotFound) {
		return audit.DefaultRetention, nil
	}
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s%s: %q is not a positive duration", c.prefix, audit.RetentionKey, s)
	}
	return d, nil
}

// SetAuditRetention sets how long records are kept, audited like any change.
func (c *Client) SetAuditRetention(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("audit retention %s: want a positive duration", d)
	}
	b, err := json.Marshal(d.String())
	if err != nil {
		return fmt.Errorf("encode audit retention: %w", err)
	}
	_, _, err = c.replaceKey(ctx, c.prefix+audit.RetentionKey, func(old []byte) ([]byte, bool, error) {
		return b, !bytes.Equal(old, b), nil
	})
	return err
}

// PruneAudit deletes the records older than the retention, in one
// transaction per 100, and returns how many it deleted.
func (c *Client) PruneAudit(ctx context.Context, now time.Time) (int, error) {
	ret, err := c.AuditRetention(ctx)
	if err != nil {
		return 0, err
	}
	p := c.prefix + audit.LogPrefix
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", p, err)
	}
	cut := now.Add(-ret)
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		var r audit.Record
		if err := api.UnmarshalJSON(kv.Value, &r); err != nil || !r.Time.Before(cut) {
			continue // an undecodable record is evidence: an operator removes it
		}
		ops = append(ops, clientv3.OpDelete(string(kv.Key)))
	}
	n := 0
	for len(ops) > 0 {
		chunk := ops[:min(len(ops), maxTxnBlocks)]
		ops = ops[len(chunk):]
		if _, err := c.cli.Txn(ctx).Then(chunk...).Commit(); err != nil {
			return n, fmt.Errorf("prune %s: %w", p, c.writeErr(ctx, p, err))
		}
		n += len(chunk)
	}
	return n, nil
}

// PutAuthUser records what `skein auth grant` gave a user, audited.
func (c *Client) PutAuthUser(ctx context.Context, u AuthUser) error {
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode user %s: %w", u.Name, err)
	}
	return c.putKey(ctx, c.prefix+AuthUserKey(u.Name), b)
}

// DeleteAuthUser removes a user's record, audited; ErrNotFound when absent.
func (c *Client) DeleteAuthUser(ctx context.Context, name string) error {
	return c.deleteKey(ctx, c.prefix+AuthUserKey(name))
}

// AuthUsers returns the recorded grants by user name.
func (c *Client) AuthUsers(ctx context.Context) (map[string]AuthUser, error) {
	us, err := list[AuthUser](ctx, c, c.prefix+kindAuth+"/users/")
	if err != nil {
		return nil, err
	}
	out := make(map[string]AuthUser, len(us))
	for _, u := range us {
		out[u.Name] = u
	}
	return out, nil
}

// RawKeys returns every key under the prefix (without it) and its value,
// read at one revision, which it returns too.
func (c *Client) RawKeys(ctx context.Context) (map[string][]byte, int64, error) {
	resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("get %s*: %w", c.prefix, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), c.prefix)] = kv.Value
	}
	return out, resp.Header.Revision, nil
}

// RawWrite is one key (without prefix) to put, or to delete when Value is nil.
type RawWrite struct {
	Key   string
	Value []byte
}

// WriteRaw writes ws in transactions of at most 100 operations, each
// guarded by the revision rev the caller planned them at (nothing under
// the prefix changed since), so nothing is written over a change it did
// not see; the first carries one audit record of kind what, name name and
// the summary lines. With more than 100 writes a failure can leave the
// earlier transactions applied; rerunning the same restore finishes it.
func (c *Client) WriteRaw(ctx context.Context, rev int64, what, name string, summary []string, ws []RawWrite) error {
	ops := make([]clientv3.Op, 0, len(ws)+1)
	if c.actor != nil {
		r := audit.Record{Time: time.Now().UTC(), Actor: *c.actor, Op: audit.Update, Kind: what, Name: name, Diff: summary}
		b, err := audit.Encode(r)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(c.prefix+audit.Key(r), string(b)))
	}
	for _, w := range ws {
		if w.Value == nil {
			ops = append(ops, clientv3.OpDelete(c.prefix+w.Key))
		} else {
			ops = append(ops, clientv3.OpPut(c.prefix+w.Key, string(w.Value)))
		}
	}
	// Every kind but heartbeats, status records and audit records, which
	// change on their own while a restore runs.
	var guard []clientv3.Cmp
	for _, k := range []string{kindCluster, kindNodes + "/", kindBlocks + "/", kindEndpoints + "/", kindNamespaces + "/",
		api.PolicyKeyKind + "/", api.BGPPeerKeyKind + "/", kindAuth + "/"} {
		guard = append(guard, clientv3.Compare(clientv3.ModRevision(c.prefix+k).WithPrefix(), "<", rev+1))
	}
	for i := 0; len(ops) > 0; i++ {
		chunk := ops[:min(len(ops), maxTxnBlocks)]
		ops = ops[len(chunk):]
		txn := c.cli.Txn(ctx)
		if i == 0 {
			txn = txn.If(guard...)
		}
		resp, err := txn.Then(chunk...).Commit()
		if err != nil {
			return fmt.Errorf("%s: write %s*: %w", what, c.prefix, c.writeErr(ctx, c.prefix, err))
		}
		if !resp.Succeeded {
			return fmt.Errorf("%s: %s* changed since it was read at revision %d: %w", what, c.prefix, rev, ErrChanged)
		}
	}
	return nil
}
