package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skeinnet/skein/lab"
)

// The reference chain: bridge + host-local in a host namespace of its own,
// on a subnet none of the machine's or the lab's ranges use.
const (
	refNetwork     = "skbref"
	refBridge      = "skbr0"
	refSubnet      = "10.254.0.0/16"
	versionSamples = 20
	cniOpTimeout   = 30 * time.Second
)

var refHost = nsPrefix + "-xref"

// cniChain is one plugin chain as cnitool drives it.
type cniChain struct {
	name    string // report name
	hostNS  string // namespace cnitool (and so the plugin) runs in
	confDir string // NETCONFPATH
	binDir  string // CNI_PATH
	network string // network name in the conflist
	plugin  string // main plugin binary, for the exec floor
	ctrPfx  string // container namespace name prefix
}

// refConflist renders the reference chain's conflist.
func refConflist(dataDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": lab.CNIVersion,
		"name":       refNetwork,
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    refBridge,
			"isGateway": true,
			"ipMasq":    false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": refSubnet}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": dataDir,
			},
		}},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// measureCNI times cnitool ADD and DEL for skein-cni on the first lab host
// and for the reference chain, alternating call by call.
func (b *bench) measureCNI(ctx context.Context, l *lab.Lab) (*CNIResult, error) {
	h := l.Hosts()[0]
	dir := filepath.Join(runDir, "cni")
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return nil, err
	}
	conf, err := refConflist(filepath.Join(dir, "host-local"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(confDir, refNetwork+".conflist"), conf, 0o644); err != nil {
		return nil, err
	}
	if err := b.addNS(ctx, refHost); err != nil {
		return nil, err
	}
	chains := []cniChain{
		{name: skeinPluginName, hostNS: h.Name, confDir: filepath.Dir(h.CNIConfig), binDir: b.cfg.bin, network: lab.CNINetwork, plugin: filepath.Join(b.cfg.bin, "skein-cni"), ctrPfx: nsPrefix + "-xcs"},
		{name: refPlugins, hostNS: refHost, confDir: confDir, binDir: filepath.Join(b.cfg.bin, "ref"), network: refNetwork, plugin: filepath.Join(b.cfg.bin, "ref", "bridge"), ctrPfx: nsPrefix + "-xcr"},
	}
	n := b.cfg.cniCount
	// Container namespaces 0 .. n; 0 is the untimed warm-up.
	var made []string
	defer func() {
		// Delete them now so the later phases run with fewer namespaces;
		// cleanup catches whatever fails here.
		for _, ns := range made {
			if err := delNS(context.WithoutCancel(ctx), ns); err != nil {
				b.log.Warn("delete container namespace", "netns", ns, "err", err)
			}
		}
	}()
	for _, c := range chains {
		for i := 0; i <= n; i++ {
			ns := fmt.Sprintf("%s%d", c.ctrPfx, i)
			if err := b.addNS(ctx, ns); err != nil {
				return nil, err
			}
			made = append(made, ns)
		}
	}
	res := &CNIResult{}
	for _, c := range chains {
		res.Plugins = append(res.Plugins, CNIPlugin{Name: c.name})
	}
	// order alternates which chain goes first, call by call.
	order := func(i int) []int {
		if i%2 == 0 {
			return []int{0, 1}
		}
		return []int{1, 0}
	}
	before, merr := scrapeCNIMetrics(ctx, l, h.Name)
	for _, op := range []string{"add", "del"} {
		for i := 0; i <= n; i++ {
			for _, k := range order(i) {
				c := chains[k]
				d, err := b.cnitool(ctx, c, op, fmt.Sprintf("%s%d", c.ctrPfx, i))
				if err != nil {
					return nil, err
				}
				if i == 0 {
					continue
				}
				p := &res.Plugins[k]
				if op == "add" {
					p.Add = append(p.Add, d)
				} else {
					p.Del = append(p.Del, d)
				}
			}
		}
	}
	if merr == nil {
		after, err := scrapeCNIMetrics(ctx, l, h.Name)
		if err == nil {
			res.AgentVerbs = verbMeans(before, after)
		}
		merr = err
	}
	if merr != nil {
		b.log.Warn("agent CNI metrics", "err", merr)
	}
	for i := range versionSamples {
		for _, k := range order(i) {
			d, err := b.pluginVersion(ctx, chains[k])
			if err != nil {
				return nil, err
			}
			res.Plugins[k].Version = append(res.Plugins[k].Version, d)
		}
	}
	for _, p := range res.Plugins {
		b.log.Info("cni", "plugins", p.Name, "add_p50", percentile(p.Add, 50), "del_p50", percentile(p.Del, 50), "version_p50", percentile(p.Version, 50))
	}
	return res, nil
}

// cniEnv is the environment of cnitool and the plugins it runs.
func cniEnv(c cniChain) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "NETCONFPATH=" + c.confDir, "CNI_PATH=" + c.binDir}
}

// cnitool runs one `cnitool op network netns` inside the chain's host
// namespace and returns its wall time.
func (b *bench) cnitool(ctx context.Context, c cniChain, op, ns string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cniOpTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.bin, "cnitool"), op, c.network, nsPath(ns))
	cmd.Env = cniEnv(c)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := runIn(c.hostNS, cmd)
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("cnitool %s %s %s (%s): %w: %s", op, c.network, ns, c.name, err, strings.TrimSpace(out.String()))
	}
	return d, nil
}

// pluginVersion execs the chain's main plugin with CNI_COMMAND=VERSION.
func (b *bench) pluginVersion(ctx context.Context, c cniChain) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cniOpTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.plugin)
	cmd.Env = append(cniEnv(c), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"` + lab.CNIVersion + `"}`)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := runIn(c.hostNS, cmd)
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s VERSION: %w: %s", filepath.Base(c.plugin), err, strings.TrimSpace(out.String()))
	}
	if !slices.Contains(strings.Fields(strings.NewReplacer(`"`, " ", ",", " ", "[", " ", "]", " ").Replace(out.String())), lab.CNIVersion) {
		return 0, fmt.Errorf("%s VERSION: unexpected answer %q", filepath.Base(c.plugin), out.String())
	}
	return d, nil
}
