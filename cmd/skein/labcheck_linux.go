package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	// Probed is false when the probe could not run (no verdict on the pair).
	Probed bool   `json:"probed"`
	Err    string `json:"error,omitempty"`
}

// newLabCheckCmd pings every container from every other one: the quickest
// answer to "does the overlay work". The probe is built in (ICMP from a
// socket opened in the container's namespace), so no ping binary is needed.
func newLabCheckCmd(g *globalFlags, lf *labFlags) *cobra.Command {
	var (
		timeout  time.Duration
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Ping every lab container from every other one and print the result",
		Long: `Ping every lab container from every other one (or the pairs --from and --to select) with
ICMP echo sent from inside the source container, and print one line per pair.

Exit status: 0 when every pair answered, 2 when some pair did not answer within --ping-timeout
(unreachable or blocked by policy), 1 when the lab could not be read or a probe could not run
(then nothing is claimed about that pair).`,
		Example: "  skein lab check\n  skein lab check -o json\n  skein lab check --from h1-c1 --to h3-c1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(lf.name, lf.runDir)
			if err != nil {
				return err
			}
			srcs, err := selectContainers(l, from, "--from")
			if err != nil {
				return err
			}
			dsts, err := selectContainers(l, to, "--to")
			if err != nil {
				return err
			}
			var res []pingResult
			unanswered, unprobed := 0, 0
			for _, src := range srcs {
				for _, dst := range dsts {
					if src.Name == dst.Name {
						continue
					}
					// Every family the destination has (dual-stack: both).
					for _, ip := range []netip.Addr{dst.IP, dst.IP6} {
						if !ip.IsValid() {
							continue
						}
						ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
						err := l.Ping(ctx, src.Name, ip)
						cancel()
						r := pingResult{From: src.Name, To: dst.Name, IP: ip.String(), OK: err == nil, Probed: true}
						switch {
						case err == nil:
						case errors.Is(err, context.DeadlineExceeded):
							r.Err = err.Error()
							unanswered++
						default:
							r.Err, r.Probed = err.Error(), false
							unprobed++
						}
						res = append(res, r)
					}
				}
			}
			if err := g.render(cmd.OutOrStdout(), res, func(tw *tabwriter.Writer, _ bool) {
				fmt.Fprintln(tw, "FROM\tTO\tIP\tPING")
				for _, r := range res {
					verdict := "ok"
					switch {
					case !r.Probed:
						verdict = "NOT CHECKED: " + r.Err
					case !r.OK:
						verdict = "FAILED"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.From, r.To, r.IP, verdict)
				}
			}); err != nil {
				return err
			}
			switch {
			case unprobed > 0:
				return fmt.Errorf("%d of %d pairs could not be probed", unprobed, len(res))
			case unanswered > 0:
				return &exitError{code: exitUnhealthy, err: fmt.Errorf("%d of %d pings failed", unanswered, len(res))}
			case len(res) == 0:
				return errors.New("no container pairs to check")
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "all %d container pairs reach each other\n", len(res)) // a pair per family
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "ping-timeout", 3*time.Second, "how long each pair may take to answer")
	cmd.Flags().StringVar(&from, "from", "", "only probe from this container")
	cmd.Flags().StringVar(&to, "to", "", "only probe this container")
	return cmd
}

// selectContainers returns cs, or only the container name names ("h1-c1"
// or its namespace "sklab-h1-c1") when name is set.
func selectContainers(l *lab.Lab, name, flag string) ([]lab.Container, error) {
	cs := l.Containers()
	if name == "" {
		return cs, nil
	}
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	for _, c := range cs {
		if c.Name == ns {
			return []lab.Container{c}, nil
		}
	}
	return nil, fmt.Errorf("%s %s: not a lab container", flag, name)
}
