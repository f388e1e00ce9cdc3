package main

import (
	"fmt"
	"net/netip"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
)

// poolUsage is one pool's block usage as `skein ipam show` reports it.
type poolUsage struct {
	CIDR         netip.Prefix `json:"cidr"`
	BlockSize    int          `json:"blockSize"`
	BlocksTotal  int          `json:"blocksTotal"`
	BlocksUsed   int          `json:"blocksUsed"`
	Blocks       []api.Block  `json:"blocks"`
	EndpointIPs  int          `json:"endpointIPs"`
	AddressTotal int          `json:"addressTotal"`
}

func newIPAMCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "ipam", Short: "Inspect address pools and blocks"}
	show := &cobra.Command{
		Use:     "show",
		Short:   "Show each pool, its blocks and which node holds them",
		Example: "  skein ipam show\n  skein ipam show -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			c, err := cl.GetCluster(ctx)
			if err != nil {
				return fmt.Errorf("cluster config: %w", err)
			}
			blocks, err := cl.ListBlocks(ctx)
			if err != nil {
				return err
			}
			eps, err := cl.ListEndpoints(ctx)
			if err != nil {
				return err
			}
			usage := ipamUsage(c.Pools, blocks, eps)
			return g.render(cmd.OutOrStdout(), usage, func(tw *tabwriter.Writer, _ bool) {
				for _, u := range usage {
					fmt.Fprintf(tw, "POOL %s\tblocks /%d\t%d/%d blocks claimed\t%d endpoint addresses\n", u.CIDR, u.BlockSize, u.BlocksUsed, u.BlocksTotal, u.EndpointIPs)
					fmt.Fprintln(tw, "  BLOCK\tNODE\tENDPOINTS")
					for _, b := range u.Blocks {
						n := 0
						for _, ep := range eps {
							for _, ip := range ep.IPs {
								if b.CIDR.Contains(ip) {
									n++
								}
							}
						}
						fmt.Fprintf(tw, "  %s\t%s\t%d\n", b.CIDR, b.Node, n)
					}
				}
			})
		},
	}
	cmd.AddCommand(show)
	return cmd
}

// ipamUsage groups blocks and endpoint addresses by pool.
func ipamUsage(pools []api.Pool, blocks []api.Block, eps []api.Endpoint) []poolUsage {
	var out []poolUsage
	for _, p := range pools {
		u := poolUsage{CIDR: p.CIDR, BlockSize: p.BlockSize, Blocks: []api.Block{}}
		if p.BlockSize >= p.CIDR.Bits() && p.BlockSize-p.CIDR.Bits() < 31 {
			u.BlocksTotal = 1 << (p.BlockSize - p.CIDR.Bits())
		}
		if bits := p.CIDR.Addr().BitLen() - p.CIDR.Bits(); bits < 31 {
			u.AddressTotal = 1 << bits
		}
		for _, b := range blocks {
			if p.CIDR.Contains(b.CIDR.Addr()) {
				u.Blocks = append(u.Blocks, b)
			}
		}
		u.BlocksUsed = len(u.Blocks)
		for _, ep := range eps {
			for _, ip := range ep.IPs {
				if p.CIDR.Contains(ip) {
					u.EndpointIPs++
				}
			}
		}
		out = append(out, u)
	}
	return out
}
