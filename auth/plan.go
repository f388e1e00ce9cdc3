package auth

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// The roles a user can be granted.
const (
	Viewer       = "viewer"
	PolicyAdmin  = "policy-admin"
	NetworkAdmin = "network-admin"
	Node         = "node"
)

// Roles lists the role names in the order help texts show them.
var Roles = []string{Viewer, PolicyAdmin, NetworkAdmin, Node}

// rolePrefix starts the etcd role of each Skein role ("skein-viewer"), and
// userRolePrefix a user's own role (audit records under their name,
// namespace limits).
const (
	rolePrefix     = "skein-"
	userRolePrefix = "skein-user-"
	// RootRole is etcd's built-in role that may change users and roles.
	RootRole = "root"
)

// EtcdRole returns the etcd role of a Skein role.
func EtcdRole(role string) string { return rolePrefix + role }

// UserRole returns the etcd role that belongs to one user.
func UserRole(user string) string { return userRolePrefix + url.PathEscape(user) }

// Perm is one etcd permission: a key range and read, write or both.
type Perm struct {
	Key, RangeEnd string
	Type          clientv3.PermissionType
}

func (p Perm) String() string {
	t := map[clientv3.PermissionType]string{read: "read", write: "write", readWrite: "readwrite"}[p.Type]
	if p.RangeEnd == "" {
		return fmt.Sprintf("%s %s", t, p.Key)
	}
	return fmt.Sprintf("%s %s*", t, p.Key)
}

// The permission types, typed as RoleGrantPermission takes them.
const (
	read      = clientv3.PermissionType(clientv3.PermRead)
	write     = clientv3.PermissionType(clientv3.PermWrite)
	readWrite = clientv3.PermissionType(clientv3.PermReadWrite)
)

func prefixPerm(key string, t clientv3.PermissionType) Perm {
	return Perm{Key: key, RangeEnd: clientv3.GetPrefixRangeEnd(key), Type: t}
}

// NodeWrites are the key kinds an agent writes: its node record (nodes/),
// heartbeat and status (alive/, status/), block claims and releases
// (blocks/), its endpoints and the namespaces they name (endpoints/,
// namespaces/: EnsureNamespace on a pod's first ADD).
var NodeWrites = []string{"alive", "blocks", "endpoints", "namespaces", "nodes", "status"}

// policyAdminWrites are the kinds a policy-admin writes without limits.
var policyAdminWrites = []string{api.PolicyKeyKind, "endpoints", "namespaces"}

// BaseRoles returns the etcd roles `skein auth setup` creates, with their
// permissions, for the store prefix p (ending in "/").
func BaseRoles(p string) map[string][]Perm {
	all := prefixPerm(p, read)
	writes := func(kinds []string) []Perm {
		out := []Perm{all}
		for _, k := range kinds {
			out = append(out, prefixPerm(p+k+"/", write))
		}
		return out
	}
	return map[string][]Perm{
		EtcdRole(Viewer):       {all},
		EtcdRole(PolicyAdmin):  writes(policyAdminWrites),
		EtcdRole(NetworkAdmin): {prefixPerm(p, readWrite)},
		EtcdRole(Node):         writes(NodeWrites),
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Grant is what one user holds.
type Grant struct {
	// Roles are the etcd roles to grant (base roles, root, the user's own).
	Roles []string
	// Own are the permissions of the user's own role; none means no own role.
	Own []Perm
}

// ErrUnknownRole is returned for a role name Skein does not have.
var ErrUnknownRole = fmt.Errorf("unknown role (want %s)", strings.Join(Roles, ", "))

// PlanGrant returns the etcd roles user needs for role, limited to
// namespaces for a policy-admin (none: every namespace). Every role but
// viewer and node may add audit records under the user's own name; no
// role but network-admin may change anyone else's.
func PlanGrant(p, user, role string, namespaces []string) (Grant, error) {
	if !slices.Contains(Roles, role) {
		return Grant{}, fmt.Errorf("role %q: %w", role, ErrUnknownRole)
	}
	if len(namespaces) > 0 && role != PolicyAdmin {
		return Grant{}, fmt.Errorf("--namespaces limits a %s only, not a %s", PolicyAdmin, role)
	}
	if user == "" || user == "root" {
		return Grant{}, fmt.Errorf("user %q: want a user name other than root (etcd's own administrator)", user)
	}
	auditPerm := prefixPerm(p+audit.LogPrefix+audit.WhoSegment(user)+"/", write)
	switch role {
	case Viewer, Node:
		return Grant{Roles: []string{EtcdRole(role)}}, nil
	case NetworkAdmin:
		// Changing users and roles needs etcd's root role.
		return Grant{Roles: []string{EtcdRole(role), RootRole}}, nil
	}
	if len(namespaces) == 0 {
		return Grant{Roles: []string{EtcdRole(PolicyAdmin), UserRole(user)}, Own: []Perm{auditPerm}}, nil
	}
	own := []Perm{auditPerm}
	for _, ns := range namespaces {
		if !dnsLabel.MatchString(ns) {
			return Grant{}, fmt.Errorf("--namespaces %q: not a namespace name (a DNS-1123 label)", ns)
		}
		own = append(own,
			prefixPerm(p+api.PolicyKey(api.KindNetworkPolicy, ns, ""), write),
			Perm{Key: p + "namespaces/" + ns, Type: write})
	}
	return Grant{Roles: []string{EtcdRole(Viewer), UserRole(user)}, Own: own}, nil
}
