package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/audit"
	"github.com/skeinnet/skein/auth"
	"github.com/skeinnet/skein/store"
)

func newAuthCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Roles enforced by etcd: viewer, policy-admin, network-admin, node",
		Long: `Skein's roles are etcd users and roles with key-prefix permissions, so etcd enforces
them on every client. Users authenticate with a TLS client certificate (the CN is the
user name) or with --etcd-user/--etcd-password.

  viewer         reads everything
  policy-admin   writes policies, namespace and endpoint labels (--namespaces limits
                 it to NetworkPolicies and labels of those namespaces)
  network-admin  writes everything, and manages users (etcd's root role)
  node           writes what an agent writes: nodes/, alive/, status/, blocks/,
                 endpoints/, namespaces/`,
		Example: `  skein auth setup --node skeind-h1
  skein auth grant alice policy-admin --namespaces team-a
  skein auth list`,
	}
	cmd.AddCommand(newAuthSetupCmd(g), newAuthGrantCmd(g), newAuthRevokeCmd(g), newAuthListCmd(g), newAuthCertCmd())
	return cmd
}

// say prints one line per step to the command's output.
func say(cmd *cobra.Command) func(string) {
	return func(s string) { fmt.Fprintln(cmd.OutOrStdout(), s) }
}

func newAuthSetupCmd(g *globalFlags) *cobra.Command {
	var cfg auth.SetupConfig
	cmd := &cobra.Command{
		Use:   "setup [--admin USER]... [--node USER]...",
		Short: "Create Skein's roles and enable etcd auth (idempotent; prints what it did)",
		Example: `  skein --etcd-cert admin.pem --etcd-key admin-key.pem auth setup --node skeind
  skein auth setup --admin alice --root-password "$ROOT_PW"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(cfg.Admins) == 0 {
				if a := g.actor(); a.Who != audit.Anonymous && a.Who != "root" {
					cfg.Admins = []string{a.Who}
				}
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				return auth.NewManager(cl).Setup(ctx, cfg, say(cmd))
			})
		},
	}
	cmd.Flags().StringSliceVar(&cfg.Admins, "admin", nil, "users made network-admin with etcd's root role (default: the caller's etcd user or certificate CN)")
	cmd.Flags().StringSliceVar(&cfg.Nodes, "node", nil, "identities of agents (certificate CNs or users), given the node role")
	cmd.Flags().StringVar(&cfg.RootPassword, "root-password", "", "password of etcd's root user (default none: certificate CN root only)")
	return cmd
}

func newAuthGrantCmd(g *globalFlags) *cobra.Command {
	var (
		namespaces []string
		password   string
	)
	cmd := &cobra.Command{
		Use:   "grant USER ROLE",
		Short: "Give a user one of the roles " + strings.Join(auth.Roles, ", ") + " (replacing the one it held)",
		Example: `  skein auth grant alice policy-admin --namespaces team-a,team-b
  skein auth grant bob viewer --password "$BOB_PW"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := auth.PlanGrant(g.EtcdPrefix, args[0], args[1], namespaces); err != nil {
				return err // before connecting: a typo in the role changes nothing
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				return auth.NewManager(cl).Grant(ctx, args[0], args[1], namespaces, password, say(cmd))
			})
		},
	}
	cmd.Flags().StringSliceVar(&namespaces, "namespaces", nil, "limit a policy-admin to these namespaces")
	cmd.Flags().StringVar(&password, "password", "", "password for a new user (default none: certificate CN only)")
	return cmd
}

func newAuthRevokeCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke USER",
		Short:   "Take a user's Skein role away (the etcd user stays, with no permissions)",
		Example: "  skein auth revoke alice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				if err := auth.NewManager(cl).Revoke(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s: roles revoked\n", args[0])
				return nil
			})
		},
	}
}

func newAuthListCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List etcd's users and their Skein roles",
		Example: "  skein auth list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				us, err := auth.NewManager(cl).List(ctx)
				if err != nil {
					return err
				}
				return g.render(cmd.OutOrStdout(), us, func(tw *tabwriter.Writer, _ bool) {
					fmt.Fprintln(tw, "USER\tROLE\tNAMESPACES\tETCD ROLES")
					for _, u := range us {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, dash(u.Role), dash(strings.Join(u.Namespaces, ",")), strings.Join(u.EtcdRoles, ","))
					}
				})
			})
		},
	}
}

func newAuthCertCmd() *cobra.Command {
	var (
		ca, caKey, cn, out string
		validity           time.Duration
	)
	cmd := &cobra.Command{
		Use:     "cert --ca CA.pem --ca-key CA-key.pem --cn USER [--out PREFIX]",
		Short:   "Issue a client certificate for an etcd user from the CA etcd trusts",
		Example: "  skein auth cert --ca ca.pem --ca-key ca-key.pem --cn alice --validity 2160h   # alice.pem, alice-key.pem",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ca == "" || caKey == "" || cn == "" {
				return errors.New("auth cert: --ca, --ca-key and --cn are required")
			}
			caPEM, err := os.ReadFile(ca)
			if err != nil {
				return fmt.Errorf("auth cert: %w", err)
			}
			keyPEM, err := os.ReadFile(caKey)
			if err != nil {
				return fmt.Errorf("auth cert: %w", err)
			}
			certOut, keyOut, err := auth.IssueCert(caPEM, keyPEM, auth.CertRequest{CN: cn, Validity: validity}, time.Now())
			if err != nil {
				return err
			}
			if out == "" {
				out = cn
			}
			if err := os.WriteFile(out+"-key.pem", keyOut, 0o600); err != nil {
				return fmt.Errorf("auth cert: %w", err)
			}
			if err := os.WriteFile(out+".pem", certOut, 0o644); err != nil { //nolint:gosec // a certificate is public
				return fmt.Errorf("auth cert: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate %s.pem and key %s-key.pem for %s, valid %s\n", out, out, cn, validity)
			return nil
		},
	}
	cmd.Flags().StringVar(&ca, "ca", "", "CA certificate etcd trusts (--client-ca / --trusted-ca-file)")
	cmd.Flags().StringVar(&caKey, "ca-key", "", "the CA's private key")
	cmd.Flags().StringVar(&cn, "cn", "", "the user name (certificate CN)")
	cmd.Flags().StringVar(&out, "out", "", "file name prefix (default the CN)")
	cmd.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificate is valid")
	return cmd
}
