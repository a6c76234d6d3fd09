package scsc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

// errNotConnected is the failure of a Set to an agent SCSC has no
// connection to.
var errNotConnected = errors.New("not connected")

// runPush carries out one job (docs/telemetry.md): a set goes to the
// policy's nodes from the last to the first, so that no node steers traffic
// to a neighbour without the policy; if one Set fails, the policy is
// deleted again from every node that may hold it, from the first to the
// last, so that no node is left steering into a node that lost it.
// A delete goes from the first node to the last for the same reason.
func (c *Center) runPush(ctx context.Context, j *pushJob) *pushResult {
	r := &pushResult{job: j}
	defer func() { r.finished = time.Now() }()
	path := gnmi.PolicyConfigPath(j.id)
	del := func(nodes []string) (done []string, err error) {
		for _, n := range nodes {
			cl := j.clients[n]
			if cl == nil {
				err = errors.Join(err, fmt.Errorf("%s: %w", n, errNotConnected))
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, c.setTimeout)
			_, e := cl.Set(sctx, gnmi.DeleteOp(path))
			cancel()
			if e != nil {
				err = errors.Join(err, fmt.Errorf("%s: %w", n, e))
				continue
			}
			done = append(done, n)
		}
		return done, err
	}
	firstToLast := func(setOrder []string) []string {
		out := slices.Clone(setOrder)
		slices.Reverse(out)
		return out
	}
	if j.policy == nil {
		r.setOrder, r.err = del(firstToLast(j.prev))
		r.ok = r.err == nil
		return r
	}
	order := j.policy.Nodes()
	for _, n := range order {
		cl := j.clients[n]
		var err error
		if cl == nil {
			err = errNotConnected
		} else {
			sctx, cancel := context.WithTimeout(ctx, c.setTimeout)
			_, err = cl.Set(sctx, gnmi.ReplaceOp(path, gnmi.JSON(j.doc)))
			cancel()
		}
		if err != nil {
			r.err, r.failedAt = err, n
			// Roll back: every node set in this job, and every node of the
			// version before, first to last.
			back := firstToLast(r.setOrder)
			for _, p := range firstToLast(j.prev) {
				if !slices.Contains(back, p) {
					back = append(back, p)
				}
			}
			r.rolledBack, _ = del(back)
			return r
		}
		r.setOrder = append(r.setOrder, n)
	}
	// Nodes of the previous version that are not on the new one lose it,
	// now that the new one is in force.
	var stale []string
	for _, p := range firstToLast(j.prev) {
		if !slices.Contains(order, p) {
			stale = append(stale, p)
		}
	}
	if len(stale) > 0 {
		if _, err := del(stale); err != nil {
			c.log.Warn("scsc: old nodes of a policy kept it; it expires there at its ttl", "policy", j.id, "err", err)
		}
	}
	r.ok = true
	return r
}
