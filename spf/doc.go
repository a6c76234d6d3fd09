// Package spf is the link-state core of the DMSC control plane: the link-state
// database (LSDB) of LSP fragments and the route computation (SPF with ECMP,
// partial route calculation) that turns it into a table of service prefixes →
// next hops.
//
// The package is pure in the manner of etcd's raft: it does no I/O, reads no
// clock, starts no goroutine and logs nothing. The controller agent owns one
// [LSDB] and one [RIB], feeds the LSDB the LSP fragments it receives or
// originates together with the current time as a value, and acts on what the
// calls return: a [Result] says whether to flood, acknowledge or answer with our
// own copy; [LSDB.Expire] returns the purges and refreshes to flood; [RIB.Update]
// returns the route [Diff] to program into the FIB. Nothing here is safe for
// concurrent use; the agent's single event loop serialises the calls.
//
// # What is where
//
//   - [LSDB]: the newest copy of every (origin, fragment), with the IS-IS
//     rules for newer, same and older copies, ageing, purges kept for
//     ZeroAgeLifetime, Self's own fragments (origination, refresh, and
//     re-origination above the copies a restart left in the network),
//     summaries and their comparison for database sync, and a record of what
//     changed since the last [LSDB.TakeChanges]: topology, or only the
//     prefixes of some origins.
//   - [RIB]: the routes of one root. [RIB.Full] runs Dijkstra with the
//     two-way check and ECMP first-hop sets, then computes every prefix;
//     [RIB.Incremental] recomputes only the changed prefixes on the previous
//     tree (partial route calculation), at a cost independent of the size of
//     the fabric; [RIB.Update] picks between them and says which it did.
//     Each computation returns the [Diff] to program.
//
// A node takes part in SPF only while its fragment 0 is live; its
// adjacencies and prefixes are the union of its fragments. A prefix
// announced by several origins (an anycast service) is routed to those at
// the least distance + prefix metric, over the union of their first hops; the
// root's own announcement wins at equal cost (Route.Local).
//
// # Time
//
// Every method that needs the time takes now as a [time.Duration] since an
// origin of the caller's choosing (for example the agent's start, read from a
// monotonic clock). now must not go backwards. Remaining lifetimes are whole
// seconds, as in IS-IS.
//
// # Sequence numbers
//
// Seq is a uint32, compared as a plain integer (not RFC 1982 serial
// arithmetic, which has no total order). 0 is invalid; an origin starts at 1
// and adds 1 per origination. Refreshing every 15 minutes, and even
// re-originating once a second, 2^32 lasts more than a century, so wrap is
// handled only as in ISO 10589 §7.3.16.1: when an origin would pass
// 0xFFFFFFFF, [LSDB.Originate] returns [ErrSeqExhausted]; the agent must purge
// the fragment and stay silent for LSPLifetime+ZeroAgeLifetime before starting
// again at 1.
//
// # Ordering of two copies of one fragment
//
// Higher Seq is newer. At equal Seq a purge is newer than content (so that a
// purge by a node where the fragment expired wins over the copies still held
// elsewhere), and between two contents the one with the higher content hash
// wins, as OSPF breaks ties on its checksum (RFC 2328 §13.1): every node
// picks the same copy, and the origin, seeing a copy of its own fragment that
// beats the one it holds, re-originates above it.
package spf
