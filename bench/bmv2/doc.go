// Package bmv2 benchmarks one forwarding hop on BMv2 (simple_switch_grpc)
// and on the Go software switch under the same conditions, beside the
// rig's own ceiling, a bare veth pair (issue 7):
//
//	go test -run '^$' -bench . -benchtime 2s ./bench/bmv2
//
// It needs root (network namespaces, veth pairs, AF_PACKET), ip(8), the go
// tool (to build dmsc) and, for the BMv2 path, simple_switch_grpc (on PATH or
// in /opt/p4/bin); TestSmoke runs each path for a moment and skips with one
// line when one of them is missing.
//
// Each path is one switch in a network namespace of its own, with two data
// ports on veth pairs whose other ends are in the root namespace:
//
//	sender ─ AF_PACKET ─ veth ═ port 1 ┐ switch ┌ port 2 ═ veth ─ AF_PACKET ─ receiver
//
// Both switches read and write their ports over AF_PACKET (BMv2 through
// libpcap, the Go switch through recvmmsg/sendmmsg) and run as processes of
// their own: BMv2 as simple_switch_grpc --log-level off, the Go switch as
// dmsc softswitch, built from this tree into a temporary directory. Both are
// programmed identically through the project's P4Runtime client: the DMSC
// pipeline (with p4/build/dmsc.json as BMv2's device config), ports 1 and 2
// FABRIC, and one fib_64 route whose next-hop group has one member,
// set_nexthop(port 2), written by controller/fib. The sender writes DMSC
// DATA frames (wire.AppendFrame; 64 or 1400 bytes of payload) into port 1,
// 32 per sendmmsg; the receiver counts the frames that come out of port 2
// with the route's destination MAC. Two peers run in the same benchmark:
// veth-direct, the same sender and receiver on the two ends of one veth
// pair without a switch (the rig's ceiling), and relay, a do-nothing hop
// with the software switch's I/O (AF_PACKET, recvmmsg of 64 → sendmmsg,
// destination MAC rewritten) in a process of its own (the ceiling of any
// user-space hop on this rig).
//
// For each path and payload the benchmark
//
//   - blasts frames open loop for a second (blast-pps: received per second,
//     blast-loss%);
//   - if that lost 1 % or more, searches the highest paced rate that loses
//     less than 1 % (BMv2 drops silently once its 64-frame egress queue
//     overflows, so blasting only measures its overload);
//   - sends b.N frames at 95 % of that rate (unpaced if the blast lost
//     < 1 %; the margin because near capacity a hop on this rig is bistable:
//     a rate that passed one 2 s trial may lose several percent in the
//     next): pps is what arrived per second, offered-pps what was sent,
//     loss% the share lost; ns/op is per frame offered;
//   - sends a 1,000 frames/s stream carrying send timestamps and reports the
//     one-way latency (same host, same monotonic clock) at p50 and p99.
//
// To say what limited a figure, the timed run also reports CPU use in
// percent of one CPU: switch-cpu% (the switch process, all threads),
// thread-cpu% (its busiest thread), rig-cpu% (this process: sender and
// receiver), and machine-cpu% (busy share of all CPUs, softirqs included);
// background-cpu% is how busy the machine was before the probe, while the
// path was idle (the probe waits up to a minute for that to fall under
// 10 %). DMSC_BENCH_SENDERS=n offers frames from n senders instead of one;
// DMSC_BENCH_BMV2_LOG_LEVEL=trace runs BMv2 at its default log level.
package bmv2
