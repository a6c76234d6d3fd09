package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// guardKey is one src_guard entry: a pod port and the instance key it may
// send from.
type guardKey struct {
	port uint16
	key  wire.Key
}

// writer programs the switch: it owns the FIB programmer and the port_role
// and src_guard entries, and runs in its own goroutine so that a slow Write
// never holds up HELLOs. The loop hands it changes; it coalesces them and
// writes the newest state, make-before-break, in batched Writes.
type writer struct {
	client *p4rt.Client
	schema *p4info.Schema
	log    *slog.Logger

	mu      sync.Mutex
	pending map[spf.Prefix]*fib.Route
	roles   map[uint16]int
	guards  map[guardKey]bool
	gen     uint64 // newest generation submitted
	holding bool   // warm restart: keep what the switch had
	wake    chan struct{}
	applied uint64 // generation on the switch
	// onApplied, if set, is told each generation the switch took (the
	// agent wakes its loop with it).
	onApplied func(gen uint64)
	writes    uint64
	lastWrite time.Time // when a Write last changed the switch
	failing   error     // the last write error, until a write succeeds

	// Owned by run.
	prog          *fib.Programmer
	desired       fib.Routes
	haveRoles     map[uint16]int
	haveGuards    map[guardKey]bool
	kept          fib.Routes // what the warm restart found
	needsReadBack bool
	// fullNext: the next sync plans the whole FIB (the first one, which
	// reconciles with what the switch holds).
	fullNext bool
}

// newWriter starts from what the switch holds (nothing after a pipeline
// push; the read-back after a warm restart).
func newWriter(c *p4rt.Client, s *p4info.Schema, found []*p4v1.Entity, log *slog.Logger) (*writer, error) {
	w := &writer{
		client:     c,
		schema:     s,
		log:        log,
		pending:    map[spf.Prefix]*fib.Route{},
		roles:      map[uint16]int{},
		guards:     map[guardKey]bool{},
		wake:       make(chan struct{}, 1),
		desired:    fib.Routes{},
		haveRoles:  map[uint16]int{},
		haveGuards: map[guardKey]bool{},
	}
	if err := w.adopt(found); err != nil {
		return nil, err
	}
	w.fullNext = true
	if len(found) > 0 {
		w.holding = true
		w.kept = w.prog.Routes()
	}
	return w, nil
}

// adopt rebuilds the writer's idea of the switch from a read-back.
func (w *writer) adopt(found []*p4v1.Entity) error {
	prog, err := fib.Recover(w.schema, found)
	if err != nil {
		return fmt.Errorf("reading the FIB back: %w", err)
	}
	w.prog = prog
	roleT, err := w.schema.Table(p4.TablePortRole)
	if err != nil {
		return err
	}
	guardT, err := w.schema.Table(p4.TableSrcGuard)
	if err != nil {
		return err
	}
	w.haveRoles, w.haveGuards = map[uint16]int{}, map[guardKey]bool{}
	for _, e := range found {
		te := e.GetTableEntry()
		if te == nil {
			continue
		}
		switch te.TableId {
		case roleT.Preamble.Id:
			if len(te.Match) == 1 && te.GetAction().GetAction() != nil && len(te.GetAction().GetAction().Params) == 1 {
				port := uint16(uintOf(te.Match[0].GetExact().GetValue()))
				w.haveRoles[port] = int(uintOf(te.GetAction().GetAction().Params[0].Value))
			}
		case guardT.Preamble.Id:
			var g guardKey
			for _, m := range te.Match {
				f, _ := guardT.FieldByID(m.FieldId)
				switch f.GetName() {
				case p4.FieldPort:
					g.port = uint16(uintOf(m.GetExact().GetValue()))
				case p4.FieldSrcKey:
					copy(g.key[:], p4info.Padded(m.GetExact().GetValue(), 128))
				}
			}
			w.haveGuards[g] = true
		}
	}
	return nil
}

func uintOf(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func (w *writer) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// submitRoutes queues FIB changes (nil: remove) and returns their
// generation: every submission counts one, and status reports the newest
// generation on the switch.
func (w *writer) submitRoutes(changes map[spf.Prefix]*fib.Route) uint64 {
	w.mu.Lock()
	maps.Copy(w.pending, changes)
	w.gen++
	gen := w.gen
	w.mu.Unlock()
	w.kick()
	return gen
}

// release ends a warm restart's hold: routes the switch kept that the agent
// does not want any more are removed.
func (w *writer) release() {
	w.mu.Lock()
	w.holding = false
	w.mu.Unlock()
	w.kick()
}

func (w *writer) setPortRoles(roles map[uint16]int) uint64 {
	w.mu.Lock()
	w.roles = maps.Clone(roles)
	w.gen++
	gen := w.gen
	w.mu.Unlock()
	w.kick()
	return gen
}

// setGuard allows (or stops allowing) a pod port to send from key, and
// returns the generation that carries it.
func (w *writer) setGuard(port uint16, key wire.Key, allow bool) uint64 {
	w.mu.Lock()
	if allow {
		w.guards[guardKey{port, key}] = true
	} else {
		delete(w.guards, guardKey{port, key})
	}
	w.gen++
	gen := w.gen
	w.mu.Unlock()
	w.kick()
	return gen
}

// appliedGen is the newest generation on the switch.
func (w *writer) appliedGen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied
}

// status reports the generation on the switch, the number of Writes done,
// and the last write error if the switch is not up to date.
func (w *writer) status() (applied, submitted, writes uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied, w.gen, w.writes, w.failing
}

// lastWritten is when a Write last changed the switch (zero: never).
func (w *writer) lastWritten() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastWrite
}

func (w *writer) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for {
			err := w.sync(ctx)
			if err == nil {
				backoff = 50 * time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.failing = err
			w.mu.Unlock()
			w.log.Error("programming the switch failed; reading it back and retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			case <-w.wake:
			}
			backoff = min(2*backoff, 2*time.Second)
			w.needsReadBack = true
		}
	}
}

// sync writes what is pending. Changes taken from pending stay in desired,
// so a failed sync is retried with everything.
func (w *writer) sync(ctx context.Context) error {
	w.mu.Lock()
	changes := w.pending
	w.pending = map[spf.Prefix]*fib.Route{}
	gen, holding := w.gen, w.holding
	roles := maps.Clone(w.roles)
	guards := maps.Clone(w.guards)
	w.mu.Unlock()

	for p, r := range changes {
		if r == nil {
			delete(w.desired, p)
		} else {
			w.desired[p] = *r
		}
	}
	full := w.needsReadBack || w.fullNext
	if w.needsReadBack {
		found, err := w.client.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
		if err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		if err := w.adopt(found); err != nil {
			return err
		}
		w.needsReadBack = false
	}
	adds, dels, err := w.tableUpdates(roles, guards)
	if err != nil {
		return err
	}
	var plan *fib.Plan
	if full {
		// After a read-back (or at the start) the switch may hold anything:
		// plan the whole FIB against it.
		want := w.desired
		if holding && len(w.kept) > 0 {
			// Keep what the switch had where we have nothing better yet.
			want = maps.Clone(w.desired)
			for p, r := range w.kept {
				if _, ok := want[p]; !ok {
					want[p] = r
				}
			}
		}
		plan, err = w.prog.Plan(want)
	} else {
		if holding {
			// A warm restart's routes stay while the agent relearns.
			for p, r := range changes {
				if kr, ok := w.kept[p]; ok && r == nil {
					changes[p] = &kr
				}
			}
		} else if w.kept != nil {
			// The hold is over: what the switch kept and the agent does not
			// want goes now.
			for p := range w.kept {
				if _, ok := w.desired[p]; !ok {
					changes[p] = nil
				}
			}
		}
		plan, err = w.prog.PlanChanges(changes)
	}
	if err != nil {
		// PlanChanges may have recorded part of it: start over from the
		// switch.
		w.needsReadBack = true
		return err
	}
	if !holding {
		w.kept = nil
	}
	phases := [][]*p4v1.Update{adds}
	phases = append(phases, plan.Phases...)
	phases = append(phases, dels)
	n := 0
	for _, ph := range phases {
		if len(ph) == 0 {
			continue
		}
		if err := w.client.Write(ctx, ph...); err != nil {
			w.needsReadBack = true
			return err
		}
		n++
	}
	w.prog.Commit(plan)
	w.fullNext = false
	w.haveRoles, w.haveGuards = roles, guards
	w.mu.Lock()
	w.applied = gen
	w.writes += uint64(n)
	if n > 0 {
		w.lastWrite = time.Now()
	}
	w.failing = nil
	w.mu.Unlock()
	if w.onApplied != nil {
		w.onApplied(gen)
	}
	return nil
}

// tableUpdates diffs port_role and src_guard: inserts and modifications
// first, deletions after the FIB.
func (w *writer) tableUpdates(roles map[uint16]int, guards map[guardKey]bool) (adds, dels []*p4v1.Update, err error) {
	role := func(port uint16, r int) (*p4v1.TableEntry, error) {
		b := p4rt.NewTableEntry(w.schema, p4.TablePortRole).ExactUint(p4.FieldPort, uint64(port))
		if r != 0 {
			b.Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, uint64(r)))
		}
		return b.Build()
	}
	guard := func(g guardKey, allow bool) (*p4v1.TableEntry, error) {
		b := p4rt.NewTableEntry(w.schema, p4.TableSrcGuard).ExactUint(p4.FieldPort, uint64(g.port)).Exact(p4.FieldSrcKey, g.key[:])
		if allow {
			b.Action(p4.ActionAllow)
		}
		return b.Build()
	}
	for _, port := range slices.Sorted(maps.Keys(roles)) {
		r := roles[port]
		have, ok := w.haveRoles[port]
		if ok && have == r {
			continue
		}
		e, err := role(port, r)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			adds = append(adds, p4rt.Modify(e))
		} else {
			adds = append(adds, p4rt.Insert(e))
		}
	}
	for port := range w.haveRoles {
		if _, ok := roles[port]; !ok {
			e, err := role(port, 0)
			if err != nil {
				return nil, nil, err
			}
			dels = append(dels, p4rt.Delete(e))
		}
	}
	for g := range guards {
		if !w.haveGuards[g] {
			e, err := guard(g, true)
			if err != nil {
				return nil, nil, err
			}
			adds = append(adds, p4rt.Insert(e))
		}
	}
	for g := range w.haveGuards {
		if !guards[g] {
			e, err := guard(g, false)
			if err != nil {
				return nil, nil, err
			}
			dels = append(dels, p4rt.Delete(e))
		}
	}
	return adds, dels, nil
}
