package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

func newClusterCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Initialise and show the cluster configuration",
		Example: "  skein cluster init --pod-cidr 10.244.0.0/16\n  skein cluster show -o yaml"}
	var (
		cidrs     []string
		blockSize int
		blockV6   int
		backend   string
		asn       uint32
		nodeMesh  bool
		vni, port int
		force     bool
		direct    bool
		encrypt   string
		wgPort    int
	)
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write the cluster configuration (pools, backend) to etcd",
		Example: `  skein cluster init --pod-cidr 10.244.0.0/16
  skein cluster init --pod-cidr 10.244.0.0/16,10.245.0.0/16 --block-size 24 --backend vxlan
  skein cluster init --pod-cidr 10.244.0.0/16 --vxlan-direct-routing
  skein cluster init --pod-cidr 10.244.0.0/16 --encryption wireguard
  skein cluster init --pod-cidr 10.244.0.0/16 --pod-cidr fd00:10:244::/56   # dual-stack
  skein cluster init --pod-cidr fd00:10:244::/56                            # IPv6 only (vxlan)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := buildCluster(cidrs, blockSize, blockV6, backend, asn, nodeMesh, vni, port)
			if err != nil {
				return err
			}
			if direct {
				if c.Backend != api.BackendVXLAN {
					return fmt.Errorf("--vxlan-direct-routing: needs backend vxlan, not %s", c.Backend)
				}
				c.VXLAN.DirectRouting = true
			}
			if err := applyEncryption(&c, encrypt, wgPort); err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				if force {
					err = cl.PutCluster(ctx, c)
				} else {
					err = cl.CreateCluster(ctx, c)
				}
				if errors.Is(err, store.ErrExists) {
					return fmt.Errorf("the cluster is already initialised (see `skein cluster show`; --force overwrites, which is unsafe once nodes hold blocks): %w", err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "cluster initialised: pools %v, backend %s\n", cidrs, c.Backend)
				return nil
			})
		},
	}
	f := initCmd.Flags()
	f.StringSliceVar(&cidrs, "pod-cidr", nil, "pod address pool(s), repeatable or comma-separated; an IPv6 pool next to an IPv4 one makes the cluster dual-stack, IPv6 pools alone IPv6-only (required)")
	f.IntVar(&blockSize, "block-size", api.DefaultBlockSize, "prefix length of the blocks nodes lease from each IPv4 pool")
	f.IntVar(&blockV6, "block-size-v6", api.DefaultBlockSizeV6, fmt.Sprintf("prefix length of the blocks nodes lease from each IPv6 pool (/%d to /%d)", api.MinBlockSizeV6, api.MaxBlockSizeV6))
	f.StringVar(&backend, "backend", string(api.BackendVXLAN), "inter-host dataplane: vxlan or bgp")
	f.Uint32Var(&asn, "asn", api.DefaultASN, "BGP AS number (backend bgp)")
	f.BoolVar(&nodeMesh, "node-mesh", true, "full BGP mesh between nodes (backend bgp)")
	f.IntVar(&vni, "vni", api.DefaultVNI, "VXLAN network identifier")
	f.IntVar(&port, "vxlan-port", api.DefaultVXLANPort, "VXLAN UDP port")
	f.BoolVar(&direct, "vxlan-direct-routing", false, "route to nodes on the same underlay subnet without encapsulation (backend vxlan)")
	f.StringVar(&encrypt, "encryption", "none", "encrypt pod traffic between hosts: wireguard (backend vxlan; docs/encryption.md) or none")
	f.IntVar(&wgPort, "wireguard-port", api.DefaultWireGuardPort, "WireGuard UDP port (--encryption wireguard)")
	f.BoolVar(&force, "force", false, "overwrite an existing configuration")
	_ = initCmd.MarkFlagRequired("pod-cidr") // the flag exists: cannot fail

	showCmd := &cobra.Command{
		Use:     "show",
		Short:   "Show the cluster configuration",
		Example: "  skein cluster show\n  skein cluster show -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				c, err := cl.GetCluster(ctx)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("the cluster is not initialised yet: run `skein cluster init --pod-cidr CIDR`")
				}
				if err != nil {
					return err
				}
				return g.render(cmd.OutOrStdout(), c, func(tw *tabwriter.Writer, _ bool) {
					fmt.Fprintf(tw, "BACKEND\t%s\n", c.Backend)
					for _, p := range c.Pools {
						fmt.Fprintf(tw, "POOL\t%s\tblocks /%d\n", p.CIDR, p.BlockSize)
					}
					if c.Backend == api.BackendVXLAN {
						fmt.Fprintf(tw, "VXLAN\tvni %d\tport %d\tdirect routing %v\n", c.VXLAN.VNI, c.VXLAN.Port, c.VXLAN.DirectRouting)
					}
					if c.WireGuard != nil {
						fmt.Fprintf(tw, "ENCRYPTION\t%s\tport %d\n", c.Encryption, c.WireGuard.Port)
					}
					if c.BGP != nil {
						fmt.Fprintf(tw, "BGP\tasn %d\tnode mesh %v\n", c.BGP.ASN, c.BGP.NodeMesh)
					}
					if !c.Created.IsZero() {
						fmt.Fprintf(tw, "CREATED\t%s\n", c.Created.Format(time.RFC3339))
					}
				})
			})
		},
	}
	cmd.AddCommand(initCmd, showCmd)
	return cmd
}

// buildCluster turns the init flags into a validated Cluster.
func buildCluster(cidrs []string, blockSize, blockV6 int, backend string, asn uint32, nodeMesh bool, vni, port int) (api.Cluster, error) {
	c := api.Cluster{Backend: api.Backend(backend), VXLAN: api.VXLANConfig{VNI: vni, Port: port}, Created: time.Now().UTC()}
	for i, s := range cidrs {
		p, err := api.ParsePrefix(fmt.Sprintf("--pod-cidr[%d]", i), s)
		if err != nil {
			return api.Cluster{}, err
		}
		pool, flag := api.Pool{CIDR: p, BlockSize: blockSize}, "--block-size"
		if p.Addr().Is6() {
			pool.BlockSize, flag = blockV6, "--block-size-v6"
		}
		if err := pool.Validate(); err != nil {
			return api.Cluster{}, fmt.Errorf("--pod-cidr[%d] with %s %d: %w", i, flag, pool.BlockSize, err)
		}
		c.Pools = append(c.Pools, pool)
	}
	if c.Backend == api.BackendBGP {
		c.BGP = &api.BGPConfig{ASN: asn, NodeMesh: nodeMesh}
	}
	c = c.Defaulted()
	if err := c.Validate(); err != nil {
		return api.Cluster{}, err
	}
	return c, nil
}
