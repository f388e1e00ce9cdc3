package policy

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Kinds of objects a foreign nftables change can touch.
const (
	DriftTable   = "table"
	DriftChain   = "chain"
	DriftRule    = "rule"
	DriftSet     = "set"
	DriftElement = "element"
)

// WatchTable follows nftables changes in the network namespace netnsFD (0:
// the caller's) and calls fn with the kinds of objects each foreign batch
// touched in table inet skein. A batch is foreign when another process
// committed it: the kernel names the committing thread in the batch's
// generation message, so this process's own applies never count. It returns
// nil when ctx is done, or the error that broke the subscription (the caller
// restarts it and rebuilds: changes may have been missed).
func WatchTable(ctx context.Context, netnsFD int, fn func(kinds []string)) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return fmt.Errorf("watch nftables: dial: %w", err)
	}
	defer func() { _ = c.Close() }() // a subscription: nothing to flush
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("watch nftables: join group: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() }) // unblocks Receive
	defer stop()
	var touched []string // kinds the current batch touched in our table
	for {
		msgs, err := c.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch nftables: %w", err)
		}
		for _, m := range msgs {
			kind, table, pid, gen := parseNFTMessage(m)
			switch {
			case gen:
				if len(touched) > 0 && !ownThread(pid) {
					fn(touched)
				}
				touched = nil
			case kind != "" && table == TableName && !slices.Contains(touched, kind):
				touched = append(touched, kind)
			}
		}
	}
}

// ownThread reports whether id is a thread of this process: the kernel names
// the thread that committed a batch (task_pid_nr), and Go applies from any
// of its threads.
func ownThread(id uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", id))
	return err == nil
}

// parseNFTMessage reads what a multicast nftables message is about: the
// kind of object and its table (inet family only), or, for the generation
// message that ends a batch, the committing process.
func parseNFTMessage(m netlink.Message) (kind, table string, pid uint32, gen bool) {
	t := uint16(m.Header.Type)
	if t>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 {
		return "", "", 0, false
	}
	family := m.Data[0]
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return "", "", 0, false
	}
	ad.ByteOrder = binary.BigEndian
	switch t & 0xff {
	case unix.NFT_MSG_NEWGEN:
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_PROC_PID {
				pid = ad.Uint32()
			}
		}
		return "", "", pid, true
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
		kind = DriftTable
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
		kind = DriftChain
	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE:
		kind = DriftRule
	case unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET:
		kind = DriftSet
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		kind = DriftElement
	default:
		return "", "", 0, false
	}
	if family != unix.NFPROTO_INET {
		return "", "", 0, false
	}
	// Every one of these messages names its table in attribute 1
	// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
	// NFTA_SET_ELEM_LIST_TABLE).
	for ad.Next() {
		if ad.Type() == 1 {
			table = ad.String()
		}
	}
	if ad.Err() != nil {
		return "", "", 0, false
	}
	return kind, table, 0, false
}
