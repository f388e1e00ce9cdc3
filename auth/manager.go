package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/store"
)

// Manager changes etcd's users and roles for Skein. Its caller needs etcd's
// root role once auth is enabled.
type Manager struct {
	st *store.Client
	au clientv3.Auth
}

// NewManager returns a Manager working through st's connection.
func NewManager(st *store.Client) *Manager {
	return &Manager{st: st, au: st.Etcd().Auth}
}

// SetupConfig says who may administer and which identities agents use.
type SetupConfig struct {
	// Admins become network-admins with etcd's root role; at least one, or
	// RootPassword, is required so that nobody is locked out.
	Admins []string
	// Nodes are the identities (certificate CNs or users) of agents.
	Nodes []string
	// RootPassword sets etcd's root user's password; optional (certificate
	// CN "root" works without one).
	RootPassword string
}

// Setup creates Skein's roles, etcd's root user, the admins and node users,
// and enables auth; each step is skipped when already done. say receives
// one line per step.
func (m *Manager) Setup(ctx context.Context, cfg SetupConfig, say func(string)) error {
	if len(cfg.Admins) == 0 && cfg.RootPassword == "" {
		return errors.New("auth setup: name an admin (--admin, default the CN of --etcd-cert or --etcd-user) or --root-password: enabling auth without one locks everybody out")
	}
	for _, a := range cfg.Admins {
		if slices.Contains(cfg.Nodes, a) {
			return fmt.Errorf("auth setup: %s is named as admin and as node: a user holds one role", a)
		}
	}
	roles := BaseRoles(m.st.Prefix())
	names := make([]string, 0, len(roles))
	for r := range roles {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		what, err := m.ensureRole(ctx, r, roles[r])
		if err != nil {
			return fmt.Errorf("auth setup: %w", err)
		}
		say(fmt.Sprintf("role %s: %s", r, what))
	}
	what, err := m.ensureUser(ctx, "root", cfg.RootPassword)
	if err != nil {
		return fmt.Errorf("auth setup: %w", err)
	}
	if _, err := m.au.UserGrantRole(ctx, "root", RootRole); err != nil {
		return fmt.Errorf("auth setup: grant root to user root: %w", err)
	}
	say("user root: " + what)
	for _, a := range cfg.Admins {
		if err := m.Grant(ctx, a, NetworkAdmin, nil, "", say); err != nil {
			return fmt.Errorf("auth setup: %w", err)
		}
	}
	for _, n := range cfg.Nodes {
		if err := m.Grant(ctx, n, Node, nil, "", say); err != nil {
			return fmt.Errorf("auth setup: %w", err)
		}
	}
	st, err := m.au.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("auth setup: auth status: %w", err)
	}
	if st.Enabled {
		say("auth: already enabled")
		return nil
	}
	if _, err := m.au.AuthEnable(ctx); err != nil {
		return fmt.Errorf("auth setup: enable auth: %w", err)
	}
	say("auth: enabled")
	return nil
}

// ensureRole makes role hold exactly perms and says what it did.
func (m *Manager) ensureRole(ctx context.Context, role string, perms []Perm) (string, error) {
	created := false
	resp, err := m.au.RoleGet(ctx, role)
	switch {
	case errors.Is(err, rpctypes.ErrRoleNotFound):
		if _, err := m.au.RoleAdd(ctx, role); err != nil {
			return "", fmt.Errorf("add role %s: %w", role, err)
		}
		created = true
	case err != nil:
		return "", fmt.Errorf("get role %s: %w", role, err)
	}
	have := map[Perm]bool{}
	if resp != nil {
		for _, p := range resp.Perm {
			have[Perm{Key: string(p.Key), RangeEnd: string(p.RangeEnd), Type: clientv3.PermissionType(p.PermType)}] = true
		}
	}
	changed := 0
	for _, p := range perms {
		if have[p] {
			delete(have, p)
			continue
		}
		if _, err := m.au.RoleGrantPermission(ctx, role, p.Key, p.RangeEnd, p.Type); err != nil {
			return "", fmt.Errorf("role %s: grant %s: %w", role, p, err)
		}
		changed++
	}
	for p := range have {
		if slices.ContainsFunc(perms, func(w Perm) bool { return w.Key == p.Key && w.RangeEnd == p.RangeEnd }) {
			continue // granting w replaced it
		}
		if _, err := m.au.RoleRevokePermission(ctx, role, p.Key, p.RangeEnd); err != nil {
			return "", fmt.Errorf("role %s: revoke %s: %w", role, p, err)
		}
		changed++
	}
	switch {
	case created:
		return "created (" + permList(perms) + ")", nil
	case changed > 0:
		return "permissions updated (" + permList(perms) + ")", nil
	}
	return "unchanged", nil
}

func permList(ps []Perm) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// ensureUser adds user unless it exists: with password, or for
// certificate authentication without one.
func (m *Manager) ensureUser(ctx context.Context, user, password string) (string, error) {
	_, err := m.au.UserGet(ctx, user)
	switch {
	case err == nil:
		if password != "" {
			if _, err := m.au.UserChangePassword(ctx, user, password); err != nil {
				return "", fmt.Errorf("user %s: set password: %w", user, err)
			}
			return "exists, password set", nil
		}
		return "exists", nil
	case !errors.Is(err, rpctypes.ErrUserNotFound):
		return "", fmt.Errorf("get user %s: %w", user, err)
	}
	if _, err := m.au.UserAddWithOptions(ctx, user, password, &clientv3.UserAddOptions{NoPassword: password == ""}); err != nil {
		return "", fmt.Errorf("add user %s: %w", user, err)
	}
	if password == "" {
		return "created (certificate CN, no password)", nil
	}
	return "created (password)", nil
}

// Grant gives user role (limited to namespaces for a policy-admin),
// replacing the Skein role it held, creates the user when missing, and
// records the grant under auth/users/ for permission errors and `list`.
func (m *Manager) Grant(ctx context.Context, user, role string, namespaces []string, password string, say func(string)) error {
	g, err := PlanGrant(m.st.Prefix(), user, role, namespaces)
	if err != nil {
		return fmt.Errorf("grant %s to %s: %w", role, user, err)
	}
	what, err := m.ensureUser(ctx, user, password)
	if err != nil {
		return fmt.Errorf("grant %s to %s: %w", role, user, err)
	}
	if len(g.Own) > 0 {
		if _, err := m.ensureRole(ctx, UserRole(user), g.Own); err != nil {
			return fmt.Errorf("grant %s to %s: %w", role, user, err)
		}
	}
	if err := m.revokeOthers(ctx, user, g.Roles); err != nil {
		return fmt.Errorf("grant %s to %s: %w", role, user, err)
	}
	for _, r := range g.Roles {
		if _, err := m.au.UserGrantRole(ctx, user, r); err != nil {
			return fmt.Errorf("grant %s to %s: etcd role %s: %w", role, user, r, err)
		}
	}
	if err := m.st.PutAuthUser(ctx, store.AuthUser{Name: user, Role: role, Namespaces: namespaces}); err != nil {
		return fmt.Errorf("grant %s to %s: %w", role, user, err)
	}
	lim := ""
	if len(namespaces) > 0 {
		lim = " in namespaces " + strings.Join(namespaces, ",")
	}
	say(fmt.Sprintf("user %s: %s; role %s%s (etcd roles %s)", user, what, role, lim, strings.Join(g.Roles, ", ")))
	return nil
}

// revokeOthers takes from user every Skein and root role not in keep.
func (m *Manager) revokeOthers(ctx context.Context, user string, keep []string) error {
	resp, err := m.au.UserGet(ctx, user)
	if err != nil {
		return fmt.Errorf("get user %s: %w", user, err)
	}
	for _, r := range resp.Roles {
		if slices.Contains(keep, r) || (!strings.HasPrefix(r, rolePrefix) && r != RootRole) {
			continue
		}
		if _, err := m.au.UserRevokeRole(ctx, user, r); err != nil {
			return fmt.Errorf("user %s: revoke role %s: %w", user, r, err)
		}
	}
	return nil
}

// Revoke takes every Skein role (and root) from user and deletes the user's
// own role and record; the etcd user stays, with no permissions.
func (m *Manager) Revoke(ctx context.Context, user string) error {
	if user == "root" {
		return errors.New("revoke root: etcd's administrator keeps its role (disable auth with etcdctl instead)")
	}
	if err := m.revokeOthers(ctx, user, nil); err != nil {
		if errors.Is(err, rpctypes.ErrUserNotFound) {
			return fmt.Errorf("revoke %s: no such user", user)
		}
		return fmt.Errorf("revoke %s: %w", user, err)
	}
	if _, err := m.au.RoleDelete(ctx, UserRole(user)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("revoke %s: delete role %s: %w", user, UserRole(user), err)
	}
	if err := m.st.DeleteAuthUser(ctx, user); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke %s: %w", user, err)
	}
	return nil
}

// User is one line of `skein auth list`.
type User struct {
	Name       string   `json:"name"`
	Role       string   `json:"role,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	// EtcdRoles are the roles etcd holds for the user.
	EtcdRoles []string `json:"etcdRoles"`
}

// List returns etcd's users with the Skein role recorded for each.
func (m *Manager) List(ctx context.Context) ([]User, error) {
	resp, err := m.au.UserList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	recs, err := m.st.AuthUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]User, 0, len(resp.Users))
	for _, name := range resp.Users {
		ur, err := m.au.UserGet(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("get user %s: %w", name, err)
		}
		u := User{Name: name, EtcdRoles: ur.Roles, Role: recs[name].Role, Namespaces: recs[name].Namespaces}
		if name == "root" {
			u.Role = RootRole
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
