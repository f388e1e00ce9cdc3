package api

import (
	"net/netip"
	"strings"
)

// DefaultPrefix is the etcd key prefix under which Skein keeps everything.
const DefaultPrefix = "/skein/"

// BlockKeyName turns a block CIDR into its key segment: "/" becomes "-".
func BlockKeyName(p netip.Prefix) string {
	return strings.ReplaceAll(p.String(), "/", "-")
}

// ParseBlockKeyName reverses BlockKeyName.
func ParseBlockKeyName(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.ParsePrefix(s)
	}
	return netip.ParsePrefix(s[:i] + "/" + s[i+1:])
}
