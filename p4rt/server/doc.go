// Package server is the P4Runtime v1.4 service (p4.v1.P4Runtime) of a DMSC
// switch, in front of a Target (the Go software switch, or a test double).
//
// The server owns the control-plane view of the device. It arbitrates
// controllers per (device, role), validates every Write against the P4Info,
// keeps the installed table entries, action profile members and groups in
// canonical form (for Read and for ALREADY_EXISTS / NOT_FOUND), and hands the
// Target only changes that are valid, one Target.Apply per Write batch.
//
// What a Target can rely on:
//
//   - Change entities carry canonical byte strings (P4Runtime spec, "Bytestrings"), match
//     fields sorted by field id, action parameters sorted by parameter id, and
//     no direct-counter data.
//   - Change entities are shared with the server's store and with Read
//     responses: the Target must treat them as read-only. It may keep them.
//   - A TableEntry Change with IsDefaultAction set is a MODIFY of a non-const
//     default entry; an unset action in it means "back to the program's
//     default action".
//   - PacketOut metadata has been checked against the packet_out controller
//     header and canonicalised.
//   - The packet-in sink never blocks: the server queues per stream and drops
//     (and counts) when no primary controller keeps up.
//
// Arbitration follows P4Runtime 1.1 and later: the primary of a role is the
// controller whose election id equals the highest one the server has seen for
// that role, so when a primary goes away the role has no primary until a
// controller advertises an election id at least that high. Options.LegacyFailover
// selects the pre-1.1 rule instead (the live controller with the next highest
// election id takes over at once).
//
// Batch errors follow the spec's format: UNKNOWN with one p4.v1.Error per
// update. With ROLLBACK_ON_ERROR and DATAPLANE_ATOMIC nothing is applied when
// anything fails; the updates that did not fail themselves report ABORTED.
// Using an action outside its scope (a default-only action in an entry, a
// table-only action as default) is PERMISSION_DENIED, as the spec says.
//
// Write requests are decoded by decodeWrite, which allocates the messages of
// a batch in a few arrays instead of one object per message. An installed
// entity therefore keeps its batch's arrays (and request bytes) alive until
// the last entity of that batch is deleted.
//
// Not implemented, with a clear status: one-shot action selector programming
// (UNIMPLEMENTED), writes of counter values (UNIMPLEMENTED; a zero
// counter_data on INSERT is accepted), watch ports, meters, registers,
// digests, value sets, externs and the packet replication engine
// (UNIMPLEMENTED when the P4Info declares them; wildcard reads of kinds the
// P4Info does not declare return nothing), idle timeouts, and role configs
// (role.config must be unset: every role has full pipeline access, so the
// role filter of a Read is ignored).
package server
