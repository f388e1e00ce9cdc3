package auth

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanGrant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, user, role string
		ns               []string
		want             Grant
		wantErr          bool
	}{
		{name: "viewer", user: "v", role: Viewer, want: Grant{Roles: []string{"skein-viewer"}}},
		{name: "node", user: "h1", role: Node, want: Grant{Roles: []string{"skein-node"}}},
		{name: "network-admin", user: "n", role: NetworkAdmin, want: Grant{Roles: []string{"skein-network-admin", "root"}}},
		{name: "policy-admin", user: "p", role: PolicyAdmin, want: Grant{Roles: []string{"skein-policy-admin", "skein-user-p"},
			Own: []Perm{{Key: "/skein/audit/log/p/", RangeEnd: "/skein/audit/log/p0", Type: write}}}},
		{name: "tenant", user: "a b", role: PolicyAdmin, ns: []string{"t1"}, want: Grant{Roles: []string{"skein-viewer", "skein-user-a%20b"},
			Own: []Perm{
				{Key: "/skein/audit/log/a%20b/", RangeEnd: "/skein/audit/log/a%20b0", Type: write},
				{Key: "/skein/policies/NetworkPolicy/t1/", RangeEnd: "/skein/policies/NetworkPolicy/t10", Type: write},
				{Key: "/skein/namespaces/t1", Type: write},
			}}},
		{name: "unknown role", user: "x", role: "admin", wantErr: true},
		{name: "namespaces on a viewer", user: "x", role: Viewer, ns: []string{"a"}, wantErr: true},
		{name: "bad namespace", user: "x", role: PolicyAdmin, ns: []string{"A/b"}, wantErr: true},
		{name: "root", user: "root", role: Viewer, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := PlanGrant("/skein/", tc.user, tc.role, tc.ns)
			if (err != nil) != tc.wantErr {
				t.Fatalf("PlanGrant() error %v, want error %v", err, tc.wantErr)
			}
			if tc.role == "admin" && !errors.Is(err, ErrUnknownRole) {
				t.Errorf("error %v, want ErrUnknownRole", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("PlanGrant() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestBaseRolesNodeWrites(t *testing.T) {
	t.Parallel()
	perms := BaseRoles("/skein/")["skein-node"]
	var got []string
	for _, p := range perms {
		got = append(got, p.String())
	}
	want := []string{"read /skein/*", "write /skein/alive/*", "write /skein/blocks/*", "write /skein/endpoints/*",
		"write /skein/namespaces/*", "write /skein/nodes/*", "write /skein/status/*"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("node role mismatch (-want +got):\n%s", d)
	}
}
