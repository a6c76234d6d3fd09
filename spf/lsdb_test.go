package spf

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestCompareVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b version
		want int
	}{
		{"higher seq", version{seq: 2, hash: 1}, version{seq: 1, hash: 9}, 1},
		{"lower seq", version{seq: 1, hash: 9}, version{seq: 2, hash: 1}, -1},
		{"same", version{seq: 3, hash: 5}, version{seq: 3, hash: 5}, 0},
		{"purge wins at equal seq", version{seq: 3, purged: true}, version{seq: 3, hash: 5}, 1},
		{"content loses to purge", version{seq: 3, hash: 5}, version{seq: 3, purged: true}, -1},
		{"purge loses to higher seq", version{seq: 3, purged: true}, version{seq: 4, hash: 5}, -1},
		{"two purges", version{seq: 3, purged: true}, version{seq: 3, purged: true}, 0},
		{"higher hash", version{seq: 3, hash: 6}, version{seq: 3, hash: 5}, 1},
		{"max seq", version{seq: math.MaxUint32, hash: 1}, version{seq: math.MaxUint32 - 1, hash: 9}, 1},
	} {
		if got := compareVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: compareVersion = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPrefixValid(t *testing.T) {
	key := func(b ...byte) (k [16]byte) { copy(k[:], b); return k }
	for _, tc := range []struct {
		p    Prefix
		want error
	}{
		{Prefix{key(1, 2, 3, 4), 32}, nil},
		{Prefix{key(1, 2, 3, 4, 5, 6, 7, 8), 64}, nil},
		{Prefix{key(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), 96}, nil},
		{Prefix{key(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), 128}, nil},
		{Prefix{key(1, 2, 3, 4, 5), 32}, ErrPrefixBits},
		{Prefix{key(1, 2, 3, 4, 5, 6, 7, 8, 9), 64}, ErrPrefixBits},
		{Prefix{key(1), 0}, ErrPrefixLen},
		{Prefix{key(1), 33}, ErrPrefixLen},
		{Prefix{key(1), 129}, ErrPrefixLen},
		{Prefix{key(1), 255}, ErrPrefixLen},
	} {
		if err := tc.p.Valid(); !errors.Is(err, tc.want) {
			t.Errorf("%s: Valid() = %v, want %v", tc.p, err, tc.want)
		}
	}
}

func TestRemaining(t *testing.T) {
	f := &fragment{expiresAt: 100 * time.Second}
	for _, tc := range []struct {
		now  time.Duration
		want uint16
	}{
		{0, 100},
		{time.Nanosecond, 100},
		{time.Second, 99},
		{99*time.Second + 1, 1},
		{100 * time.Second, 0},
		{200 * time.Second, 0},
		{-math.MaxInt32 * time.Second, math.MaxUint16},
	} {
		if got := remaining(f, tc.now); got != tc.want {
			t.Errorf("remaining at %v = %d, want %d", tc.now, got, tc.want)
		}
	}
}

// TestReceiveCopies: the LSDB keeps its own copy; a caller reusing its
// buffers does not change what is installed.
func TestReceiveCopies(t *testing.T) {
	db := New(Options{})
	adj := []Adjacency{{"b", 10, 1}}
	pfx := []PrefixReach{{Prefix{Key: [16]byte{1}, Len: 32}, 0}}
	if r := db.Receive(LSP{Origin: "a", Seq: 1, RemainingLifetime: 10, Adjacencies: adj, Prefixes: pfx}, 0); r.Verdict != Newer {
		t.Fatal(r.Verdict, r.Err)
	}
	adj[0].Metric, pfx[0].Metric = 99, 99
	l, _ := db.Get(FragmentID{"a", 0}, 0)
	if l.Adjacencies[0].Metric != 10 || l.Prefixes[0].Metric != 0 {
		t.Fatalf("stored LSP changed with the caller's slices: %+v", l)
	}
}

// TestNodesFreed: names that nothing refers to any more are forgotten, so a
// stream of invented neighbour names cannot grow the database for ever.
func TestNodesFreed(t *testing.T) {
	db := New(Options{ZeroAgeLifetime: time.Second})
	for i := range 100 {
		var adj []Adjacency
		for j := range 10 {
			adj = append(adj, Adjacency{NodeID(fmt.Sprintf("ghost-%d-%d", i, j)), 1, uint32(j)})
		}
		db.Receive(LSP{Origin: "a", Seq: uint32(i + 1), RemainingLifetime: 100, Adjacencies: adj}, 0)
	}
	if n := len(db.ids); n != 11 {
		t.Errorf("%d nodes known, want 11 (a and its current 10 neighbours)", n)
	}
	db.Receive(LSP{Origin: "a", Seq: 200, Purged: true}, 0)
	db.Expire(2 * time.Second)
	if n := len(db.ids); n != 0 || db.Len() != 0 {
		t.Errorf("%d nodes and %d fragments left, want none", n, db.Len())
	}
	// Indexes are reused: the slots never exceed the peak (a, 10 old and
	// 10 new neighbours while one fragment replaces another).
	db.Receive(LSP{Origin: "x", Seq: 1, RemainingLifetime: 100, Adjacencies: []Adjacency{{"y", 1, 1}}}, 0)
	if len(db.nodes) != 21 {
		t.Errorf("%d node slots after reuse, want 21", len(db.nodes))
	}
}

func TestSealAndOpaque(t *testing.T) {
	sealed := 0
	db := New(Options{Self: "a", Seal: func(l *LSP) {
		sealed++
		l.Opaque = []byte(fmt.Sprintf("sig %s/%d seq %d purged %v", l.Origin, l.Fragment, l.Seq, l.Purged))
	}})
	l, r := db.Originate(0, []Adjacency{{"b", 1, 1}}, nil, 0)
	if r.Verdict != Newer || string(l.Opaque) != "sig a/0 seq 1 purged false" {
		t.Fatalf("Originate: %v %q", r.Verdict, l.Opaque)
	}
	if g, _ := db.Get(FragmentID{"a", 0}, 0); string(g.Opaque) != string(l.Opaque) {
		t.Fatalf("Get: %q", g.Opaque)
	}
	r = db.Receive(LSP{Origin: "a", Seq: 9, RemainingLifetime: 100}, 0)
	if r.Verdict != Reoriginated || string(r.Ours.Opaque) != "sig a/0 seq 10 purged false" {
		t.Fatalf("re-origination: %v %q", r.Verdict, r.Ours.Opaque)
	}
	ex := db.Expire(db.Options().RefreshInterval)
	if len(ex.Refreshed) != 1 || string(ex.Refreshed[0].Opaque) != "sig a/0 seq 11 purged false" {
		t.Fatalf("refresh: %+v", ex)
	}
	p, _, ok := db.PurgeOwn(0, db.Options().RefreshInterval)
	if !ok || string(p.Opaque) != "sig a/0 seq 11 purged true" {
		t.Fatalf("purge: %q", p.Opaque)
	}
	if sealed != 4 {
		t.Errorf("Seal called %d times, want 4", sealed)
	}
	// Someone else's Opaque is kept as received.
	db.Receive(LSP{Origin: "b", Seq: 1, RemainingLifetime: 100, Opaque: []byte("b's")}, 0)
	if g, _ := db.Get(FragmentID{"b", 0}, 0); string(g.Opaque) != "b's" {
		t.Fatalf("received Opaque: %q", g.Opaque)
	}
}

func TestSeqExhausted(t *testing.T) {
	db := New(Options{Self: "a"})
	if r := db.Receive(LSP{Origin: "a", Seq: math.MaxUint32 - 1, RemainingLifetime: 100}, 0); r.Verdict != Reoriginated {
		t.Fatal(r.Verdict)
	}
	// Our purge is at MaxUint32-1; content at MaxUint32 beats it.
	if r := db.Receive(LSP{Origin: "a", Seq: math.MaxUint32, RemainingLifetime: 100}, 0); r.Verdict != Reoriginated || r.Ours.Seq != math.MaxUint32 {
		t.Fatalf("%v %+v", r.Verdict, r.Ours)
	}
	if _, r := db.Originate(0, nil, nil, 0); !errors.Is(r.Err, ErrSeqExhausted) {
		t.Fatalf("Originate at the top: %v", r.Err)
	}
	if _, r := db.Originate(1, nil, nil, 0); r.Verdict != Newer {
		t.Fatalf("other fragment: %v", r.Err)
	}
	db.Originate(2, nil, nil, 0)
	if r := db.Receive(LSP{Origin: "a", Fragment: 2, Seq: math.MaxUint32, RemainingLifetime: 100}, 0); !errors.Is(r.Err, ErrSeqExhausted) {
		t.Fatalf("newer own copy at the top: %v %v", r.Verdict, r.Err)
	}
}

func TestChangesMerge(t *testing.T) {
	p := func(b byte) Prefix { return Prefix{Key: [16]byte{b}, Len: 32} }
	for _, tc := range []struct {
		name      string
		a, b      Changes
		topo      bool
		origins   []NodeID
		nPrefixes int
	}{
		{"empty", Changes{}, Changes{}, false, nil, 0},
		{"into empty", Changes{}, Changes{Origins: []NodeID{"a"}, Prefixes: []Prefix{p(1)}}, false, []NodeID{"a"}, 1},
		{"topology sticks", Changes{Topology: true}, Changes{}, true, nil, 0},
		{"dedupe", Changes{Origins: []NodeID{"a", "c"}, Prefixes: []Prefix{p(1), p(2)}},
			Changes{Topology: true, Origins: []NodeID{"b", "c"}, Prefixes: []Prefix{p(2), p(3)}}, true, []NodeID{"a", "b", "c"}, 3},
	} {
		c := tc.a
		c.Merge(tc.b)
		if c.Topology != tc.topo || !slices.Equal(c.Origins, tc.origins) || len(c.Prefixes) != tc.nPrefixes {
			t.Errorf("%s: got %+v", tc.name, c)
		}
	}
}

func TestDiffRoutes(t *testing.T) {
	p := func(b byte) Prefix { return Prefix{Key: [16]byte{b}, Len: 32} }
	viaB := Route{NextHops: []NextHop{{"b", 1}}, Metric: 10, Origins: []NodeID{"x"}}
	viaC := Route{NextHops: []NextHop{{"c", 2}}, Metric: 10, Origins: []NodeID{"x"}}
	local := Route{Metric: 0, Origins: []NodeID{"a"}, Local: true}
	for _, tc := range []struct {
		name               string
		old, new           RouteTable
		added, chg, remove []Prefix
	}{
		{"empty", RouteTable{}, RouteTable{}, nil, nil, nil},
		{"add", RouteTable{}, RouteTable{p(1): viaB}, []Prefix{p(1)}, nil, nil},
		{"remove", RouteTable{p(1): viaB}, nil, nil, nil, []Prefix{p(1)}},
		{"next hop", RouteTable{p(1): viaB}, RouteTable{p(1): viaC}, nil, []Prefix{p(1)}, nil},
		{"to local", RouteTable{p(1): viaB}, RouteTable{p(1): local}, nil, []Prefix{p(1)}, nil},
		{"equal content, other slices", RouteTable{p(1): viaB},
			RouteTable{p(1): {NextHops: []NextHop{{"b", 1}}, Metric: 10, Origins: []NodeID{"x"}}}, nil, nil, nil},
		{"sorted", RouteTable{p(3): viaB, p(1): viaB}, RouteTable{p(2): viaB}, []Prefix{p(2)}, nil, []Prefix{p(1), p(3)}},
	} {
		d := DiffRoutes(tc.old, tc.new)
		ps := func(u []RouteUpdate) (out []Prefix) {
			for _, x := range u {
				out = append(out, x.Prefix)
			}
			return out
		}
		if !slices.Equal(ps(d.Added), tc.added) || !slices.Equal(ps(d.Changed), tc.chg) || !slices.Equal(ps(d.Removed), tc.remove) {
			t.Errorf("%s: got %+v", tc.name, d)
		}
	}
}

// TestSyncConverges: two databases that saw different histories exchange
// what Compare says, and end up with the same summary.
func TestSyncConverges(t *testing.T) {
	for seed := range 100 {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		dbs := [2]*LSDB{New(Options{}), New(Options{})}
		for range 40 {
			origin := NodeID(fmt.Sprintf("n%d", rng.IntN(5)))
			l := LSP{Origin: origin, Fragment: uint8(rng.IntN(2)), Seq: 1 + uint32(rng.IntN(6)), RemainingLifetime: 1000}
			switch rng.IntN(4) {
			case 0:
				l.Purged = true
			case 1:
				l.Prefixes = []PrefixReach{{Prefix{Key: [16]byte{byte(rng.IntN(3) + 1)}, Len: 32}, 0}}
			}
			dbs[rng.IntN(2)].Receive(l, 0)
		}
		a, b := dbs[0], dbs[1]
		plan := a.Compare(b.Summary(0))
		for _, id := range plan.Send {
			l, _ := a.Get(id, 0)
			b.Receive(l, 0)
		}
		for _, id := range plan.Request {
			l, _ := b.Get(id, 0)
			a.Receive(l, 0)
		}
		// Purge headers that only one side holds need not travel; compare
		// the live fragments.
		live := func(s []Summary) (out []Summary) {
			for _, x := range s {
				if x.RemainingLifetime > 0 {
					out = append(out, x)
				}
			}
			return out
		}
		if sa, sb := live(a.Summary(0)), live(b.Summary(0)); !slices.Equal(sa, sb) {
			t.Fatalf("seed %d: after sync\n a %v\n b %v", seed, sa, sb)
		}
		if p := a.Compare(b.Summary(0)); len(p.Send)+len(p.Request) > 0 {
			t.Fatalf("seed %d: still out of sync: %+v", seed, p)
		}
	}
}

func TestNextDeadline(t *testing.T) {
	db := New(Options{Self: "a", LSPLifetime: 100, RefreshInterval: 30 * time.Second, ZeroAgeLifetime: 5 * time.Second})
	if _, ok := db.NextDeadline(); ok {
		t.Fatal("deadline in an empty database")
	}
	db.Receive(LSP{Origin: "b", Seq: 1, RemainingLifetime: 50}, 0)
	db.Originate(0, nil, nil, 10*time.Second)
	db.Receive(LSP{Origin: "c", Seq: 1, Purged: true}, 0) // not stored
	for _, want := range []time.Duration{40 * time.Second, 50 * time.Second, 55 * time.Second, 70 * time.Second} {
		d, ok := db.NextDeadline()
		if !ok || d != want {
			t.Fatalf("deadline %v %v, want %v", d, ok, want)
		}
		db.Expire(d)
	}
}

// TestDiffLarge: a diff of thousands of routes (sorted through keys) comes
// out complete and sorted like a small one.
func TestDiffLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	old, new := RouteTable{}, RouteTable{}
	via := func(l uint32) Route { return Route{NextHops: []NextHop{{"b", l}}, Metric: 1, Origins: []NodeID{"x"}} }
	for i := range 5000 {
		var p Prefix
		for j := range 4 {
			p.Key[j] = byte(rng.IntN(256))
		}
		p.Len = 32
		if rng.IntN(4) == 0 {
			p.Key[4], p.Len = byte(i), 64 // same first segment, longer prefix
		}
		switch rng.IntN(3) {
		case 0:
			old[p] = via(1)
		case 1:
			new[p] = via(1)
		default:
			old[p], new[p] = via(1), via(2)
		}
	}
	d := DiffRoutes(old, new)
	for name, l := range map[string][]RouteUpdate{"added": d.Added, "changed": d.Changed, "removed": d.Removed} {
		if len(l) < 256 {
			t.Errorf("%s: only %d updates, the test wants the large path", name, len(l))
		}
		if !slices.IsSortedFunc(l, func(a, b RouteUpdate) int { return a.Prefix.Compare(b.Prefix) }) {
			t.Errorf("%s: not sorted", name)
		}
	}
	applied := old.Clone()
	for _, u := range d.Added {
		applied[u.Prefix] = u.New
	}
	for _, u := range d.Changed {
		applied[u.Prefix] = u.New
	}
	for _, u := range d.Removed {
		delete(applied, u.Prefix)
	}
	if x := DiffRoutes(applied, new); x.Len() != 0 || len(applied) != len(new) {
		t.Errorf("applying the diff leaves %d differences", x.Len())
	}
}

// TestSyncByRanges syncs two databases through summaries cut into ranges, as
// DB_SUMMARY messages carry them: every range compared alone, the result is
// the same as one complete comparison.
func TestSyncByRanges(t *testing.T) {
	for seed := range 50 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		a, b := New(Options{}), New(Options{})
		for range 60 {
			l := LSP{Origin: NodeID(fmt.Sprintf("n%d", rng.IntN(8))), Fragment: uint8(rng.IntN(3)),
				Seq: 1 + uint32(rng.IntN(4)), RemainingLifetime: 1000}
			if rng.IntN(5) == 0 {
				l.Purged = true
			}
			[]*LSDB{a, b}[rng.IntN(2)].Receive(l, 0)
		}
		want := a.Compare(b.Summary(0))
		var got SyncPlan
		theirs := b.Summary(0)
		// Ranges of 1..4 entries; each range runs from just after the previous
		// range's last entry to its own last entry, the last range to the end.
		var prev *FragmentID
		for i := 0; i < len(theirs) || prev == nil; {
			n := min(1+rng.IntN(4), len(theirs)-i)
			part := theirs[i : i+n]
			lo := prev
			var hi *FragmentID
			if i+n < len(theirs) {
				id := part[len(part)-1].ID()
				hi = &id
			}
			in := func(id FragmentID) bool {
				return (lo == nil || id.compare(*lo) > 0) && (hi == nil || id.compare(*hi) <= 0)
			}
			p := a.CompareRange(part, in)
			got.Send = append(got.Send, p.Send...)
			got.Request = append(got.Request, p.Request...)
			prev, i = hi, i+n
			if hi == nil {
				break
			}
		}
		slices.SortFunc(got.Send, FragmentID.compare)
		slices.SortFunc(got.Request, FragmentID.compare)
		if !slices.Equal(got.Send, want.Send) || !slices.Equal(got.Request, want.Request) {
			t.Fatalf("seed %d: by ranges %+v, whole %+v", seed, got, want)
		}
	}
}

func TestCovers(t *testing.T) {
	db := New(Options{})
	db.Receive(LSP{Origin: "a", Seq: 5, RemainingLifetime: 100}, 0)
	cur, _ := db.Get(FragmentID{Origin: "a"}, 0)
	var s Summary
	for _, x := range db.Summary(0) {
		s = x
	}
	for _, tc := range []struct {
		name string
		s    Summary
		want bool
	}{
		{"same copy", s, true},
		{"newer seq", Summary{Origin: "a", Seq: 6, RemainingLifetime: 10, Hash: 1}, true},
		{"purge at same seq", Summary{Origin: "a", Seq: 5}, true},
		{"older seq", Summary{Origin: "a", Seq: 4, RemainingLifetime: 10, Hash: s.Hash}, false},
		{"same seq, other content", Summary{Origin: "a", Seq: 5, RemainingLifetime: 10, Hash: s.Hash - 1}, false},
		{"unknown fragment", Summary{Origin: "a", Fragment: 3, Seq: 1, RemainingLifetime: 10}, true},
		{"unknown origin", Summary{Origin: "zz", Seq: 1, RemainingLifetime: 10}, true},
	} {
		if got := db.Covers(tc.s); got != tc.want {
			t.Errorf("%s (ours seq %d): Covers = %v, want %v", tc.name, cur.Seq, got, tc.want)
		}
	}
}
