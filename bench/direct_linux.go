package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// directLabName is the BGP phase's third lab: VXLAN with direct routing on
// one underlay subnet, so that every path between its hosts is a plain
// routed one (issue 14, item 3). It is measured in the same rounds as the
// hand-built routed pair it should match.
const directLabName = nsPrefix + "dr"

// directPath brings up the direct-routing lab and returns its container
// pair as a data-plane path against the hand-built routed pair. It checks
// that the kernel really routes the pair without the VXLAN device, so the
// row cannot silently measure the overlay.
func (b *bench) directPath(ctx context.Context) (dpPath, error) {
	b.log.Info("direct-routing lab up", "name", directLabName)
	l, err := lab.Up(ctx, lab.Config{
		Name:               directLabName,
		Hosts:              2,
		ContainersPerHost:  1,
		Backend:            string(api.BackendVXLAN),
		VXLANDirectRouting: true,
		BinDir:             b.cfg.bin,
		RunDir:             filepath.Join(runDir, directLabName),
		Log:                b.log,
	})
	if err != nil {
		return dpPath{}, fmt.Errorf("direct-routing lab: %w", err)
	}
	ctrs := l.Containers()
	if len(ctrs) < 2 || ctrs[0].Host == ctrs[1].Host {
		return dpPath{}, fmt.Errorf("direct-routing lab needs one container on each of two hosts")
	}
	c, s := ctrs[0], ctrs[1]
	if err := l.Ping(ctx, c.Name, s.IP); err != nil {
		return dpPath{}, fmt.Errorf("direct-routing lab: no path %s → %s: %w", c.Name, s.IP, err)
	}
	out, err := ipnOut(ctx, c.Host, "route", "get", s.IP.String())
	if err != nil {
		return dpPath{}, fmt.Errorf("direct-routing lab: route to %s on %s: %w", s.IP, c.Host, err)
	}
	if strings.Contains(out, "dev "+api.VXLANDevice+" ") {
		return dpPath{}, fmt.Errorf("direct-routing lab: %s routes %s over the overlay, not directly: %s", c.Host, s.IP, strings.TrimSpace(out))
	}
	return dpPath{key: pathSkeinDirect, name: "Skein VXLAN with direct routing, same underlay subnet (lab, container → container across hosts)",
		base: pathRouted, client: endpoint{c.Name, c.IP}, server: endpoint{s.Name, s.IP}}, nil
}
