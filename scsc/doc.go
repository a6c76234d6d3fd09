// Package scsc is DMSC's Service Mesh Communication Scheduling Center
// (DESIGN §7, docs/telemetry.md): a gNMI client of every agent that is never
// in the forwarding path. It
//
//   - subscribes to every agent (SAMPLE of /dmsc/probes, /dmsc/neighbors and
//     /interfaces; ON_CHANGE of /dmsc/lsdb at a few agents, since any
//     agent's LSDB is the domain's), reconnecting with backoff; the data of
//     an agent not heard for stale_after is dropped;
//   - learns the live topology from the LSDB (nodes, two-way adjacencies,
//     who announces which service prefix and instance key);
//   - evaluates the draft's conditions per (ingress SG, service) on the SG's
//     probes, with hysteresis, and runs a QoS-weighted Dijkstra (delay,
//     jitter, loss, utilisation; links short of the service's bandwidth
//     excluded) to find a better path than SPF's;
//   - drains instances that probes show violating while others do not;
//   - pushes the policies by gNMI Set, last node of a path first, renews
//     them at a third of their TTL, deletes them first node first, and rolls
//     a path back when one node refuses it.
//
// Decider holds the decision logic, pure and table-tested; Center is the
// event loop that owns the connections, the state and the Sets. Leader
// abstracts the election among replicas (SingleReplica by default).
package scsc
