package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/backup"
	"github.com/skeinnet/skein/internal/atomicfile"
	"github.com/skeinnet/skein/store"
)

func newBackupCmd(g *globalFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "backup -f FILE",
		Short: "Save every Skein key at one etcd revision to a file",
		Long: `Writes every key under the prefix, read at one etcd revision, with a format version
and a SHA-256 checksum. Heartbeats and status records (alive/, status/) belong to
running agents and are left out.`,
		Example: "  skein backup -f skein-backup.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("backup: -f FILE is required")
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				keys, rev, err := cl.RawKeys(ctx)
				if err != nil {
					return fmt.Errorf("backup: %w", err)
				}
				f, err := backup.New(cl.Prefix(), rev, time.Now(), keys)
				if err != nil {
					return err
				}
				b, err := backup.Encode(f)
				if err != nil {
					return err
				}
				if err := atomicfile.Write(file, b); err != nil {
					return fmt.Errorf("backup: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s: %d keys at revision %d, %s\n", file, len(f.Keys), f.Revision, f.Checksum)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file to write")
	return cmd
}

func newRestoreCmd(g *globalFlags) *cobra.Command {
	var (
		file          string
		dryRun, force bool
	)
	cmd := &cobra.Command{
		Use:   "restore -f FILE [--dry-run] [--force]",
		Short: "Restore Skein's keys from a backup, showing the changes first",
		Long: `Makes the keys under the prefix (--etcd-prefix: the same or another one) equal to the
backup: keys are created, changed and deleted as the listed diff says. Heartbeats,
status records and audit records newer than the backup are kept. A backup of a newer
format version or with a wrong checksum is refused, and so is a restore that would
change or delete the record of a node whose agent is running, unless --force.`,
		Example: `  skein restore -f skein-backup.json --dry-run
  skein restore -f skein-backup.json
  skein --etcd-prefix /skein-copy/ restore -f skein-backup.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("restore: -f FILE is required")
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			f, err := backup.Decode(b)
			if err != nil {
				return fmt.Errorf("restore %s: %w", file, err)
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				current, rev, err := cl.RawKeys(ctx)
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				alive, err := cl.AliveNodes(ctx)
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				cs := backup.Plan(f, current, alive)
				out := cmd.OutOrStdout()
				printPlan(out, cs)
				fmt.Fprintf(out, "restore %s (revision %d of %s, taken %s) into %s: %s\n", file, f.Revision, f.Prefix,
					f.Taken.Format(time.RFC3339), cl.Prefix(), backup.Summary(cs))
				if err := backup.CheckLive(cs, force); err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				if dryRun || len(cs) == 0 {
					return nil
				}
				ws := make([]store.RawWrite, len(cs))
				for i, c := range cs {
					ws[i] = store.RawWrite{Key: c.Key, Value: c.Value()}
				}
				summary := []string{fmt.Sprintf("from %s revision %d (%s)", f.Prefix, f.Revision, f.Checksum), backup.Summary(cs)}
				if err := cl.WriteRaw(ctx, rev, "restore", filepath.Base(file), summary, ws); err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				fmt.Fprintln(out, "restored")
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "backup file to restore")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the changes and write nothing")
	cmd.Flags().BoolVar(&force, "force", false, "also overwrite or delete the records of nodes whose agents are running")
	return cmd
}

// printPlan lists each change, with its field diff for an update.
func printPlan(w io.Writer, cs []backup.Change) {
	mark := map[backup.Action]string{backup.Create: "+", backup.Update: "~", backup.Delete: "-"}
	for _, c := range cs {
		live := ""
		if c.LiveNode != "" {
			live = "   (node " + c.LiveNode + " is alive)"
		}
		fmt.Fprintf(w, "%s %s%s\n", mark[c.Action], c.Key, live)
		for _, d := range c.Diff {
			fmt.Fprintf(w, "    %s\n", d)
		}
	}
}
