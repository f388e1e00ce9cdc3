package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/lab"
)

// pingResult is one ordered pair of `skein lab check`.
type pingResult struct {
	From string `json:"from"`
	To   string `json:"to"`
	IP   string `json:"ip"`
	OK   bool   `json:"ok"`
	Err  string `json:"error,omitempty"`
}

// newLabCheckCmd pings every container from every other one: the quickest
// answer to "does the overlay work".
func newLabCheckCmd(g *globalFlags, lf *labFlags) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "check",
		Short:   "Ping every lab container from every other one and print the result",
		Example: "  skein lab check\n  skein lab check -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(lf.name, lf.runDir)
			if err != nil {
				return err
			}
			cs := l.Containers()
			var res []pingResult
			failed := 0
			for _, src := range cs {
				for _, dst := range cs {
					if src.Name == dst.Name {
						continue
					}
					ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
					err := l.Ping(ctx, src.Name, dst.IP)
					cancel()
					r := pingResult{From: src.Name, To: dst.Name, IP: dst.IP.String(), OK: err == nil}
					if err != nil {
						r.Err = err.Error()
						failed++
					}
					res = append(res, r)
				}
			}
			if err := g.render(cmd.OutOrStdout(), res, func(tw *tabwriter.Writer, _ bool) {
				fmt.Fprintln(tw, "FROM\tTO\tIP\tPING")
				for _, r := range res {
					verdict := "ok"
					if !r.OK {
						verdict = "FAILED"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.From, r.To, r.IP, verdict)
				}
			}); err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d pings failed", failed, len(res))}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "all %d container pairs reach each other\n", len(res))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "ping-timeout", 3*time.Second, "how long each pair may take to answer")
	return cmd
}
