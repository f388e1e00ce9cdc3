package main

import "testing"

func TestParsePingStats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		out        string
		sent, recv int
		ok         bool
	}{
		{"--- 10.244.1.2 ping statistics ---\n600 packets transmitted, 600 received, 0% packet loss, time 14001ms\n", 600, 600, true},
		{"600 packets transmitted, 597 received, 0.5% packet loss, time 14001ms", 600, 597, true},
		{"ping: connect: Network is unreachable", 0, 0, false},
	}
	for _, tc := range tests {
		s, r, ok := parsePingStats(tc.out)
		if s != tc.sent || r != tc.recv || ok != tc.ok {
			t.Errorf("parsePingStats(%q) = %d, %d, %v; want %d, %d, %v", tc.out, s, r, ok, tc.sent, tc.recv, tc.ok)
		}
	}
}
