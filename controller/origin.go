package controller

import (
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/spf"
)

// maxFragments is how many fragments a node may originate (spf's limit).
const maxFragments = 256

// ownFragments packs what the node announces into LSP fragments that fit one
// frame each. Fragment 0 carries the adjacencies and as many prefixes as fit;
// the others carry prefixes. A prefix keeps its fragment while it stays, so
// adding or removing one re-originates one fragment, not all of them. It is
// pure: the agent asks what is due and originates it.
type ownFragments struct {
	budget  int // bytes of content per fragment
	adj     []spf.Adjacency
	adjSize int

	frags   [maxFragments]ownFragment
	fragOf  map[spf.Prefix]uint8
	reach   map[spf.Prefix]spf.PrefixReach
	refused map[spf.Prefix]bool // announced but found no room
}

type ownFragment struct {
	prefixes map[spf.Prefix]struct{}
	used     int // prefix bytes
	dirty    bool
	live     bool // originated, not purged
	last     time.Duration
	ever     bool // originated at least once
}

func newOwnFragments(self spf.NodeID) *ownFragments {
	o := &ownFragments{
		budget:  lsmsg.MaxBody - lsmsg.HeaderSize(self),
		fragOf:  map[spf.Prefix]uint8{},
		reach:   map[spf.Prefix]spf.PrefixReach{},
		refused: map[spf.Prefix]bool{},
	}
	o.frags[0].dirty = true // fragment 0 always exists
	return o
}

// room is the content space left in fragment f.
func (o *ownFragments) room(f int) int {
	r := o.budget - o.frags[f].used
	if f == 0 {
		r -= o.adjSize
	}
	return r
}

// setAdjacencies replaces the adjacencies (fragment 0). Prefixes that no
// longer fit fragment 0 move to others.
func (o *ownFragments) setAdjacencies(adj []spf.Adjacency) {
	adj = slices.Clone(adj)
	slices.SortFunc(adj, func(x, y spf.Adjacency) int {
		switch {
		case x.Neighbor != y.Neighbor:
			if x.Neighbor < y.Neighbor {
				return -1
			}
			return 1
		case x.LinkID != y.LinkID:
			return int(x.LinkID) - int(y.LinkID)
		}
		return int(x.Metric) - int(y.Metric)
	})
	if slices.Equal(adj, o.adj) {
		return
	}
	o.adj = adj
	o.adjSize = 0
	for _, a := range adj {
		o.adjSize += lsmsg.AdjacencySize(a)
	}
	o.frags[0].dirty = true
	// Evict the largest-keyed prefixes of fragment 0 until the rest fits.
	if o.room(0) < 0 {
		moved := sortedPrefixes(o.frags[0].prefixes)
		for i := len(moved) - 1; i >= 0 && o.room(0) < 0; i-- {
			p := moved[i]
			r := o.reach[p]
			o.unassign(p)
			o.assign(r)
		}
	}
}

// setPrefix announces p (or changes its metric).
func (o *ownFragments) setPrefix(r spf.PrefixReach) bool {
	if old, ok := o.reach[r.Prefix]; ok {
		if old == r {
			return true
		}
		if f, ok := o.fragOf[r.Prefix]; ok && lsmsg.PrefixSize(old) == lsmsg.PrefixSize(r) {
			o.reach[r.Prefix] = r
			o.frags[f].dirty = true
			return true
		}
		o.unassign(r.Prefix)
	}
	o.reach[r.Prefix] = r
	return o.assign(r)
}

// removePrefix withdraws p.
func (o *ownFragments) removePrefix(p spf.Prefix) {
	if _, ok := o.reach[p]; !ok {
		return
	}
	o.unassign(p)
	delete(o.reach, p)
	delete(o.refused, p)
}

func (o *ownFragments) assign(r spf.PrefixReach) bool {
	size := lsmsg.PrefixSize(r)
	for f := range o.frags {
		if o.room(f) >= size {
			fr := &o.frags[f]
			if fr.prefixes == nil {
				fr.prefixes = map[spf.Prefix]struct{}{}
			}
			fr.prefixes[r.Prefix] = struct{}{}
			fr.used += size
			fr.dirty = true
			o.fragOf[r.Prefix] = uint8(f)
			delete(o.refused, r.Prefix)
			return true
		}
	}
	o.refused[r.Prefix] = true
	return false
}

func (o *ownFragments) unassign(p spf.Prefix) {
	f, ok := o.fragOf[p]
	if !ok {
		return
	}
	fr := &o.frags[f]
	delete(fr.prefixes, p)
	fr.used -= lsmsg.PrefixSize(o.reach[p])
	fr.dirty = true
	delete(o.fragOf, p)
}

// pending reports whether a fragment waits to be originated.
func (o *ownFragments) pending() bool {
	for f := range o.frags {
		if o.frags[f].dirty {
			return true
		}
	}
	return false
}

// nextDue is when the next dirty fragment may be originated.
func (o *ownFragments) nextDue(minInterval time.Duration) (time.Duration, bool) {
	var next time.Duration
	ok := false
	for f := range o.frags {
		fr := &o.frags[f]
		if !fr.dirty {
			continue
		}
		t := time.Duration(0)
		if fr.ever {
			t = fr.last + minInterval
		}
		if !ok || t < next {
			next, ok = t, true
		}
	}
	return next, ok
}

// content returns fragment f's adjacencies and prefixes, in canonical order.
func (o *ownFragments) content(f int) ([]spf.Adjacency, []spf.PrefixReach) {
	var adj []spf.Adjacency
	if f == 0 {
		adj = o.adj
	}
	ps := sortedPrefixes(o.frags[f].prefixes)
	pfx := make([]spf.PrefixReach, len(ps))
	for i, p := range ps {
		pfx[i] = o.reach[p]
	}
	return adj, pfx
}

func sortedPrefixes(m map[spf.Prefix]struct{}) []spf.Prefix {
	out := make([]spf.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, spf.Prefix.Compare)
	return out
}

// originate originates (or purges) the fragments that are due.
func (a *Agent) originate(now time.Duration) {
	l := a.loop
	o := l.own
	for f := range o.frags {
		fr := &o.frags[f]
		if !fr.dirty || (fr.ever && now < fr.last+a.t.LSPMinInterval) {
			continue
		}
		fr.dirty = false
		fr.last, fr.ever = now, true
		adj, pfx := o.content(f)
		var lsp spf.LSP
		var res spf.Result
		if f > 0 && len(pfx) == 0 {
			if !fr.live {
				continue
			}
			var ok bool
			if lsp, res, ok = l.db.PurgeOwn(uint8(f), now); !ok {
				fr.live = false
				continue
			}
			fr.live = false
		} else {
			lsp, res = l.db.Originate(uint8(f), adj, pfx, now)
			if res.Verdict == spf.Invalid {
				a.log.Error("cannot originate own LSP", "fragment", f, "err", res.Err)
				continue
			}
			fr.live = true
		}
		l.counters.LSPsOriginated++
		for _, n := range l.nbrs {
			n.send[lsp.ID()] = now
		}
		if res.Topology || res.Prefixes {
			a.lsdbChanged(res.Topology, now)
		}
	}
	if len(o.refused) > 0 {
		a.logOnce("own-full", "own LSP fragments are full: some prefixes are not announced", "refused", len(o.refused))
	}
}
