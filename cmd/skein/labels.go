package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// parseLabelArgs turns "k=v" and "k-" arguments into labels to set and
// keys to remove.
func parseLabelArgs(args []string) (map[string]string, []string, error) {
	set := map[string]string{}
	var remove []string
	seen := map[string]bool{}
	for _, a := range args {
		var key string
		if k, v, ok := strings.Cut(a, "="); ok {
			key = k
			set[k] = v
		} else if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			key = k
			remove = append(remove, k)
		} else {
			return nil, nil, fmt.Errorf("label %q: want KEY=VALUE to set or KEY- to remove", a)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("label %s given twice", key)
		}
		seen[key] = true
	}
	return set, remove, nil
}

// newNamespaceLabelCmd returns `namespace label`, attached under `skein namespace`.
func newNamespaceLabelCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "label NS KEY=VALUE|KEY-...",
		Short: "Set or remove labels of a namespace (policies see the change at once)",
		Long: `Set (KEY=VALUE, replacing any value) or remove (KEY-) labels of a namespace. A
namespace not known yet is created, so it can be labelled before its first pod. The
label ` + api.NamespaceNameLabel + ` is implied and cannot be changed.`,
		Example: `  skein namespace label x ns=x team=web
  skein namespace label x team-`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, remove, err := parseLabelArgs(args[1:])
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				ns, err := cl.LabelNamespace(ctx, args[0], set, remove)
				if err != nil {
					return err
				}
				return g.render(cmd.OutOrStdout(), ns, func(tw *tabwriter.Writer, _ bool) {
					fmt.Fprintf(tw, "namespace %s labelled: %s\n", ns.Name, labelString(ns.EffectiveLabels()))
				})
			})
		},
	}
}

// newEndpointLabelCmd returns `endpoint label`, attached under `skein endpoint`.
func newEndpointLabelCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "label NS/NAME KEY=VALUE|KEY-...",
		Short: "Set or remove labels of a pod's endpoints (policies see the change at once)",
		Long: `Set (KEY=VALUE, replacing any value) or remove (KEY-) labels of every endpoint
(interface) of the pod NS/NAME. A later CNI ADD of the same pod takes its labels
from the CNI arguments again.`,
		Example: `  skein endpoint label x/a pod=a tier=web
  skein endpoint label x/a tier-`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok || ns == "" || name == "" {
				return fmt.Errorf("endpoint %q: want NAMESPACE/NAME", args[0])
			}
			set, remove, err := parseLabelArgs(args[1:])
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				eps, err := cl.LabelEndpoint(ctx, ns, name, set, remove)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("endpoint %s/%s not found (see skein endpoint list)", ns, name)
				}
				if err != nil {
					return err
				}
				return g.render(cmd.OutOrStdout(), eps, func(tw *tabwriter.Writer, _ bool) {
					for _, ep := range eps {
						fmt.Fprintf(tw, "endpoint %s/%s (%s %s/%s) labelled: %s\n", ep.Namespace, ep.Name, ep.Node, shortID(ep.ContainerID), ep.IfName, labelString(ep.Labels))
					}
				})
			})
		},
	}
}

// shortID shortens a container id for display.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
