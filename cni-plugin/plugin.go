package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/skeinnet/skein/api"
)

// rollbackTimeout bounds the cleanup after a failed ADD; it runs on a
// context detached from the (possibly expired) command deadline.
const rollbackTimeout = 5 * time.Second

// Sentinel errors of the dataplane the commands branch on.
var (
	// errHostIfaceExists: ADD found the attachment's host veth already present.
	errHostIfaceExists = errors.New("host interface exists")
	// errNetns: the netns could not be opened or entered.
	errNetns = errors.New("netns unusable")
)

// dataplane is the kernel side of an attachment, implemented with netlink in
// dataplane_linux.go and faked in tests. Errors wrap the sentinels above
// where callers need to tell them apart.
type dataplane interface {
	// Preflight checks, before anything is allocated, that netnsPath can be
	// entered (errNetns) and that hostIface does not exist (errHostIfaceExists).
	Preflight(netnsPath, hostIface string) error
	// Plumb creates and configures the veth pair described by w.
	Plumb(w wiring, ifName string) (plumbed, error)
	// Unplumb removes the owner's host veth and, when netnsPath is non-empty
	// and still exists, its container interface (only if provably ours).
	// Missing pieces are not an error.
	Unplumb(netnsPath string, owner api.Owner) error
	// Observe reports the kernel state of an attachment for CHECK.
	Observe(netnsPath, ifName, hostIface string) (observed, error)
}

// plugin holds the process-wide dependencies of the CNI commands.
type plugin struct {
	stdout io.Writer
	stderr io.Writer
	// newDataplane opens the kernel side; required.
	newDataplane func(log *slog.Logger) (dataplane, error)
}

func (p *plugin) funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.cmdAdd, Del: p.cmdDel, Check: p.cmdCheck, GC: p.cmdGC, Status: p.cmdStatus}
}

// session is the per-invocation state shared by the commands.
type session struct {
	conf  *config
	log   *slog.Logger
	agent *agentClient
	close func()
}

// start parses the config and sets up logging and the agent client.
func (p *plugin) start(verb string, args *skel.CmdArgs) (*session, error) {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	log, closeLog := newLogger(conf, p.stderr)
	log = log.With("op", verb)
	if args.ContainerID != "" {
		log = log.With("container_id", args.ContainerID, "ifname", args.IfName, "netns", args.Netns)
	}
	agent := newAgentClient(conf.Socket)
	return &session{conf: conf, log: log, agent: agent, close: func() {
		agent.Close()
		closeLog()
	}}, nil
}

// newLogger logs to the config's logFile, or to stderr when there is none or
// it cannot be opened; stdout belongs to the CNI protocol.
func newLogger(c *config, stderr io.Writer) (*slog.Logger, func()) {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFile == "" {
		return slog.New(slog.NewTextHandler(stderr, opts)), func() {}
	}
	f, err := os.OpenFile(c.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		log := slog.New(slog.NewTextHandler(stderr, opts))
		log.Warn("log file unusable, logging to stderr", "err", err)
		return log, func() {}
	}
	return slog.New(slog.NewTextHandler(f, opts)), func() {
		_ = f.Close() // nothing useful to do with a close error of a log file
	}
}

func (p *plugin) cmdAdd(args *skel.CmdArgs) (err error) {
	st := newSteps()
	s, err := p.start("add", args)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	defer func() { logDone(s.log, start, err, st) }()

	pod, err := podInfo(s.conf, args.Args, args.ContainerID)
	if err != nil {
		return err
	}
	prev, err := prevResult(s.conf)
	if err != nil {
		return err
	}
	dp, err := p.newDataplane(s.log)
	if err != nil {
		return types.NewError(types.ErrInternal, "open dataplane", err.Error())
	}
	owner := api.Owner{ContainerID: args.ContainerID, IfName: args.IfName}
	hostIface := api.HostIfaceName(owner)
	switch err := dp.Preflight(args.Netns, hostIface); {
	case errors.Is(err, errHostIfaceExists):
		return types.NewError(errCodeAttachmentExists,
			fmt.Sprintf("attachment %s exists: host veth %s is present", owner, hostIface),
			"two ADDs for the same container id and ifname without a DEL")
	case errors.Is(err, errNetns):
		return types.NewError(types.ErrInvalidNetNS, "netns "+args.Netns+" unusable", err.Error())
	case err != nil:
		return types.NewError(types.ErrInternal, "preflight", err.Error())
	}
	st.done("start_preflight")

	ctx, cancel := context.WithTimeout(context.Background(), s.conf.Timeout)
	defer cancel()
	alloc, err := s.agent.Allocate(ctx, api.AllocateRequest{Owner: owner, Network: s.conf.Name, Pod: pod})
	if err != nil {
		return err
	}
	st.done("allocate")
	s.log.Debug("allocated", "ips", alloc.IPs, "existing", alloc.Existing)
	created := false
	defer func() {
		if err != nil {
			rollback(ctx, s, dp, owner, created)
		}
	}()

	w, err := planWiring(owner, args.Netns, alloc)
	if err != nil {
		return types.NewError(types.ErrInternal, "unusable allocation from skeind", err.Error())
	}
	created = true // Plumb may fail half-way; the host veth name is ours either way
	pl, err := dp.Plumb(w, args.IfName)
	if err != nil {
		return types.NewError(types.ErrInternal, "plumb "+args.IfName, err.Error())
	}
	st.done("plumb")
	err = s.agent.Commit(ctx, api.CommitRequest{
		Owner: owner, Network: s.conf.Name, Pod: pod, IPs: w.IPs, HostIface: w.HostIface, Netns: args.Netns,
	})
	if err != nil {
		return err
	}
	st.done("commit")
	err = printResult(p.stdout, buildResult(w, args.IfName, pl, prev), s.conf.CNIVersion)
	st.done("result")
	return err
}

// rollback undoes a failed ADD after allocation: remove the veth (this also
// takes the container side and the host route) and release the addresses.
// Errors are logged, the ADD's own error is what the runtime sees; the DEL
// the runtime sends after a failed ADD retries anything left.
func rollback(ctx context.Context, s *session, dp dataplane, owner api.Owner, created bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if created {
		// Only the host side: a container interface of that name may
		// predate this ADD (the reason it failed) and is not ours.
		if err := dp.Unplumb("", owner); err != nil {
			s.log.Error("rollback: remove veth", "ifname", api.HostIfaceName(owner), "err", err)
		}
	}
	if _, err := s.agent.Release(ctx, s.conf.Name, owner); err != nil {
		s.log.Error("rollback: release", "err", err)
	}
}

func (p *plugin) cmdDel(args *skel.CmdArgs) (err error) {
	st := newSteps()
	s, err := p.start("del", args)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	defer func() { logDone(s.log, start, err, st) }()

	owner := api.Owner{ContainerID: args.ContainerID, IfName: args.IfName}
	hostIface := api.HostIfaceName(owner)
	ctx, cancel := context.WithTimeout(context.Background(), s.conf.Timeout)
	defer cancel()
	// The host veth is named by container id and ifname only: when another
	// network holds this attachment, it is that network's veth. (Without an
	// answer, DEL goes on as before: it must not fail forever.)
	if held, err := s.agent.Check(ctx, s.conf.Name, owner); err == nil && held.HeldBy != "" && held.HeldBy != s.conf.Name {
		s.log.Warn("DEL for an attachment of another network: nothing removed", "network", s.conf.Name, "held_by", held.HeldBy)
		return nil
	}
	st.done("start_check")
	// Links first, so the addresses are never free while still plumbed.
	var linkErr error
	dp, err := p.newDataplane(s.log)
	if err == nil {
		err = dp.Unplumb(args.Netns, owner)
	}
	if err != nil {
		linkErr = fmt.Errorf("remove veth %s: %w", hostIface, err)
	}
	st.done("unplumb")
	_, relErr := s.agent.Release(ctx, s.conf.Name, owner)
	st.done("release")
	switch {
	case relErr != nil && linkErr != nil:
		te := asTypesError(relErr)
		te.Details = joinDetails(te.Details, linkErr.Error())
		return te
	case relErr != nil:
		return relErr
	case linkErr != nil:
		return types.NewError(types.ErrInternal, "delete attachment "+owner.String(), linkErr.Error())
	}
	return nil
}

func (p *plugin) cmdCheck(args *skel.CmdArgs) (err error) {
	s, err := p.start("check", args)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	defer func() { logDone(s.log, start, err) }()

	prev, err := prevResult(s.conf)
	if err != nil {
		return err
	}
	if prev == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult", "the config carries no prevResult")
	}
	owner := api.Owner{ContainerID: args.ContainerID, IfName: args.IfName}
	w, err := wiringFromResult(owner, args.Netns, prev)
	if err != nil {
		return types.NewError(errCodeCheckFailed, "attachment "+owner.String()+" broken", err.Error())
	}
	dp, err := p.newDataplane(s.log)
	if err != nil {
		return types.NewError(types.ErrInternal, "open dataplane", err.Error())
	}
	have, err := dp.Observe(args.Netns, args.IfName, w.HostIface)
	if err != nil {
		return types.NewError(errCodeCheckFailed, "attachment "+owner.String()+" broken", err.Error())
	}
	problems := checkWiring(w, args.IfName, have)

	ctx, cancel := context.WithTimeout(context.Background(), s.conf.Timeout)
	defer cancel()
	held, err := s.agent.Check(ctx, s.conf.Name, owner)
	if err != nil {
		return err
	}
	if held.HeldBy != "" {
		problems = append(problems, fmt.Sprintf("attachment %s belongs to network %q, not %q", owner, held.HeldBy, s.conf.Name))
	}
	for _, ip := range w.IPs {
		if !containsAddr(held.IPs, ip) {
			problems = append(problems, fmt.Sprintf("skeind does not hold %s for %s", ip, owner))
		}
	}
	if !held.Published {
		s.log.Warn("endpoint not published by skeind")
	}
	if len(problems) > 0 {
		return types.NewError(errCodeCheckFailed, "attachment "+owner.String()+" broken", joinDetails(problems...))
	}
	return nil
}

func (p *plugin) cmdGC(args *skel.CmdArgs) (err error) {
	s, err := p.start("gc", args)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	defer func() { logDone(s.log, start, err) }()

	if !s.conf.ValidSet {
		// libcni sends no list when its caller gave none (cnitool gc), after
		// it has DELeted the attachments it cached itself. Other runtimes'
		// pods on this node are not in that cache: freeing "everything not
		// listed" would cut them all off, so without a list GC frees nothing.
		s.log.Warn("gc without cni.dev/valid-attachments: nothing to compare with, nothing freed")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.conf.Timeout)
	defer cancel()
	resp, err := s.agent.GC(ctx, s.conf.Name, sortedOwners(s.conf.Valid))
	if err != nil {
		return err
	}
	dp, err := p.newDataplane(s.log)
	if err != nil {
		return types.NewError(types.ErrInternal, "open dataplane", err.Error())
	}
	var errs []error
	for _, o := range resp.Freed {
		name := api.HostIfaceName(o)
		if err := dp.Unplumb("", o); err != nil {
			errs = append(errs, fmt.Errorf("remove veth %s of %s: %w", name, o, err))
			continue
		}
		s.log.Info("freed stale attachment", "container_id", o.ContainerID, "ifname", o.IfName)
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "gc", err.Error())
	}
	return nil
}

func (p *plugin) cmdStatus(args *skel.CmdArgs) (err error) {
	s, err := p.start("status", args)
	if err != nil {
		return err
	}
	defer s.close()

	ctx, cancel := context.WithTimeout(context.Background(), s.conf.Timeout)
	defer cancel()
	st, err := s.agent.Status(ctx)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "skeind not available", asTypesError(err).Error())
	}
	if !st.Ready {
		reason := st.Reason
		if reason == "" {
			reason = "not ready"
		}
		return types.NewError(types.ErrPluginNotAvailable, "skeind on node "+st.Node+" not ready", reason)
	}
	return nil
}

// logDone logs the outcome of a command. A failure is both returned and
// logged, against the usual rule: the runtime that receives the error is
// another process, and the log file is the plugin's only record of it.
// st, when not nil, adds the time each step took.
func logDone(log *slog.Logger, start time.Time, err error, st ...*steps) {
	args := []any{"dur", time.Since(start)}
	for _, s := range st {
		args = append(args, s.attr())
	}
	if err != nil {
		log.Info("failed", append(args, "err", err)...)
		return
	}
	log.Debug("done", args...)
}

// asTypesError returns err as a CNI error, wrapping anything else as internal.
func asTypesError(err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b.Unmap() == a {
			return true
		}
	}
	return false
}

// joinDetails joins non-empty parts with "; ".
func joinDetails(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += p
	}
	return out
}
