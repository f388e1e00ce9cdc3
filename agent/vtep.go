package agent

import (
	"crypto/sha256"

	"github.com/skeinnet/skein/api"
)

// vtepMAC derives the node's VTEP MAC from its name, so it survives reboots
// and reinstalls without being stored: a locally administered unicast address.
func vtepMAC(node string) api.MAC {
	sum := sha256.Sum256([]byte("skein-vtep\x00" + node))
	mac := make(api.MAC, 6)
	copy(mac, sum[:6])
	mac[0] = (mac[0] &^ 0x01) | 0x02
	return mac
}
