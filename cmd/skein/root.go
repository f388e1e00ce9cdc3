package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skeinnet/skein/internal/flagsource"
	"github.com/skeinnet/skein/store"
)

// globalFlags are the flags every command shares.
type globalFlags struct {
	EtcdEndpoints []string
	EtcdPrefix    string
	EtcdCert      string
	EtcdKey       string
	EtcdCA        string
	EtcdUser      string
	EtcdPassword  string
	Output        string
	Timeout       time.Duration
	Config        string
}

// defaultConfigFile is read when present and no --config or SKEIN_CONFIG names another.
const defaultConfigFile = "/etc/skein/skein.yaml"

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
	// said: the command's output already states the error (a verdict on
	// stdout), so main does not repeat it on stderr.
	said bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "skein",
		Short:         "Administer a Skein container network",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  skein lab up                      # a 3-host virtual cluster in namespaces
  skein cluster init --pod-cidr 10.244.0.0/16 --backend vxlan
  skein node list -o wide`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.fromEnv(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&g.EtcdEndpoints, "etcd-endpoints", []string{"http://127.0.0.1:2379"}, "etcd client URLs (env SKEIN_ETCD_ENDPOINTS)")
	pf.StringVar(&g.EtcdPrefix, "etcd-prefix", "/skein/", "etcd key prefix (env SKEIN_ETCD_PREFIX)")
	pf.StringVar(&g.EtcdCert, "etcd-cert", "", "etcd client certificate (env SKEIN_ETCD_CERT)")
	pf.StringVar(&g.EtcdKey, "etcd-key", "", "etcd client key (env SKEIN_ETCD_KEY)")
	pf.StringVar(&g.EtcdCA, "etcd-ca", "", "etcd CA certificate (env SKEIN_ETCD_CA)")
	pf.StringVar(&g.EtcdUser, "etcd-user", "", "etcd user name, instead of the client certificate's CN (env SKEIN_ETCD_USER)")
	pf.StringVar(&g.EtcdPassword, "etcd-password", "", "etcd user's password (env SKEIN_ETCD_PASSWORD)")
	pf.StringVarP(&g.Output, "output", "o", "table", "output format: table, wide, json or yaml")
	pf.DurationVar(&g.Timeout, "timeout", 10*time.Second, "deadline for each call to etcd")
	pf.StringVar(&g.Config, "config", "", "YAML file of global flag values, e.g. `etcd-endpoints: https://10.0.0.10:2379` (env SKEIN_CONFIG; default "+defaultConfigFile+" when present)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "wide", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp)) // the flag exists: cannot fail
	nsCmd := newNamespaceCmd(g)
	nsCmd.AddCommand(newNamespaceLabelCmd(g))
	epCmd := newEndpointCmd(g)
	epCmd.AddCommand(newEndpointLabelCmd(g))
	polCmd := newPolicyCmd(g)
	polCmd.AddCommand(newPolicyTraceCmd(g), newPolicyMatrixCmd(g), newPolicyDropsCmd(g))
	root.AddCommand(newClusterCmd(g), newNodeCmd(g), newIPAMCmd(g), epCmd, nsCmd, polCmd, newLabCmd(g), newVersionCmd())
	root.AddCommand(newOpsCmds(g)...)
	root.AddCommand(newBGPCmd(g))
	root.AddCommand(newAuthCmd(g), newAuditCmd(g), newBackupCmd(g), newRestoreCmd(g))
	return root
}

// fromEnv fills flags not given on the command line from SKEIN_* variables,
// then from the config file: flags win over the environment, which wins
// over the file.
func (g *globalFlags) fromEnv(cmd *cobra.Command) error {
	var errs []error
	file, fromFile, err := g.readConfig()
	if err != nil {
		return err
	}
	var flags []flagsource.Flag
	for _, name := range globalSettings {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			continue
		}
		set := f.Value.Set
		if name == "etcd-endpoints" {
			set = func(v string) error {
				g.EtcdEndpoints = nil // Set appends to a slice flag's default
				return f.Value.Set(v)
			}
		}
		flags = append(flags, flagsource.Flag{Name: name, Changed: f.Changed, Set: set})
	}
	if err := flagsource.Fill(flags, file, fromFile); err != nil {
		errs = append(errs, err)
	}
	switch g.Output {
	case "table", "wide", "json", "yaml":
	default:
		errs = append(errs, fmt.Errorf("-o %q: want table, wide, json or yaml", g.Output))
	}
	if err := g.storeConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// client connects to etcd with the global flags.
func (g *globalFlags) client(ctx context.Context) (*store.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	c, err := store.New(cctx, g.storeConfig())
	if err != nil {
		return nil, fmt.Errorf("connect to etcd (--etcd-endpoints %s): %w", strings.Join(g.EtcdEndpoints, ","), err)
	}
	return c, nil
}

// storeConfig is the etcd client configuration the global flags give.
func (g *globalFlags) storeConfig() store.Config {
	return store.Config{
		Endpoints:   g.EtcdEndpoints,
		Prefix:      g.EtcdPrefix,
		CertFile:    g.EtcdCert,
		KeyFile:     g.EtcdKey,
		CAFile:      g.EtcdCA,
		Username:    g.EtcdUser,
		Password:    g.EtcdPassword,
		DialTimeout: g.Timeout,
		Audit:       g.actor(),
	}
}

// render prints v as JSON or YAML, or calls table for the table forms.
func (g *globalFlags) render(w io.Writer, v any, table func(tw *tabwriter.Writer, wide bool)) error {
	switch g.Output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw, g.Output == "wide")
	return tw.Flush()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the CLI version",
		Example: "  skein version",
		Args:    cobra.NoArgs,
		Run:     func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version) },
	}
}

// withStore is how every command reaches etcd: it connects with the global
// flags, runs fn with the client and a context bounded by --timeout, and
// closes the client. A command that makes many calls takes a fresh deadline
// for each with g.ctx.
func (g *globalFlags) withStore(cmd *cobra.Command, fn func(ctx context.Context, cl *store.Client) error) error {
	cl, err := g.client(cmd.Context())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := g.ctx(cmd)
	defer cancel()
	return fn(ctx, cl)
}

// completeFromStore completes a command's one argument from the names list
// returns, through withStore, quietly giving up when etcd does not answer
// within a second.
func (g *globalFlags) completeFromStore(list func(ctx context.Context, cl *store.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 || g.fromEnv(cmd) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		quick := *g
		quick.Timeout = time.Second
		var out []cobra.Completion
		_ = quick.withStore(cmd, func(ctx context.Context, cl *store.Client) error { // no completion is the answer to any error
			names, err := list(ctx, cl)
			if err != nil {
				return err
			}
			for _, n := range names {
				if strings.HasPrefix(n, toComplete) {
					out = append(out, n)
				}
			}
			return nil
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// ctx returns the command's context with the per-call deadline.
func (g *globalFlags) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.Timeout)
}

// globalSettings are the global flags the environment and the config file
// may set.
var globalSettings = []string{"etcd-endpoints", "etcd-prefix", "etcd-cert", "etcd-key", "etcd-ca", "etcd-user", "etcd-password", "output", "timeout"}

// readConfig loads the CLI config file: --config, else SKEIN_CONFIG, else
// the default file when it exists. Unknown keys are an error.
func (g *globalFlags) readConfig() (string, map[string]any, error) {
	file := g.Config
	if file == "" {
		file = os.Getenv("SKEIN_CONFIG")
	}
	explicit := file != ""
	if !explicit {
		file = defaultConfigFile
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			return "", nil, nil
		}
	}
	m, err := flagsource.ReadFile(file, globalSettings)
	if err != nil {
		return "", nil, err
	}
	return file, m, nil
}
