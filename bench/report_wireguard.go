package main

import (
	"fmt"
	"strings"
)

// wireguard renders the WireGuard phase: throughput and CPU per Gbit/s,
// plain VXLAN against encrypted, medians of the interleaved rounds.
func (r *Report) wireguard(b *strings.Builder) {
	w := r.WireGuard
	if w == nil {
		return
	}
	fmt.Fprintf(b, "## 12. Encryption: WireGuard vs plain VXLAN (issue 14)\n\n")
	fmt.Fprintf(b, "Two 2-host labs of the phase's own, one plain VXLAN and one `--encryption wireguard` (device: %s),\n", orUnknown(w.Device))
	fmt.Fprintf(b, "iperf3 (%d s) between the containers of the two hosts, %d interleaved rounds (medians). CPU is\n", r.Settings.IperfSeconds, w.Rounds)
	fmt.Fprintf(b, "read around each run: the two agents' utime+stime (wireguard-go encrypts inside skeind) and the whole\n")
	fmt.Fprintf(b, "machine's busy time (kernel included, and anything else running: see the load average above).\n\n")
	fmt.Fprintf(b, "| path | TCP Gbit/s | retransmits | agents, cores | machine, cores | machine cores per Gbit/s |\n|---|---|---|---|---|---|\n")
	row := func(name string, p WGPath) float64 {
		g := median(p.Gbps)
		per := "-"
		mc := median(p.MachineCores)
		if g > 0 {
			per = fmt.Sprintf("%.2f", mc/g)
		}
		retr := make([]float64, len(p.Retrans))
		for i, x := range p.Retrans {
			retr[i] = float64(x)
		}
		fmt.Fprintf(b, "| %s | %.2f | %.0f | %.2f | %.2f | %s |\n", name, g, median(retr), median(p.AgentCores), mc, per)
		return g
	}
	plain := row("VXLAN, plain", w.Plain)
	enc := row("WireGuard ("+orUnknown(w.Device)+")", w.Encrypted)
	if plain > 0 {
		fmt.Fprintf(b, "\nEncrypted throughput is %.2f × plain.\n", enc/plain)
	}
	b.WriteString("\n")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
