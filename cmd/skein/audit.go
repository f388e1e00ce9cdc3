package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/audit"
	"github.com/skeinnet/skein/store"
)

// actor is who this command acts as, recorded with every change it makes
// (store.Config.Audit): storeConfig sets it for every store the CLI opens,
// so no CLI write goes unrecorded.
func (g *globalFlags) actor() *audit.Actor {
	a, err := audit.CurrentActor(g.EtcdUser, g.EtcdCert)
	if err != nil {
		// An unreadable certificate fails the connection with a better
		// error; the record still names the OS user.
		a, _ = audit.CurrentActor("", "") //nolint:errcheck // without a certificate it cannot fail
	}
	return &a
}

func newAuditCmd(g *globalFlags) *cobra.Command {
	var since, kind, who string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List who changed what, when and from where",
		Long: `Every change made through skein is recorded in etcd (under audit/) in the same
transaction as the change itself. Records older than the retention (skein audit
retention) are removed by skein audit prune.`,
		Example: `  skein audit --since 1h
  skein audit --kind policy --who alice -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := audit.ParseSince(since, time.Now())
			if err != nil {
				return err
			}
			f := audit.Filter{Since: t, Kind: kind, Who: who}
			if err := f.Check(); err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				recs, err := cl.AuditRecords(ctx)
				if err != nil && recs == nil {
					return err
				}
				sel := audit.Select(recs, f)
				if sel == nil {
					sel = []audit.Record{}
				}
				if rerr := g.render(cmd.OutOrStdout(), sel, func(tw *tabwriter.Writer, wide bool) {
					fmt.Fprintln(tw, "TIME\tWHO\tOS USER\tHOST\tOP\tKIND\tNAME\tCHANGE")
					for _, r := range sel {
						change := strings.Join(r.Diff, "; ")
						if !wide && len(change) > 80 {
							change = change[:77] + "..."
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.RFC3339), r.Who, r.OSUser, r.Host, r.Op, r.Kind, r.Name, change)
					}
				}); rerr != nil {
					return rerr
				}
				return err // undecodable records, after the others
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only records from this long ago (1h, 30m) or since an RFC 3339 time")
	cmd.Flags().StringVar(&kind, "kind", "", "only one kind: "+strings.Join(audit.Kinds(), ", "))
	cmd.Flags().StringVar(&who, "who", "", "only changes by this etcd user, certificate CN or OS user")
	cmd.AddCommand(newAuditRetentionCmd(g), newAuditPruneCmd(g))
	return cmd
}

func newAuditRetentionCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "retention [DURATION]",
		Short:   "Show or set how long audit records are kept",
		Example: "  skein audit retention 2160h",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d time.Duration
			if len(args) == 1 {
				var err error
				if d, err = time.ParseDuration(args[0]); err != nil || d <= 0 {
					return fmt.Errorf("retention %q: want a positive duration such as 720h", args[0])
				}
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				if len(args) == 1 {
					if err := cl.SetAuditRetention(ctx, d); err != nil {
						return err
					}
				}
				cur, err := cl.AuditRetention(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "audit retention: %s\n", cur)
				return nil
			})
		},
	}
}

func newAuditPruneCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "prune",
		Short:   "Delete audit records older than the retention",
		Example: "  skein audit prune",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				n, err := cl.PruneAudit(ctx, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d audit record(s) deleted\n", n)
				return nil
			})
		},
	}
}
