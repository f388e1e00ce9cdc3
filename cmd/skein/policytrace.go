package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/policyinput"
	"github.com/skeinnet/skein/store"
)

// traceOutput is what `policy trace -o json|yaml` prints.
type traceOutput struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	policy.Verdict
}

func newPolicyTraceCmd(g *globalFlags) *cobra.Command {
	var (
		files    []string
		from, to string
		port     int
		proto    string
	)
	cmd := &cobra.Command{
		Use:   "trace --from NS/NAME|IP --to NS/NAME|IP --port N [--protocol TCP|UDP|SCTP] [-f FILE]...",
		Short: "Tell whether a connection would be allowed, and by which policy rule",
		Long: `Evaluate a new connection from one endpoint (or address) to another against the
compiled policy program, the same program the agents enforce: the source's egress and
the destination's ingress, AdminNetworkPolicies first, then NetworkPolicies, then
BaselineAdminNetworkPolicies. Prints ALLOW or DENY with the deciding policy and rule,
and exits 0 either way.

Without -f it reads the live cluster from etcd. With -f it reads only the files:
Namespace and Endpoint documents describe the cluster, the rest are policies.`,
		Example: `  skein policy trace --from x/a --to y/b --port 80
  skein policy trace --from 203.0.113.7 --to y/b --port 53 --protocol UDP -o json
  skein policy trace -f cluster.yaml -f policies.yaml --from x/a --to y/b --port 80`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := policy.ParsePeer(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			dst, err := policy.ParsePeer(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			p, err := policyProgram(cmd, g, files)
			if err != nil {
				return err
			}
			v, err := policy.Trace(p, src, dst, port, proto)
			if err != nil {
				return err
			}
			out := traceOutput{From: from, To: to, Port: port, Protocol: strings.ToUpper(proto), Verdict: v}
			return g.render(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer, wide bool) {
				verdict := "DENY"
				if v.Allowed {
					verdict = "ALLOW"
				}
				fmt.Fprintf(tw, "%s\t%s -> %s %s/%d\n", verdict, from, to, out.Protocol, port)
				fmt.Fprintf(tw, "rule:\t%s\n", v.Rule)
				if wide || len(v.Steps) > 1 {
					for i, s := range v.Steps {
						label := ""
						if i == 0 {
							label = "steps:"
						}
						fmt.Fprintf(tw, "%s\t%s\n", label, s)
					}
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "read the cluster and policies from this file instead of etcd, - for stdin (repeatable)")
	f.StringVar(&from, "from", "", "source: NAMESPACE/NAME of an endpoint, or an IP address")
	f.StringVar(&to, "to", "", "destination: NAMESPACE/NAME of an endpoint, or an IP address")
	f.IntVar(&port, "port", 0, "destination port")
	f.StringVar(&proto, "protocol", "TCP", "TCP, UDP or SCTP")
	for _, name := range []string{"from", "to", "port"} {
		_ = cmd.MarkFlagRequired(name) // the flags exist: cannot fail
	}
	return cmd
}

func newPolicyMatrixCmd(g *globalFlags) *cobra.Command {
	var (
		files     []string
		ports     []int
		protos    []string
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "matrix [--namespace NS] [--ports 80,81] [--protocols TCP,UDP,SCTP] [-f FILE]...",
		Short: "Print who can reach whom among all endpoints, like the upstream e2e truth tables",
		Long: `Trace every ordered pair of endpoints on every port and protocol and print one truth
table per protocol and port: rows are sources, columns destinations, "." allowed and
"X" denied. -o json prints the cells with the deciding rule of each. --namespace keeps
one namespace's endpoints (policies from other namespaces still apply), as the /ui's
matrix view does.

Without -f it reads the live cluster from etcd; with -f only the files (Namespace and
Endpoint documents describe the cluster).`,
		Example: `  skein policy matrix --ports 80,81 --protocols TCP,UDP
  skein policy matrix -f cluster.yaml -f policies.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := policyProgramIn(cmd, g, files, namespace)
			if err != nil {
				return err
			}
			cells, err := policy.Matrix(p, ports, protos)
			if err != nil {
				return err
			}
			switch g.Output {
			case "json", "yaml":
				return g.render(cmd.OutOrStdout(), cells, nil)
			}
			return policy.WriteTruthTable(cmd.OutOrStdout(), cells)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "read the cluster and policies from this file instead of etcd, - for stdin (repeatable)")
	f.IntSliceVar(&ports, "ports", []int{80, 81}, "destination ports")
	f.StringSliceVar(&protos, "protocols", []string{"TCP"}, "protocols: TCP, UDP, SCTP")
	f.StringVar(&namespace, "namespace", "", "only the endpoints of this namespace")
	return cmd
}

// policyProgram compiles the whole cluster (every endpoint), from files or
// from etcd, and prints the compiler's warnings to stderr.
func policyProgram(cmd *cobra.Command, g *globalFlags, files []string) (*policy.Program, error) {
	return policyProgramIn(cmd, g, files, "")
}

// policyProgramIn is policyProgram limited to the endpoints of namespace
// ("" for all).
func policyProgramIn(cmd *cobra.Command, g *globalFlags, files []string, namespace string) (*policy.Program, error) {
	var (
		in  policy.Input
		err error
	)
	if len(files) > 0 {
		in, err = offlineInput(cmd.InOrStdin(), files)
	} else {
		in, err = liveInput(cmd, g)
	}
	if err != nil {
		return nil, err
	}
	in.Namespace = namespace
	p := policy.Compile(in)
	for _, w := range p.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
	return p, nil
}

// offlineInput builds the compiler input from files.
func offlineInput(stdin io.Reader, files []string) (policy.Input, error) {
	var in policy.Input
	objs, err := readPolicyFiles(stdin, files)
	if err != nil {
		return in, err
	}
	for _, o := range objs {
		addObject(&in, o)
	}
	return in, nil
}

func addObject(in *policy.Input, o api.Object) {
	if in.AddPolicy(o) {
		return
	}
	switch v := o.(type) {
	case *api.NamespaceDoc:
		in.Namespaces = append(in.Namespaces, v.ToNamespace())
	case *api.EndpointDoc:
		in.Endpoints = append(in.Endpoints, v.ToEndpoint())
	case *api.NodeDoc:
		in.Nodes = append(in.Nodes, v.ToNode())
	}
}

// liveInput builds the input from etcd at one revision, as the agents do
// (policyinput.FromSnapshot, for every node's endpoints). Stored policies
// that do not decode are quarantined, as an agent that never saw a valid
// value does, and reported on stderr.
func liveInput(cmd *cobra.Command, g *globalFlags) (policy.Input, error) {
	var in policy.Input
	err := g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
		inv, err := cl.Inventory(ctx)
		if err != nil {
			return err
		}
		var invalid []api.InvalidPolicy
		in, invalid = policyinput.FromSnapshot("", &inv.Snapshot, policyinput.Decode)
		for _, p := range invalid {
			// An agent that saw a valid version of it before keeps that one.
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: invalid stored policy %s: %s (quarantined here; see skein status for what each node enforces)\n", p.Key, p.Error)
		}
		for _, e := range inv.Errors {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: undecodable record in etcd, left out: %s\n", e)
		}
		return nil
	})
	return in, err
}
