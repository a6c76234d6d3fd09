package spfbench

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/spf"
)

const servicePrefixes = 100_000

// The fabrics of the targets: 1k and 10k nodes, fat-tree and random.
var fabrics = []struct {
	name  string
	build func() *Fabric
}{
	{"fattree-1k", func() *Fabric { return FatTree(28, servicePrefixes, 1) }},  // 980 nodes
	{"fattree-10k", func() *Fabric { return FatTree(90, servicePrefixes, 1) }}, // 10,125 nodes
	{"random-1k", func() *Fabric { return Random(1_000, 4, servicePrefixes, 1) }},
	{"random-10k", func() *Fabric { return Random(10_000, 4, servicePrefixes, 1) }},
}

type loaded struct {
	f  *Fabric
	db *spf.LSDB
}

// cache keeps each fabric loaded across the benchmarks of one run: building
// the 10k fat tree (730k adjacencies) takes longer than measuring it.
var cache = map[string]*loaded{}

func load(b *testing.B, name string, build func() *Fabric) *loaded {
	b.Helper()
	if l := cache[name]; l != nil {
		return l
	}
	f := build()
	db, err := f.Load()
	if err != nil {
		b.Fatal(err)
	}
	l := &loaded{f, db}
	cache[name] = l
	return l
}

func TestGenerators(t *testing.T) {
	for _, tc := range []struct {
		f            *Fabric
		nodes, links int
	}{
		{FatTree(4, 100, 1), 20, 32},
		{FatTree(28, 1000, 1), 980, 28 * 28 * 28 / 2},
		{Random(200, 4, 1000, 1), 200, 400},
	} {
		if len(tc.f.Nodes) != tc.nodes || tc.f.Links != tc.links {
			t.Errorf("%s: %d nodes, %d links; want %d, %d", tc.f.Name, len(tc.f.Nodes), tc.f.Links, tc.nodes, tc.links)
		}
		db, err := tc.f.Load()
		if err != nil {
			t.Fatal(err)
		}
		rib := spf.NewRIB(tc.f.Root)
		c := rib.Full(db)
		// Connected: every node reached, every prefix routed.
		if c.Reachable != tc.nodes || len(rib.Routes()) != tc.f.Prefixes+tc.nodes {
			t.Errorf("%s: %d nodes reached, %d routes; want %d, %d", tc.f.Name, c.Reachable, len(rib.Routes()), tc.nodes, tc.f.Prefixes+tc.nodes)
		}
		// Deterministic.
		again := map[string]func() *Fabric{
			"fattree-k4":     func() *Fabric { return FatTree(4, 100, 1) },
			"fattree-k28":    func() *Fabric { return FatTree(28, 1000, 1) },
			"random-n200-d4": func() *Fabric { return Random(200, 4, 1000, 1) },
		}[tc.f.Name]()
		if !slices.EqualFunc(again.LSPs, tc.f.LSPs, func(a, b spf.LSP) bool {
			return a.ID() == b.ID() && slices.Equal(a.Adjacencies, b.Adjacencies) && slices.Equal(a.Prefixes, b.Prefixes)
		}) {
			t.Errorf("%s: not deterministic", tc.f.Name)
		}
	}
	// In a fat tree, an edge switch reaches an edge switch of another pod
	// over all k/2 of its uplinks.
	f := FatTree(8, 0, 1)
	db, _ := f.Load()
	rib := spf.NewRIB(f.Root)
	rib.Full(db)
	for _, n := range rib.Tree() {
		if n.Node == "e7-3" && (n.Distance != 40 || len(n.FirstHops) != 4) {
			t.Errorf("e0-0 → e7-3: %+v", n)
		}
	}
}

// BenchmarkFullSPF: Dijkstra with ECMP first-hop sets from an edge node, then
// the route of every prefix (100k service prefixes and one node key per
// node), on a table already in place (the steady state: a topology change
// somewhere far that moves few routes). Target: < 20 ms at 10k nodes.
func BenchmarkFullSPF(b *testing.B) {
	for _, fb := range fabrics {
		b.Run(fb.name, func(b *testing.B) {
			l := load(b, fb.name, fb.build)
			rib := spf.NewRIB(l.f.Root)
			rib.Full(l.db)
			var c spf.Computation
			cpu := cpuTime()
			for b.Loop() {
				c = rib.Full(l.db)
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(c.Reachable), "nodes")
			b.ReportMetric(float64(c.Recomputed), "prefixes")
		})
	}
}

// BenchmarkPrefixChange: one edge node's prefix fragment changes (8 of its
// prefixes replaced, the metric of another changed; then back), and the
// routes follow by partial route calculation: Receive, TakeChanges and
// RIB.Update. Target: < 1 ms.
func BenchmarkPrefixChange(b *testing.B) {
	for _, fb := range fabrics {
		b.Run(fb.name, func(b *testing.B) {
			l := load(b, fb.name, fb.build)
			rib := spf.NewRIB(l.f.Root)
			rib.Full(l.db)

			// The origin: an edge node in the middle of the list, not the
			// root.
			origin := l.f.Edge[len(l.f.Edge)/2]
			var orig spf.LSP
			for _, x := range l.f.LSPs {
				if x.Origin == origin && x.Fragment == 1 {
					orig = x
				}
			}
			alt := orig
			alt.Prefixes = slices.Clone(orig.Prefixes)
			rng := rand.New(rand.NewPCG(2, 2))
			for i := range min(8, len(alt.Prefixes)) {
				alt.Prefixes[i].Prefix = RandomPrefix(rng, 64)
			}
			alt.Prefixes[len(alt.Prefixes)-1].Metric = 5
			versions := [2]spf.LSP{alt, orig}

			// The database holds orig; the loop alternates alt, orig, ...
			cur, _ := l.db.Get(orig.ID(), 0)
			seq := cur.Seq
			changed := 0
			cpu := cpuTime()
			for b.Loop() {
				seq++
				next := versions[int(seq-cur.Seq-1)%2]
				next.Seq = seq
				if r := l.db.Receive(next, 0); r.Verdict != spf.Newer {
					b.Fatal(r.Verdict, r.Err)
				}
				c := rib.Update(l.db, l.db.TakeChanges())
				if c.Kind != spf.KindIncremental {
					b.Fatalf("computation %v", c.Kind)
				}
				changed += c.Diff.Len()
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(changed)/float64(b.N), "routes/op")
			// Leave the database as it was for the next benchmark.
			orig.Seq = seq + 1
			l.db.Receive(orig, 0)
			l.db.TakeChanges()
		})
	}
}

// BenchmarkLinkCut: one of the root's own links goes down and comes back
// (the root's fragment 0 loses, then regains, the adjacency): a full SPF in
// which most routes change their next hops, the worst case for the size of
// the diff the agent has to program.
func BenchmarkLinkCut(b *testing.B) {
	for _, fb := range fabrics {
		b.Run(fb.name, func(b *testing.B) {
			l := load(b, fb.name, fb.build)
			rib := spf.NewRIB(l.f.Root)
			rib.Full(l.db)
			var up spf.LSP
			for _, x := range l.f.LSPs {
				if x.Origin == l.f.Root && x.Fragment == 0 {
					up = x
				}
			}
			down := up
			down.Adjacencies = up.Adjacencies[1:]
			versions := [2]spf.LSP{down, up}
			cur, _ := l.db.Get(up.ID(), 0)
			seq := cur.Seq
			changed := 0
			cpu := cpuTime()
			for b.Loop() {
				seq++
				next := versions[int(seq-cur.Seq-1)%2]
				next.Seq = seq
				l.db.Receive(next, 0)
				c := rib.Update(l.db, l.db.TakeChanges())
				if c.Kind != spf.KindFull {
					b.Fatalf("computation %v", c.Kind)
				}
				changed += c.Diff.Len()
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(changed)/float64(b.N), "routes/op")
			// Leave the database as it was for the next benchmark.
			up.Seq = seq + 1
			l.db.Receive(up, 0)
			l.db.TakeChanges()
		})
	}
}

// BenchmarkRouteTableMemory: a cold full computation into an empty RIB (an
// agent's first SPF after start), reporting the heap held by the RIB (route
// table, tree, interned next-hop sets) and by the LSDB, both measured after a
// garbage collection. Target for the whole agent: < 200 MB at 100k prefixes.
func BenchmarkRouteTableMemory(b *testing.B) {
	for _, fb := range fabrics {
		b.Run(fb.name, func(b *testing.B) {
			l := load(b, fb.name, fb.build)

			before := heap()
			db, err := l.f.Load()
			if err != nil {
				b.Fatal(err)
			}
			lsdbBytes := heap() - before
			runtime.KeepAlive(db)

			before = heap()
			rib := spf.NewRIB(l.f.Root)
			rib.Full(l.db)
			ribBytes := heap() - before
			routes := len(rib.Routes())
			runtime.KeepAlive(rib)

			cpu := cpuTime()
			for b.Loop() {
				r := spf.NewRIB(l.f.Root)
				r.Full(l.db)
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(ribBytes), "rib-B")
			b.ReportMetric(float64(ribBytes)/float64(routes), "rib-B/route")
			b.ReportMetric(float64(lsdbBytes), "lsdb-B")
		})
	}
}

// reportCPU reports the CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func heap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
