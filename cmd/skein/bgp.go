package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/report"
	"github.com/skeinnet/skein/store"
)

func newBGPCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bgp",
		Short: "Manage external BGP peers and show BGP sessions (backend bgp)",
		Long: `With backend bgp every agent runs a BGP speaker: by default in a full node mesh, or, with
nodeMesh false, peering only with the nodes labelled skein.dev/route-reflector. External peers
(top-of-rack routers, route reflectors outside the cluster) are stored in etcd under bgppeers/ and
every agent they apply to (all nodes, or one) opens a session with them.`,
		Example: `  skein bgp peer add tor --peer-ip 10.255.1.254 --asn 64512
  skein bgp peer list
  skein bgp status`,
	}
	peer := &cobra.Command{
		Use:   "peer",
		Short: "Add, list and delete external BGP peers",
		Example: `  skein bgp peer add tor1 --peer-ip 192.0.2.1 --asn 65001 --node rack1-h1
  skein bgp peer list -o wide
  skein bgp peer delete tor1`,
	}
	peer.AddCommand(newBGPPeerAddCmd(g), newBGPPeerListCmd(g), newBGPPeerDeleteCmd(g))
	cmd.AddCommand(peer, newBGPStatusCmd(g))
	return cmd
}

func newBGPPeerAddCmd(g *globalFlags) *cobra.Command {
	var (
		peerIP string
		asn    uint32
		p      api.BGPPeer
	)
	cmd := &cobra.Command{
		Use:   "add NAME --peer-ip IP --asn N [--node NODE] [--port P]",
		Short: "Add an external BGP peer for every node, or for one",
		Long: `Add an external BGP peer: the agents of every node (or of --node only) open an iBGP (same ASN as
the cluster) or eBGP session with it, advertise their blocks with their underlay address as next hop
and install the routes it sends inside the cluster's pools. A session with an IPv4 peer address
carries IPv4 and IPv6 routes (MP-BGP); one with an IPv6 address runs from each node's IPv6 underlay
address (UnderlayIP6) and carries IPv6 routes only, and needs an IPv6 pool; a node without
UnderlayIP6 opens no such session and skein bgp status shows it as NoSession. Add one peer per
family for a ToR that peers over both. A peer name is taken only once: delete a peer to change it.`,
		Example: `  skein bgp peer add tor --peer-ip 10.255.1.254 --asn 64512
  skein bgp peer add rack2 --peer-ip 10.0.2.1 --asn 65002 --node h4 --description "rack 2 ToR"
  skein bgp peer add tor6 --peer-ip fd00:255:1::1 --asn 64512   # IPv6 session, IPv6 routes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			ip, err := netip.ParseAddr(peerIP)
			if err != nil {
				return fmt.Errorf("--peer-ip %q: not an IP address", peerIP)
			}
			p.PeerIP, p.ASN = ip, asn
			if err := p.Validate(); err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				inv, err := cl.Inventory(ctx)
				if err != nil {
					return err
				}
				for _, name := range slices.Sorted(maps.Keys(inv.Nodes)) {
					if n := inv.Nodes[name]; n.UnderlayIP == p.PeerIP || n.UnderlayIP6 == p.PeerIP {
						return fmt.Errorf("bgp peer %s: %s is node %s's underlay address; nodes peer with each other through the node mesh or route reflectors", p.Name, p.PeerIP, n.Name)
					}
				}
				// A session over IPv6 carries IPv6 routes only: useless, and
				// a silent no-op, on a cluster without IPv6 pools.
				if p.PeerIP.Is6() && inv.Cluster != nil && !api.DualStack(inv.Cluster.Pools) {
					return fmt.Errorf("bgp peer %s: --peer-ip %s: an IPv6 session carries IPv6 routes only, and the cluster has no IPv6 pool (peer over IPv4 instead: it carries IPv6 routes too once an IPv6 pool exists)", p.Name, p.PeerIP)
				}
				if err := cl.CreateBGPPeer(ctx, p); err != nil {
					if errors.Is(err, store.ErrExists) {
						return fmt.Errorf("bgp peer %q exists (skein bgp peer delete %s first, or choose another name)", p.Name, p.Name)
					}
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "bgp peer %s added: %s AS %d, %s\n", p.Name, p.PeerIP, p.ASN, peerScope(p))
				if p.Node != "" {
					if _, ok := inv.Nodes[p.Node]; !ok {
						fmt.Fprintf(cmd.ErrOrStderr(), "note: node %s is not registered (yet); its agent will peer when it starts\n", p.Node)
					}
				}
				if inv.Cluster != nil && inv.Cluster.Backend != api.BackendBGP {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: the cluster runs backend %s; BGP peers apply to backend bgp only\n", inv.Cluster.Backend)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&peerIP, "peer-ip", "", "the peer's IPv4 or IPv6 address (required; an IPv6 session carries IPv6 routes only)")
	f.Uint32Var(&asn, "asn", 0, "the peer's AS number (required; the cluster's for iBGP)")
	f.StringVar(&p.Node, "node", "", "only this node peers with it (default: every node)")
	f.IntVar(&p.Port, "port", 0, "the peer's TCP port (default 179)")
	f.StringVar(&p.Description, "description", "", "free text")
	_ = cmd.MarkFlagRequired("peer-ip") // the flags exist: cannot fail
	_ = cmd.MarkFlagRequired("asn")
	_ = cmd.RegisterFlagCompletionFunc("node", completeNodeNames(g))
	return cmd
}

// peerScope says which nodes peer with p.
func peerScope(p api.BGPPeer) string {
	if p.Node == "" {
		return "all nodes"
	}
	return "node " + p.Node
}

func newBGPPeerListCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List external BGP peers",
		Example: "  skein bgp peer list\n  skein bgp peer list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				peers, lerr := cl.ListBGPPeers(ctx)
				if peers == nil && lerr != nil {
					return lerr
				}
				err := g.render(cmd.OutOrStdout(), peers, func(tw *tabwriter.Writer, wide bool) {
					fmt.Fprint(tw, "NAME\tPEER IP\tASN\tNODES\tPORT")
					if wide {
						fmt.Fprint(tw, "\tDESCRIPTION")
					}
					fmt.Fprintln(tw)
					for _, p := range peers {
						port := "179"
						if p.Port != 0 {
							port = strconv.Itoa(p.Port)
						}
						nodes := p.Node
						if nodes == "" {
							nodes = "(all)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s", p.Name, p.PeerIP, p.ASN, nodes, port)
						if wide {
							fmt.Fprintf(tw, "\t%s", p.Description)
						}
						fmt.Fprintln(tw)
					}
				})
				return errors.Join(err, lerr)
			})
		},
	}
}

func newBGPPeerDeleteCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an external BGP peer: every agent closes its session with it",
		Long: `Delete an external BGP peer. Each agent that peered with it closes the session with a Cease
notification, so the peer drops the cluster's routes at once and the agents its routes.`,
		Example:           "  skein bgp peer delete tor",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeBGPPeerNames(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				if err := cl.DeleteBGPPeer(ctx, args[0]); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("bgp peer %q not found (see skein bgp peer list)", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "bgp peer %s deleted\n", args[0])
				return nil
			})
		},
	}
}

// completeBGPPeerNames completes peer names from etcd.
func completeBGPPeerNames(g *globalFlags) cobra.CompletionFunc {
	return g.completeFromStore(func(ctx context.Context, cl *store.Client) ([]string, error) {
		peers, _ := cl.ListBGPPeers(ctx) // completion offers what decodes
		names := make([]string, len(peers))
		for i, p := range peers {
			names[i] = p.Name
		}
		return names, nil
	})
}

func newBGPStatusCmd(g *globalFlags) *cobra.Command {
	af := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node's BGP sessions",
		Long: `Show every node's BGP sessions: neighbour, address, AS, state, uptime and prefixes received and
advertised. Each agent publishes its sessions in its status record in etcd (refreshed on change and
every ~10 s), so this needs no route to the hosts. When an agent's debug endpoint answers from here
(/debug/bgp), its live view replaces the published one and adds the last error of each session.

Exit status: 0 when every session of every node is Established, 2 when a session is not, a node has
no heartbeat or published no sessions, 1 when the status could not be read.`,
		Example: `  skein bgp status
  skein bgp status -o wide               # with last errors and descriptions
  skein bgp status --agents=false        # etcd only
  skein bgp status -o json | jq '.nodes[].neighbors[] | select(.state != "Established")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				inv, err := cl.Inventory(ctx)
				if err != nil {
					return err
				}
				if inv.Cluster == nil {
					return errors.New("no cluster configuration (run `skein cluster init --backend bgp`)")
				}
				if inv.Cluster.Backend != api.BackendBGP {
					return fmt.Errorf("the cluster runs backend %s: there is no BGP (see skein status)", inv.Cluster.Backend)
				}
				var probes map[string]report.BGPProbe
				if af.query {
					probes = report.ProbeBGP(cmd.Context(), inv, af.timeout)
				}
				rep := report.BuildBGP(inv, probes)
				if err := g.render(cmd.OutOrStdout(), rep, func(tw *tabwriter.Writer, wide bool) { renderBGPReport(tw, rep, wide) }); err != nil {
					return err
				}
				if !rep.Healthy {
					return &exitError{code: exitUnhealthy, err: fmt.Errorf("bgp unhealthy: %d problem(s)", rep.ProblemCount())}
				}
				return nil
			})
		},
	}
	af.register(cmd)
	return cmd
}

// prefixCount renders a session's prefix count, "3", with its IPv6 share
// when there is one: "3 (1 v6)".
func prefixCount(all, v6 int) string {
	if v6 == 0 {
		return strconv.Itoa(all)
	}
	return fmt.Sprintf("%d (%d v6)", all, v6)
}

// renderBGPReport prints the cluster's BGP setup and one line per session.
func renderBGPReport(tw *tabwriter.Writer, rep report.BGP, wide bool) {
	mesh := "node mesh"
	if !rep.NodeMesh {
		mesh = "route reflectors (no node mesh)"
	}
	fmt.Fprintf(tw, "AS %d, %s, %d external peer(s)\n", rep.ASN, mesh, len(rep.Peers))
	for _, p := range rep.Peers {
		fmt.Fprintf(tw, "  peer %s: %s AS %d, %s\n", p.Name, p.PeerIP, p.ASN, peerScope(p))
	}
	fmt.Fprintln(tw)
	fmt.Fprint(tw, "NODE\tNEIGHBOR\tADDRESS\tASN\tSTATE\tUPTIME\tRECEIVED\tADVERTISED\tSOURCE")
	if wide {
		fmt.Fprint(tw, "\tLAST ERROR")
	}
	fmt.Fprintln(tw)
	for _, nr := range rep.Nodes {
		node := nr.Name
		if nr.Reflector != nil {
			node += " (RR)"
		}
		if !nr.Alive {
			node += " (down)"
		}
		if len(nr.Neighbors) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s", node, nr.Source)
			if wide {
				fmt.Fprint(tw, "\t-")
			}
			fmt.Fprintln(tw)
			continue
		}
		for _, nb := range nr.Neighbors {
			uptime := nb.Uptime
			if uptime == "" {
				uptime = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s", node, nb.Name, nb.Address, nb.ASN, nb.State, uptime,
				prefixCount(nb.Received, nb.Received6), prefixCount(nb.Advertised, nb.Advertised6), nr.Source)
			if wide {
				le := nb.LastError
				if le == "" {
					le = "-"
				}
				fmt.Fprintf(tw, "\t%s", le)
			}
			fmt.Fprintln(tw)
		}
	}
	var problems, notes []string
	problems = append(problems, rep.Problems...)
	for _, nr := range rep.Nodes {
		for _, p := range nr.Problems {
			problems = append(problems, nr.Name+": "+p)
		}
		if wide && nr.Agent != "ok" && nr.Agent != "not asked" {
			notes = append(notes, nr.Name+": debug endpoint: "+nr.Agent)
		}
	}
	fmt.Fprintln(tw)
	if len(problems) == 0 {
		fmt.Fprintf(tw, "all sessions established\n")
	}
	for _, p := range append(problems, notes...) {
		fmt.Fprintf(tw, "%s\n", p)
	}
}
