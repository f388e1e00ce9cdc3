package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// newPolicyCmd returns `skein policy` with apply, get, list and delete.
// (trace and matrix are added next to it from policytrace.go.)
func newPolicyCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "policy",
		Example: "  skein policy apply -f policies.yaml\n  skein policy trace --from x/a --to y/b --port 80\n  skein policy matrix --ports 80,81",
		Short:   "Apply, show and delete network policies (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)",
	}
	cmd.AddCommand(newPolicyApplyCmd(g), newPolicyGetCmd(g), newPolicyListCmd(g), newPolicyDeleteCmd(g))
	return cmd
}

func newPolicyApplyCmd(g *globalFlags) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|- [-f FILE]...",
		Short: "Create or replace policies from YAML or JSON files",
		Long: `Create or replace the policies in multi-document YAML or JSON files (kind, namespace
and name identify a policy; applying it again replaces it). Every document of every
file is decoded and validated first: one bad document rejects everything, and the
error names its file, document number, line and field.

Namespace documents add their labels to the namespace (creating it); labels not in
the document are kept. Endpoint and Node documents are refused: endpoints come from
the CNI plugin, nodes register themselves (both belong in offline files for trace
and matrix).`,
		Example: `  skein policy apply -f policies.yaml
  kubectl get netpol -A -o yaml | skein policy apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := readPolicyFiles(cmd.InOrStdin(), files)
			if err != nil {
				return err
			}
			for _, o := range objs {
				if o.GetKind() == api.KindEndpoint {
					return fmt.Errorf("endpoint %s: endpoints come from the CNI plugin and cannot be applied (keep them in files for offline trace and matrix)", api.ObjectName(o))
				}
				if o.GetKind() == api.KindNode {
					return fmt.Errorf("node %s: nodes register themselves (skeind) and cannot be applied (keep them in files for offline trace and matrix)", api.ObjectName(o))
				}
			}
			return g.withStore(cmd, func(_ context.Context, cl *store.Client) error {
				out := cmd.OutOrStdout()
				for _, o := range objs {
					res, err := applyObject(cmd, g, cl, o)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "%s %s %s\n", strings.ToLower(o.GetKind()), api.ObjectName(o), res)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file to apply, - for stdin (repeatable)")
	_ = cmd.MarkFlagRequired("filename") // the flag exists: cannot fail
	return cmd
}

// applyObject writes one decoded object with its own deadline.
func applyObject(cmd *cobra.Command, g *globalFlags, cl *store.Client, o api.Object) (string, error) {
	ctx, cancel := g.ctx(cmd)
	defer cancel()
	if err := refuseKubeOwned(ctx, cl, o, o.GetKind(), o.GetNamespace(), o.GetName()); err != nil {
		return "", err
	}
	if ns, ok := o.(*api.NamespaceDoc); ok {
		labels := map[string]string{}
		for k, v := range ns.Labels {
			if k != api.NamespaceNameLabel { // implied, and checked equal to the name
				labels[k] = v
			}
		}
		before, err := cl.GetNamespace(ctx, ns.Name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
		existed := err == nil
		after, err := cl.LabelNamespace(ctx, ns.Name, labels, nil)
		if err != nil {
			return "", err
		}
		switch {
		case !existed:
			return string(store.Created), nil
		case maps.Equal(before.Labels, after.Labels):
			return string(store.Unchanged), nil
		}
		return string(store.Configured), nil
	}
	res, err := cl.PutPolicy(ctx, o)
	return string(res), err
}

// readPolicyFiles reads and decodes files ("-" is stdin) with
// api.DecodeDocuments, all or nothing: the first bad document fails the
// whole set. The same object in two files is an error too. It is shared by
// apply, delete -f, and offline trace and matrix.
func readPolicyFiles(stdin io.Reader, files []string) ([]api.Object, error) {
	if len(files) == 0 {
		return nil, errors.New("no files: give -f FILE or -f - for stdin")
	}
	var out []api.Object
	seen := map[string]string{}
	for _, f := range files {
		data, name, err := readLimited(stdin, f)
		if err != nil {
			return nil, err
		}
		objs, err := api.DecodeDocuments(name, data)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			key := o.GetKind() + " " + api.ObjectName(o)
			if prev, dup := seen[key]; dup && prev != name {
				return nil, fmt.Errorf("%s: %s is also defined in %s", name, key, prev)
			}
			seen[key] = name
		}
		out = append(out, objs...)
	}
	return out, nil
}

// readLimited reads a file or stdin ("-"), refusing more than
// api.MaxFileBytes without reading it all.
func readLimited(stdin io.Reader, f string) ([]byte, string, error) {
	var r io.Reader
	name := f
	if f == "-" {
		r, name = stdin, "<stdin>"
	} else {
		fh, err := os.Open(f)
		if err != nil {
			return nil, name, err
		}
		defer fh.Close()
		r = fh
	}
	data, err := io.ReadAll(io.LimitReader(r, api.MaxFileBytes+1))
	if err != nil {
		return nil, name, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > api.MaxFileBytes {
		return nil, name, fmt.Errorf("%s: more than %d bytes: %w", name, api.MaxFileBytes, api.ErrTooLarge)
	}
	return data, name, nil
}

// policyKinds maps the names users type to kinds.
var policyKinds = map[string]string{
	"networkpolicy": api.KindNetworkPolicy, "networkpolicies": api.KindNetworkPolicy, "netpol": api.KindNetworkPolicy, "np": api.KindNetworkPolicy,
	"adminnetworkpolicy": api.KindAdminNetworkPolicy, "adminnetworkpolicies": api.KindAdminNetworkPolicy, "anp": api.KindAdminNetworkPolicy,
	"baselineadminnetworkpolicy": api.KindBaselineAdminNetworkPolicy, "baselineadminnetworkpolicies": api.KindBaselineAdminNetworkPolicy, "banp": api.KindBaselineAdminNetworkPolicy,
	"clusternetworkpolicy": api.KindClusterNetworkPolicy, "clusternetworkpolicies": api.KindClusterNetworkPolicy, "cnp": api.KindClusterNetworkPolicy,
}

// parsePolicyKind accepts a kind in any case, plural, or short (np, anp, banp, cnp).
func parsePolicyKind(s string) (string, error) {
	if k, ok := policyKinds[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown policy kind %q (want networkpolicy|np, adminnetworkpolicy|anp, baselineadminnetworkpolicy|banp or clusternetworkpolicy|cnp)", s)
}

// parsePolicyRef splits NS/NAME for NetworkPolicy (NAME alone uses ns) or
// NAME for the cluster-scoped kinds.
func parsePolicyRef(kind, ref, ns string) (string, string, error) {
	if api.ClusterScoped(kind) {
		if strings.Contains(ref, "/") {
			return "", "", fmt.Errorf("%s is cluster-scoped: give NAME, not %q", kind, ref)
		}
		return "", ref, nil
	}
	if n, name, ok := strings.Cut(ref, "/"); ok {
		return n, name, nil
	}
	return ns, ref, nil
}

func newPolicyGetCmd(g *globalFlags) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "get KIND NS/NAME|NAME",
		Short: "Print one policy as YAML (default) or JSON",
		Example: `  skein policy get np x/allow-web
  skein policy get anp deny-y -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parsePolicyKind(args[0])
			if err != nil {
				return err
			}
			pns, name, err := parsePolicyRef(kind, args[1], ns)
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				o, err := cl.GetPolicy(ctx, kind, pns, name)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%s %s not found", kind, objectRef(pns, name))
				}
				if err != nil {
					return err
				}
				return renderObject(cmd.OutOrStdout(), g, o)
			})
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", api.DefaultNamespace, "namespace of a NetworkPolicy given by NAME alone")
	return cmd
}

// renderObject prints o as JSON with -o json, else as YAML.
func renderObject(w io.Writer, g *globalFlags, v any) error {
	gg := *g
	if gg.Output != "json" {
		gg.Output = "yaml"
	}
	return gg.render(w, v, nil)
}

func objectRef(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func newPolicyListCmd(g *globalFlags) *cobra.Command {
	var kindFlag, ns string
	cmd := &cobra.Command{
		Use:   "list [--kind KIND] [-n NS]",
		Short: "List policies",
		Example: `  skein policy list
  skein policy list --kind np -n x
  skein policy list -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind := ""
			if kindFlag != "" {
				var err error
				if kind, err = parsePolicyKind(kindFlag); err != nil {
					return err
				}
			}
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				objs, err := cl.ListPolicies(ctx, kind)
				if err != nil {
					return err
				}
				out := []api.Object{}
				for _, o := range objs {
					if ns == "" || o.GetNamespace() == ns {
						out = append(out, o)
					}
				}
				sort.SliceStable(out, func(i, j int) bool { return policyOrder(out[i]) < policyOrder(out[j]) })
				return g.render(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer, _ bool) {
					fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tSUMMARY")
					for _, o := range out {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.GetKind(), dash(o.GetNamespace()), o.GetName(), policySummary(o))
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&kindFlag, "kind", "", "only this kind (np, anp, banp, cnp or the full name)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "only NetworkPolicies of this namespace")
	return cmd
}

// policyOrder sorts the list as evaluation goes: the Admin tier (ANP, then
// Admin CNP), NetworkPolicy, the Baseline tier (Baseline CNP, then BANP).
func policyOrder(o api.Object) int {
	switch p := o.(type) {
	case *api.AdminNetworkPolicy:
		return 0
	case *api.ClusterNetworkPolicy:
		if p.Spec.Tier == api.TierAdmin {
			return 1
		}
		return 3
	case *api.NetworkPolicy:
		return 2
	}
	return 4
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// policySummary describes a policy in one line for the table.
func policySummary(o api.Object) string {
	switch p := o.(type) {
	case *api.NetworkPolicy:
		return fmt.Sprintf("pods=%s types=%s ingress=%d egress=%d", selectorString(&p.Spec.PodSelector),
			strings.Join(p.Spec.PolicyTypes, ","), len(p.Spec.Ingress), len(p.Spec.Egress))
	case *api.AdminNetworkPolicy:
		return fmt.Sprintf("priority=%d subject=%s ingress=%d egress=%d", p.Spec.Priority, subjectString(p.Spec.Subject),
			len(p.Spec.Ingress), len(p.Spec.Egress))
	case *api.BaselineAdminNetworkPolicy:
		return fmt.Sprintf("subject=%s ingress=%d egress=%d", subjectString(p.Spec.Subject), len(p.Spec.Ingress), len(p.Spec.Egress))
	case *api.ClusterNetworkPolicy:
		return fmt.Sprintf("tier=%s priority=%d subject=%s ingress=%d egress=%d", p.Spec.Tier, p.Spec.Priority, subjectString(p.Spec.Subject),
			len(p.Spec.Ingress), len(p.Spec.Egress))
	}
	return ""
}

func subjectString(s api.AdminNetworkPolicySubject) string {
	if s.Pods != nil {
		return fmt.Sprintf("namespaces(%s)+pods(%s)", selectorString(&s.Pods.NamespaceSelector), selectorString(&s.Pods.PodSelector))
	}
	return "namespaces(" + selectorString(s.Namespaces) + ")"
}

// selectorString renders a selector as kubectl does: "a=b,c in (d,e),!f";
// "<all>" for the empty selector, "<none>" for nil.
func selectorString(s *api.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	if s.Empty() {
		return "<all>"
	}
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case api.LabelSelectorOpIn:
			parts = append(parts, fmt.Sprintf("%s in (%s)", r.Key, strings.Join(r.Values, ",")))
		case api.LabelSelectorOpNotIn:
			parts = append(parts, fmt.Sprintf("%s notin (%s)", r.Key, strings.Join(r.Values, ",")))
		case api.LabelSelectorOpExists:
			parts = append(parts, r.Key)
		case api.LabelSelectorOpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}

func newPolicyDeleteCmd(g *globalFlags) *cobra.Command {
	var files []string
	var ns string
	var ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "delete KIND NS/NAME|NAME | -f FILE",
		Short: "Delete a policy, or the policies in files",
		Long: `Delete one policy, or every policy in the given files (other kinds in the files
are skipped). Deleting a policy that does not exist is an error unless
--ignore-not-found; with files, the others are still deleted.`,
		Example: `  skein policy delete np x/allow-web
  skein policy delete anp deny-y
  skein policy delete -f policies.yaml`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			type ref struct{ kind, ns, name string }
			var refs []ref
			switch {
			case len(files) > 0 && len(args) > 0:
				return errors.New("give either KIND NAME or -f FILE, not both")
			case len(files) > 0:
				objs, err := readPolicyFiles(cmd.InOrStdin(), files)
				if err != nil {
					return err
				}
				for _, o := range objs {
					if !api.IsPolicyKind(o.GetKind()) {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s %s skipped: not a policy\n", strings.ToLower(o.GetKind()), api.ObjectName(o))
						continue
					}
					refs = append(refs, ref{o.GetKind(), o.GetNamespace(), o.GetName()})
				}
			case len(args) == 2:
				kind, err := parsePolicyKind(args[0])
				if err != nil {
					return err
				}
				pns, name, err := parsePolicyRef(kind, args[1], ns)
				if err != nil {
					return err
				}
				refs = append(refs, ref{kind, pns, name})
			default:
				return errors.New("give KIND NS/NAME (or KIND NAME), or -f FILE")
			}
			return g.withStore(cmd, func(_ context.Context, cl *store.Client) error {
				var errs []error
				for _, r := range refs {
					ctx, cancel := g.ctx(cmd)
					err := refuseKubeOwned(ctx, cl, nil, r.kind, r.ns, r.name)
					if err == nil {
						err = cl.DeletePolicy(ctx, r.kind, r.ns, r.name)
					}
					cancel()
					switch {
					case errors.Is(err, store.ErrNotFound):
						if !ignoreNotFound {
							errs = append(errs, fmt.Errorf("%s %s not found", r.kind, objectRef(r.ns, r.name)))
						}
					case err != nil:
						errs = append(errs, err)
					default:
						fmt.Fprintf(cmd.OutOrStdout(), "%s %s deleted\n", strings.ToLower(r.kind), objectRef(r.ns, r.name))
					}
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "delete the policies in this file, - for stdin (repeatable)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", api.DefaultNamespace, "namespace of a NetworkPolicy given by NAME alone")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "deleting an absent policy is no error")
	return cmd
}
