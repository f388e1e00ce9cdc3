package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Host is one virtual host: a network namespace on the underlay running skeind.
type Host struct {
	// Name is the namespace and the node name, "<lab>-h<index>".
	Name   string `json:"name"`
	Index  int    `json:"index"`
	Subnet int    `json:"subnet"`
	// UnderlayIP is the address the host's agent registers: IPv4, or IPv6
	// on an IPv6-only underlay (then equal to UnderlayIP6).
	UnderlayIP netip.Addr `json:"underlayIP"`
	// UnderlayIP6 is the host's IPv6 underlay address on a dual or IPv6
	// underlay.
	UnderlayIP6 netip.Addr `json:"underlayIP6,omitzero"`
	// AgentPID is skeind's pid, 0 while stopped.
	AgentPID  int    `json:"agentPID"`
	Socket    string `json:"socket"`
	StateDir  string `json:"stateDir"`
	LogPath   string `json:"logPath"`
	DebugAddr string `json:"debugAddr"`
	// CNIConfig is the host's conflist (the plugin talks to this host's agent).
	CNIConfig string `json:"cniConfig"`
	// LastContainer is the highest container index ever used on the host, so
	// a new container never reuses a deleted one's name.
	LastContainer int `json:"lastContainer"`
}

// Container is one container: a network namespace wired by skein-cni.
type Container struct {
	// Name is the namespace name, "<host>-c<index>".
	Name        string            `json:"name"`
	Host        string            `json:"host"`
	Index       int               `json:"index"`
	NetNS       string            `json:"netns"`
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifName"`
	PodName     string            `json:"podName"`
	PodNS       string            `json:"podNamespace"`
	Labels      map[string]string `json:"labels,omitempty"`
	Ports       []api.NamedPort   `json:"ports,omitempty"`
	// IP is the container's IPv4 address; none in an IPv6-only lab.
	IP netip.Addr `json:"ip,omitzero"`
	// IP6 is the container's IPv6 address in a dual-stack or IPv6-only lab.
	IP6 netip.Addr `json:"ip6,omitzero"`
}

// Addrs are a container's addresses, IPv4 first.
type Addrs []netip.Addr

// Addrs returns the container's addresses, IPv4 first (IPv6 alone in an
// IPv6-only lab).
func (c Container) Addrs() Addrs {
	var out Addrs
	for _, a := range []netip.Addr{c.IP, c.IP6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// Addr returns the container's first address: IPv4, or IPv6 in an
// IPv6-only lab.
func (c Container) Addr() netip.Addr {
	if c.IP.IsValid() {
		return c.IP
	}
	return c.IP6
}

// Strings renders each address.
func (as Addrs) Strings() []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// Etcd is one member of the lab's etcd, a process of its own.
type Etcd struct {
	// Name is the member's name in the cluster, "etcd<i>".
	Name string `json:"name"`
	// PID is the process's pid, 0 while stopped.
	PID   int    `json:"pid"`
	NetNS string `json:"netns"`
	// ClientURL is what the hosts use, on the underlay.
	ClientURL string `json:"clientURL"`
	// ClientURL6 is the IPv6 client URL on a dual underlay, where ClientURL
	// is the IPv4 one.
	ClientURL6 string `json:"clientURL6,omitempty"`
	// AdminURL is the unix socket for the root namespace.
	AdminURL string `json:"adminURL"`
	// PeerURL is where the other members reach it.
	PeerURL string `json:"peerURL"`
	Dir     string `json:"dir"`
	LogPath string `json:"logPath"`
	// CertFile and KeyFile are the member's server certificate (TLS only).
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// TLSFiles are the PEM files an etcd client of a TLS lab needs.
type TLSFiles struct {
	// CA verifies the members' certificates.
	CA string `json:"ca"`
	// Cert and Key are the client certificate the members require.
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// State is lab.json: everything Load needs to drive a lab from another process.
type State struct {
	Name       string `json:"name"`
	RunDir     string `json:"runDir"`
	BinDir     string `json:"binDir"`
	Backend    string `json:"backend"`
	PodCIDR    string `json:"podCIDR"`
	BlockSize  int    `json:"blockSize"`
	UnderlayNS string `json:"underlayNetns"`
	// Underlay is the underlay's families (Config.Underlay); "" in labs
	// from before it existed means ipv4.
	Underlay string `json:"underlay,omitempty"`
	// Subnets is the number of host subnets (Config.Subnets).
	Subnets int `json:"subnets,omitempty"`
	// ToR is the top-of-rack router, nil when the lab has none.
	ToR *ToR `json:"tor,omitempty"`
	// Etcd are the etcd members, by index (member i is Etcd[i-1]).
	Etcd []Etcd `json:"etcd"`
	// EtcdCommand is the program (and leading arguments) of every etcd
	// member: BinDir/skein, or a test's own binary.
	EtcdCommand []string `json:"etcdCommand"`
	// TLS is what etcd clients need when etcd serves TLS, nil otherwise.
	TLS        *TLSFiles   `json:"tls,omitempty"`
	Hosts      []Host      `json:"hosts"`
	Containers []Container `json:"containers"`
}

// readState reads runDir/lab.json.
func readState(runDir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(runDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("read lab state in %s: %w", runDir, ErrNotFound)
	}
	if err != nil {
		return State{}, fmt.Errorf("read lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("parse %s: %w", filepath.Join(runDir, stateFile), err)
	}
	return st, nil
}

// writeState writes runDir/lab.json atomically.
func writeState(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("render lab state: %w", err)
	}
	path := filepath.Join(st.RunDir, stateFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// host returns the host named name ("sklab-h1" or "h1").
func (st *State) host(name string) (*Host, error) {
	full := st.fullName(name)
	for i := range st.Hosts {
		if st.Hosts[i].Name == full {
			return &st.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("host %q: %w", name, ErrNotFound)
}

// container returns the container named name: its namespace name
// ("sklab-h1-c1"), short name ("h1-c1"), or pod name ("name" or
// "namespace/name") when that is unambiguous.
func (st *State) container(name string) (int, error) {
	full := st.fullName(name)
	for i, c := range st.Containers {
		if c.Name == full {
			return i, nil
		}
	}
	found := -1
	for i, c := range st.Containers {
		if c.PodName == name || c.PodNS+"/"+c.PodName == name {
			if found >= 0 {
				return -1, fmt.Errorf("container %q: ambiguous pod name, use the namespace name", name)
			}
			found = i
		}
	}
	if found < 0 {
		return -1, fmt.Errorf("container %q: %w", name, ErrNotFound)
	}
	return found, nil
}

// resolveNS returns the network namespace name for a host, container, the
// underlay ("ul") or the ToR ("tor"), in full or short form.
func (st *State) resolveNS(name string) (string, error) {
	if name == "ul" || name == st.UnderlayNS {
		return st.UnderlayNS, nil
	}
	if st.ToR != nil && (name == "tor" || name == st.ToR.NetNS) {
		return st.ToR.NetNS, nil
	}
	if h, err := st.host(name); err == nil {
		return h.Name, nil
	}
	if i, err := st.container(name); err == nil {
		return st.Containers[i].Name, nil
	} else if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("lab %s has no host or container %q: %w", st.Name, name, ErrNotFound)
}

// fullName adds the lab prefix to a short name.
func (st *State) fullName(name string) string {
	if strings.HasPrefix(name, st.Name+"-") {
		return name
	}
	return st.Name + "-" + name
}

// nextHostIndex returns the index after the highest host index.
func (st *State) nextHostIndex() int {
	n := 0
	for _, h := range st.Hosts {
		n = max(n, h.Index)
	}
	return n + 1
}

// sortState orders hosts and containers by index, so listings are stable.
func (st *State) sortState() {
	sort.Slice(st.Hosts, func(i, j int) bool { return st.Hosts[i].Index < st.Hosts[j].Index })
	hostIdx := make(map[string]int, len(st.Hosts))
	for _, h := range st.Hosts {
		hostIdx[h.Name] = h.Index
	}
	sort.Slice(st.Containers, func(i, j int) bool {
		a, b := st.Containers[i], st.Containers[j]
		if hostIdx[a.Host] != hostIdx[b.Host] {
			return hostIdx[a.Host] < hostIdx[b.Host]
		}
		return a.Index < b.Index
	})
}
