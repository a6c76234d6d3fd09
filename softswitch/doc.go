// Package softswitch is the Go implementation of the DMSC P4 pipeline
// (p4/dmsc.p4): the fallback target wherever no P4 switch is present,
// embedded in-process for the demo and the tests, or run standalone behind
// the P4Runtime server (p4rt/server), which drives it through server.Target
// exactly as it would drive BMv2. It implements dmsc.p4's ingress and egress
// step for step, with the same tables, actions, counters and controller
// headers, all mapped by name from the P4Info the controller pushes.
//
// # Using it
//
//	sw := softswitch.New(softswitch.Config{Logger: log})
//	// p4rt/server calls CommitPipeline, Apply, PacketOut, … on sw.
//	spec, err := softswitch.ParsePortSpec("1=udp:127.0.0.1:7001,127.0.0.1:7002")
//	port, err := spec.Open()
//	err = sw.AddPort(spec.Num, port)
//	im, err := softswitch.ParseImpairment("delay=5ms,loss=0.01")
//	err = sw.SetImpairment(spec.Num, im)
//	err = sw.Run(ctx) // until ctx ends
//	sw.Close()
//
// # Data plane
//
// Each port has a receive loop that reads a batch of frames (recvmmsg on UDP
// tunnels and AF_PACKET sockets), loads the forwarding snapshot once, runs
// every frame of the batch through the pipeline, and hands the results to
// the egress ports in per-port batches (sendmmsg). Frames are rewritten in
// place in the receive buffers and counters are added once per batch where
// the P4 program allows it (port_rx, port_tx): forwarding allocates nothing
// per frame. Punted frames are copied and handed to the packet-in sink by a
// goroutine of their own, so a slow controller never stalls forwarding.
// Impaired ports (delay, jitter, loss, rate) copy frames into a FIFO served
// by one goroutine per port; unimpaired ports are written synchronously.
//
// # Tables
//
// All forwarding state (port_role, src_guard, the four FIB tables, the two
// selector tables, the action profiles) lives in one immutable snapshot
// behind an atomic pointer. The data plane never locks. Apply stages a whole
// P4Runtime batch into copy-on-write tables and publishes the next snapshot
// with one atomic store, so every frame sees either none or all of a batch:
// an atomic write is atomic for the data plane too.
//
// A table is a large immutable base map plus a small immutable delta map of
// the changes since the base was built, with tombstones for deletions (see
// cowMap). A batch copies the delta, not the table, and folds the delta into
// a new base once it outgrows sqrt(2·n·k) (n entries, k written per batch),
// which balances the per-batch copy against the amortized fold. Copying a
// 100k-entry map costs about 4 ms, so a copy per batch of 1000 would cap
// writes near 250k updates/s before any decoding, falling as the table
// grows; the delta keeps BenchmarkApply1000 (100k routes) several times
// above that. A lookup probes the delta (skipped while it is empty) and then
// the base. port_role (512 ports) is a flat array copied whole.
//
// Selector tables resolve their group or member into a selection (members
// sorted by id, cumulative weights) when written, so the data plane does one
// lookup per selector table. Modifying a member or a group re-resolves the
// entries that use it. Direct counters are cells shared by an entry's
// successive versions (a MODIFY keeps its count, as on BMv2) and updated
// with atomic adds.
//
// # Differences from BMv2
//
//   - Action selectors pick member hash % (sum of weights) over the group's
//     members sorted by member id, each repeated weight times, with CRC-32
//     (IEEE) over flow_label | src_key | dst_key (dst_key before the instance
//     rewrite). BMv2's member order and hash details may differ, so a flow
//     may take another, equally valid, member; the differential test reports
//     it.
//   - Probe timestamps (t_rx, t_reply) are wall-clock Unix nanoseconds.
//     BMv2 writes its ingress timestamp, microseconds since the switch
//     started, times 1000.
//   - Drop reasons 12–14 exist only here: a frame for a port that is missing
//     or down (PortDown), lost by a port's impairment (Impairment) or
//     finding its impairment queue full (QueueFull). BMv2 runs the egress
//     pipeline for a frame to a missing or down port, counting port_tx, and
//     then loses it silently; the software switch counts port_tx too and
//     then the drop reason. A frame to port 511, v1model's drop port, is
//     dropped at the end of ingress without port_tx on both, and counted as
//     PortDown here. These drops count the frame's length in bytes.
//   - A selector group left without members by a MODIFY is a miss:
//     NoNexthop.
//   - A frame sent to the CPU port by set_nexthop or a direct packet-out,
//     without a packet_in header, reaches the controller the way BMv2's
//     P4Runtime server delivers it: its first four bytes read as
//     ingress_port and reason.
//   - The device config (BMv2 JSON) is accepted and ignored: the pipeline is
//     built in. The P4Info must name everything the pipeline needs, with the
//     widths it uses; ids come from it, never from constants.
//   - Weight 0 in a group member means 1 (proto3's unset value); negative
//     weights are refused.
package softswitch
