// Package nlretry repeats netlink dumps the kernel interrupted.
//
// A dump (link, address, route, neighbour list) is read in several messages;
// when the table changes in between, the kernel flags the dump and netlink
// returns the partial result with netlink.ErrDumpInterrupted. Acting on such a
// list would delete or re-add objects that are fine, so every dump in Skein
// goes through Dump, which reads again until it gets a consistent answer.
package nlretry
