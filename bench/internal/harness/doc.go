// Package harness is what the fabric-level benchmarks (bench/converge,
// bench/register, bench/memory) share: the routes SPF should give every node
// of a topology (an independent model, computed with package spf from the
// topology file, not from the agents), fabric start-up and convergence
// checks over the agents' snapshots and over P4Runtime read-backs,
// percentiles, CPU accounting, an emulated fabric neighbour that floods LSPs
// into an agent, and pods that register by hand, frame by frame.
package harness
