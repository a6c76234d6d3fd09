// Package gnmi is DMSC's gNMI (DESIGN §6–7): a target that every agent
// serves over a datastore it fills, the names of DMSC's tree (paths.go), and
// the client that SCSC and `dmsc show` use.
//
// The target side:
//
//	t, _ := gnmi.NewTarget(gnmi.TargetOptions{Name: "sg1", Setter: agent, TLS: tlsConf,
//		Authorize: func(ctx context.Context, rpc string) error { ... }})
//	go t.Serve(lis)
//	t.Update(time.Now(), gnmi.Leaf{Path: gnmi.InterfaceCounterPath(1, gnmi.InPkts), Value: uint64(n)})
//	t.Delete(time.Now(), gnmi.ProbePath("/shop/cart", 7))
//	defer t.Close()
//
// The agent publishes; the target answers Get, runs subscriptions (ONCE,
// POLL, STREAM with ON_CHANGE, SAMPLE with suppress_redundant and heartbeat,
// TARGET_DEFINED served as ON_CHANGE) and hands each SetRequest, validated,
// to the Setter as one transaction.
//
// Duplicates are suppressed at the source: Update compares each value with
// the stored one and only a change is an ON_CHANGE event, so an agent may
// re-publish all of its counters every period without flooding on-change
// subscribers; the new timestamp is still kept for SAMPLE and Get.
//
// The datastore and subscription engine are this package's own rather than
// openconfig/gnmi's cache and subscribe packages: those flatten keys into
// positional path elements (so a list element without keys, or "..." inside
// a path, does not match), refuse an update whose timestamp is not newer,
// require a target name in every request, and implement neither SAMPLE,
// heartbeats nor suppress_redundant. The proto package is openconfig/gnmi's.
package gnmi
