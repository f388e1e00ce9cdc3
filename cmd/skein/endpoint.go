package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

func newEndpointCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint", Short: "List and label container endpoints",
		Example: "  skein endpoint list -o wide\n  skein endpoint label default/web app=web tier-"}
	var node string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List endpoints (pods) with their node, addresses and labels",
		Example: "  skein endpoint list\n  skein endpoint list --node h1 -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				eps, err := cl.ListEndpoints(ctx)
				if err != nil {
					return err
				}
				out := []api.Endpoint{}
				for _, ep := range eps {
					if node == "" || ep.Node == node {
						out = append(out, ep)
					}
				}
				sort.Slice(out, func(i, j int) bool {
					if out[i].Namespace != out[j].Namespace {
						return out[i].Namespace < out[j].Namespace
					}
					return out[i].Name < out[j].Name
				})
				return g.render(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer, wide bool) {
					fmt.Fprint(tw, "NAMESPACE\tNAME\tNODE\tIPS\tLABELS")
					if wide {
						fmt.Fprint(tw, "\tCONTAINER\tIFNAME\tHOST IFACE")
					}
					fmt.Fprintln(tw)
					for _, ep := range out {
						ips := make([]string, len(ep.IPs))
						for i, ip := range ep.IPs {
							ips[i] = ip.String()
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", ep.Namespace, ep.Name, ep.Node, strings.Join(ips, ","), labelString(ep.Labels))
						if wide {
							fmt.Fprintf(tw, "\t%s\t%s\t%s", ep.ContainerID, ep.IfName, ep.HostIface)
						}
						fmt.Fprintln(tw)
					}
				})
			})
		},
	}
	list.Flags().StringVar(&node, "node", "", "only endpoints on this node")
	cmd.AddCommand(list)
	return cmd
}

func newNamespaceCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "namespace", Short: "List and label namespaces",
		Example: "  skein namespace list\n  skein namespace label prod env=prod"}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List namespaces with their labels",
		Example: "  skein namespace list -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				nss, err := cl.ListNamespaces(ctx)
				if err != nil {
					return err
				}
				return g.render(cmd.OutOrStdout(), nss, func(tw *tabwriter.Writer, _ bool) {
					fmt.Fprintln(tw, "NAME\tLABELS")
					for _, ns := range nss {
						fmt.Fprintf(tw, "%s\t%s\n", ns.Name, labelString(ns.EffectiveLabels()))
					}
				})
			})
		},
	}
	cmd.AddCommand(list)
	return cmd
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}
