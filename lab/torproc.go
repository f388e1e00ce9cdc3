package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// ToRReadyTimeout bounds the wait for the ToR's daemons to answer.
const ToRReadyTimeout = 30 * time.Second

// torCommandTimeout bounds one birdc or vtysh call.
const torCommandTimeout = 10 * time.Second

// frrUser is the user FRR's daemons run as (Debian's frr package makes it;
// the daemons refuse root unless it is in the frrvty group).
const frrUser = "frr"

// torBinary returns the path of a ToR program: from PATH, else from the
// directories Debian installs it in.
func torBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/usr/lib/frr"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// torPrograms returns the programs a ToR of kind needs, by name.
func torPrograms(kind string) (map[string]string, error) {
	var names []string
	pkg := ""
	switch kind {
	case ToRBIRD:
		names, pkg = []string{"bird", "birdc"}, "bird2"
	case ToRFRR:
		names, pkg = []string{"zebra", "bgpd", "vtysh"}, "frr"
	default:
		return nil, fmt.Errorf("tor kind %q: want %s or %s", kind, ToRBIRD, ToRFRR)
	}
	out := map[string]string{}
	var errs []error
	for _, n := range names {
		p, err := torBinary(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[n] = p
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("tor %s: %w (apt-get install %s)", kind, errors.Join(errs...), pkg)
	}
	if kind == ToRFRR {
		if _, err := user.Lookup(frrUser); err != nil {
			return nil, fmt.Errorf("tor frr: user %s: %w (apt-get install frr)", frrUser, err)
		}
	}
	return out, nil
}

// upToRNetwork creates the ToR namespace and the host subnets: one bridge
// per subnet in the underlay namespace, one ToR leg into each (subnet 0
// included, where the underlay namespace and its etcd are), IP forwarding
// on in the ToR, and the underlay namespace's routes to the host subnets.
func (l *Lab) upToRNetwork(ctx context.Context) error {
	l.mu.Lock()
	t, ul, subnets, fams := *l.st.ToR, l.st.UnderlayNS, l.st.Subnets, l.st.Underlay
	l.mu.Unlock()
	if err := addNetNS(ctx, t.NetNS); err != nil {
		return fmt.Errorf("tor: %w", err)
	}
	if err := setLoUp(t.NetNS); err != nil {
		return fmt.Errorf("tor: %w", err)
	}
	v4, v6 := underlayFamilies(fams)
	for s := 0; s <= subnets; s++ {
		if s > 0 {
			if err := addBridge(ul, subnetBridge(s)); err != nil {
				return fmt.Errorf("subnet %d: %w", s, err)
			}
		}
		port, iface := torLeg(s)
		if err := attachHost(ul, subnetBridge(s), port, t.NetNS, iface, torPrefixes(fams, s), nil); err != nil {
			return fmt.Errorf("tor leg on subnet %d: %w", s, err)
		}
		if s == 0 {
			continue
		}
		if v4 {
			if err := addRoute(ul, UnderlayPrefix(s), ToRAddr(0)); err != nil {
				return fmt.Errorf("subnet %d: %w", s, err)
			}
		}
		if v6 {
			if err := addRoute(ul, UnderlayPrefix6(s), ToRAddr6(0)); err != nil {
				return fmt.Errorf("subnet %d: %w", s, err)
			}
		}
	}
	// A router that hairpins a packet between two hosts of one subnet would
	// otherwise teach them ICMP redirects.
	sysctls := map[string]string{
		"net/ipv4/ip_forward":                  "1",
		"net/ipv4/conf/all/send_redirects":     "0",
		"net/ipv4/conf/default/send_redirects": "0",
	}
	if v6 {
		sysctls["net/ipv6/conf/all/forwarding"] = "1"
	}
	if err := setSysctls(t.NetNS, sysctls); err != nil {
		return fmt.Errorf("tor: %w", err)
	}
	l.progress("tor namespace %s: %d host subnet(s) routed, %s on subnet 0", t.NetNS, subnets, joinPrefixes(torPrefixes(fams, 0)))
	return nil
}

// putToRPeers registers the ToR as external BGP peer of the given hosts
// (see torPeers).
func (l *Lab) putToRPeers(ctx context.Context, hosts []Host) error {
	st := l.State()
	peers := torPeers(st, hosts)
	if len(peers) == 0 {
		return nil
	}
	cfg := l.StoreConfig()
	cfg.DialTimeout, cfg.Log = 10*time.Second, l.log
	c, err := store.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("register tor peer: %w", err)
	}
	defer c.Close()
	for _, p := range peers {
		if err := c.PutBGPPeer(ctx, p); err != nil {
			return fmt.Errorf("register tor peer: %w", err)
		}
		l.log.Debug("tor peer registered", "peer", p.Name, "node", p.Node)
	}
	return nil
}

// writeToRConfig writes the BGP daemon's configuration for the current
// hosts (and, for FRR, zebra's), atomically.
func writeToRConfig(st State) error {
	conf, err := torConfig(st)
	if err != nil {
		return err
	}
	files := map[string][]byte{st.ToR.Config: conf}
	if st.ToR.Kind == ToRFRR {
		files[filepath.Join(st.ToR.frrDir(), "zebra.conf")] = []byte(frrZebraConfig(st))
	}
	for path, b := range files {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return fmt.Errorf("tor config: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("tor config: %w", err)
		}
	}
	return nil
}

// startToR writes the ToR's configuration and starts its daemons inside the
// ToR namespace, then waits until they answer on their control sockets.
func (l *Lab) startToR(ctx context.Context) error {
	st := l.State()
	t := *st.ToR
	progs, err := torPrograms(t.Kind)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return fmt.Errorf("tor: %w", err)
	}
	var pids []int
	switch t.Kind {
	case ToRBIRD:
		if err := writeToRConfig(st); err != nil {
			return err
		}
		pid, err := startInNetNS(t.NetNS, t.LogPath, []string{progs["bird"], "-f", "-c", t.Config, "-s", t.Socket, "-P", filepath.Join(t.Dir, "bird.pid")})
		if err != nil {
			return fmt.Errorf("tor: %w", err)
		}
		pids = append(pids, pid)
	case ToRFRR:
		if pids, err = startFRR(ctx, st, progs); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.st.ToR.PIDs = pids
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, ToRReadyTimeout)
	defer cancel()
	last := ""
	err = poll(wctx, func() (bool, error) {
		for _, p := range pids {
			if !procAlive(p) {
				return false, errExited
			}
		}
		_, err := torQuery(wctx, t, progs, "status")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("tor %s (pids %v) not ready: %w (last: %s)\n--- tail of %s ---\n%s",
			t.Kind, pids, err, last, t.LogPath, tailFile(t.LogPath, 20))
	}
	l.progress("tor %s up in %s (router id %s, AS %d, pids %v): route reflector for %d host(s)", t.Kind, t.NetNS, t.RouterID, t.ASN, pids, len(st.Hosts))
	return nil
}

// startFRR starts zebra, waits for its API socket, then starts bgpd. Both
// run as user frr in a directory frr owns, with their own pid files, vty
// sockets and zebra socket, never the system instance's.
func startFRR(ctx context.Context, st State, progs map[string]string) ([]int, error) {
	t := *st.ToR
	dir := t.frrDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tor: %w", err)
	}
	if err := writeToRConfig(st); err != nil {
		return nil, err
	}
	u, err := user.Lookup(frrUser)
	if err != nil {
		return nil, fmt.Errorf("tor frr: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid) // user.Lookup gives decimal ids on Linux
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
	if err != nil {
		return nil, fmt.Errorf("tor frr: %w", err)
	}
	if err := searchable(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("tor frr: its daemons run as user %s: %w", frrUser, err)
	}
	zserv := filepath.Join(dir, "zserv.api")
	common := func(daemon string) []string {
		return []string{
			progs[daemon],
			"-f", filepath.Join(dir, daemon+".conf"),
			"-i", filepath.Join(dir, daemon+".pid"),
			"-z", zserv,
			"--vty_socket", dir,
			"-P", "0", // no TCP vty
		}
	}
	zpid, err := startInNetNS(t.NetNS, filepath.Join(t.Dir, "zebra.out"), common("zebra"))
	if err != nil {
		return nil, fmt.Errorf("tor: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, ToRReadyTimeout)
	defer cancel()
	err = poll(wctx, func() (bool, error) {
		if !procAlive(zpid) {
			return false, errExited
		}
		_, err := os.Stat(zserv)
		return err == nil, nil
	})
	if err != nil {
		return []int{zpid}, fmt.Errorf("tor frr: zebra (pid %d) not ready: %w\n--- tail of zebra.out ---\n%s", zpid, err, tailFile(filepath.Join(t.Dir, "zebra.out"), 20))
	}
	bpid, err := startInNetNS(t.NetNS, filepath.Join(t.Dir, "bgpd.out"), common("bgpd"))
	if err != nil {
		return []int{zpid}, fmt.Errorf("tor: %w", err)
	}
	return []int{zpid, bpid}, nil
}

// searchable reports an error unless every directory from dir up to the
// root is searchable by others, as a daemon that drops root needs.
func searchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is not searchable by other users (mode %s); choose a run dir under one that is", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// torQuery asks the ToR's BGP daemon: "status", "routes" or "sessions".
func torQuery(ctx context.Context, t ToR, progs map[string]string, what string) ([]byte, error) {
	var argv []string
	switch t.Kind {
	case ToRBIRD:
		argv = []string{progs["birdc"], "-s", t.Socket}
		switch what {
		case "status":
			argv = append(argv, "show", "status")
		case "routes":
			argv = append(argv, "show", "route")
		case "sessions":
			argv = append(argv, "show", "protocols", "all")
		}
	case ToRFRR:
		argv = []string{progs["vtysh"], "--vty_socket", t.frrDir(), "-d", "bgpd", "-c"}
		switch what {
		case "status":
			argv = append(argv, "show bgp summary")
		case "routes":
			argv = append(argv, "show bgp ipv4 unicast", "-c", "show bgp ipv6 unicast")
		case "sessions":
			argv = append(argv, "show bgp ipv4 unicast summary json")
		case "sessions6":
			argv = append(argv, "show bgp ipv6 unicast summary json")
		}
	}
	return torRun(ctx, argv)
}

// torRun runs a ToR client program and returns its output; a failure
// carries the output.
func torRun(ctx context.Context, argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, torCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// reconfigureToR makes the running ToR peer with a new host: BIRD rereads
// its regenerated configuration (new protocols start, the others are
// untouched); FRR's bgpd gets the neighbour through vtysh.
func (l *Lab) reconfigureToR(ctx context.Context, h Host) error {
	st := l.State()
	t := *st.ToR
	progs, err := torPrograms(t.Kind)
	if err != nil {
		return err
	}
	if err := writeToRConfig(st); err != nil {
		return err
	}
	switch t.Kind {
	case ToRBIRD:
		out, err := torRun(ctx, []string{progs["birdc"], "-s", t.Socket, "configure"})
		if err != nil {
			return fmt.Errorf("tor: reconfigure: %w", err)
		}
		if s := string(out); !strings.Contains(s, "Reconfigur") || strings.Contains(strings.ToLower(s), "error") {
			return fmt.Errorf("tor: reconfigure: %s", strings.TrimSpace(s))
		}
	case ToRFRR:
		for _, n := range torNeighbors(st) {
			if n.Node != h.Name {
				continue
			}
			argv := append([]string{progs["vtysh"], "--vty_socket", t.frrDir(), "-d", "bgpd"}, frrAddNeighborCommands(t.ASN, n, torData(st).Sessions6)...)
			if _, err := torRun(ctx, argv); err != nil {
				return fmt.Errorf("tor: add neighbour %s: %w", n.Addr, err)
			}
		}
	}
	l.progress("tor %s now peers with %s (%s)", t.Kind, h.Name, h.UnderlayIP)
	return nil
}

// ErrNoToR is returned by the ToR helpers of a lab without a ToR.
var ErrNoToR = errors.New("lab has no top-of-rack router (lab up --backend bgp --tor bird|frr)")

// ToR returns the lab's top-of-rack router, or ErrNoToR.
func (l *Lab) ToR() (ToR, error) {
	st := l.State()
	if st.ToR == nil {
		return ToR{}, ErrNoToR
	}
	return *st.ToR, nil
}

// ToRRoutes returns the ToR daemon's BGP tables as it prints them: `birdc
// show route` (every table) or vtysh's `show bgp ipv4 unicast` and `show
// bgp ipv6 unicast`.
func (l *Lab) ToRRoutes(ctx context.Context) (string, error) {
	t, err := l.ToR()
	if err != nil {
		return "", err
	}
	progs, err := torPrograms(t.Kind)
	if err != nil {
		return "", err
	}
	out, err := torQuery(ctx, t, progs, "routes")
	return string(out), err
}

// ToRSessions returns the ToR's BGP sessions with the hosts, by host index,
// as its daemon reports them (`birdc show protocols all`, vtysh's `show bgp
// ipv4 unicast summary json`). Hosts the daemon does not know are missing.
func (l *Lab) ToRSessions(ctx context.Context) ([]ToRSession, error) {
	st := l.State()
	if st.ToR == nil {
		return nil, ErrNoToR
	}
	progs, err := torPrograms(st.ToR.Kind)
	if err != nil {
		return nil, err
	}
	out, err := torQuery(ctx, *st.ToR, progs, "sessions")
	if err != nil {
		return nil, err
	}
	if st.ToR.Kind == ToRBIRD {
		return parseBirdProtocols(string(out), torNeighbors(st)), nil
	}
	ss, err := parseFRRSummary(out, torNeighbors(st), false)
	if err != nil || !torData(st).Sessions6 {
		return ss, err
	}
	out, err = torQuery(ctx, *st.ToR, progs, "sessions6")
	if err != nil {
		return ss, err
	}
	ss6, err := parseFRRSummary(out, torNeighbors(st), true)
	return append(ss, ss6...), err
}

// ClientCommand returns the ToR's client command line, for users:
// `birdc -s <socket>` or `vtysh --vty_socket <dir>`.
func (t ToR) ClientCommand() string {
	if t.Kind == ToRFRR {
		return "vtysh --vty_socket " + t.frrDir()
	}
	return "birdc -s " + t.Socket
}

// torASN is the ASN the ToR speaks: the cluster's.
func torASN(cl api.Cluster) uint32 {
	if cl.BGP != nil && cl.BGP.ASN != 0 {
		return cl.BGP.ASN
	}
	return api.DefaultASN
}
