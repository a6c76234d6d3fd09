package spf

import (
	"fmt"
	"testing"
	"time"
)

// FuzzLSDB drives an LSDB and a RIB with arbitrary sequences of received
// LSPs (malformed ones included), originations, ageing and summaries. Nothing
// may panic, and after every computation the routes must equal a full
// computation from scratch and the diff must turn the old table into them.
func FuzzLSDB(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 20, 0, 2, 1, 2, 3, 1, 1, 5})
	f.Add([]byte{0, 2, 0, 2, 30, 0, 1, 0, 1, 2, 0, 0, 2, 0, 1, 1, 0, 1, 5, 3, 200, 5})
	f.Add([]byte{2, 0, 2, 1, 1, 1, 1, 0, 1, 0, 3, 0, 2, 0, 4, 1, 1, 5, 0, 1, 3, 1, 1, 0, 5, 3, 40, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		db := New(Options{Self: "n0", MaxFragments: 3, LSPLifetime: 30, RefreshInterval: 20 * time.Second,
			ZeroAgeLifetime: 5 * time.Second, MaxAdjacencies: 3, MaxPrefixes: 3})
		rib := NewRIB("n0")
		var now time.Duration
		for !in.done() {
			switch in.next() % 6 {
			case 0, 1:
				l := LSP{Origin: in.node(), Fragment: in.next() % 4, Seq: uint32(in.next() % 8),
					RemainingLifetime: uint16(in.next() % 40), Purged: in.next()%5 == 0}
				l.Adjacencies, l.Prefixes = in.content()
				db.Receive(l, now)
			case 2:
				adj, pfx := in.content()
				db.Originate(in.next()%4, adj, pfx, now)
			case 3:
				now += time.Duration(in.next()) * time.Second / 4
				db.Expire(now)
			case 4:
				var sum []Summary
				for range in.next() % 4 {
					sum = append(sum, Summary{Origin: in.node(), Fragment: in.next() % 4, Seq: uint32(in.next() % 8),
						RemainingLifetime: uint16(in.next() % 3), Hash: uint64(in.next())})
				}
				for _, id := range db.Compare(sum).Send {
					if _, ok := db.Get(id, now); !ok {
						t.Fatalf("Compare says send %s, which Get does not have", id)
					}
				}
			case 5:
				fuzzCheck(t, db, rib)
			}
		}
		fuzzCheck(t, db, rib)
	})
}

func fuzzCheck(t *testing.T, db *LSDB, rib *RIB) {
	before := rib.Routes().Clone()
	c := rib.Update(db, db.TakeChanges())
	fresh := NewRIB(rib.Root())
	fresh.Full(db)
	if d := DiffRoutes(fresh.Routes(), rib.Routes()); d.Len() > 0 {
		t.Fatalf("%v computation differs from a full one: %+v", c.Kind, d)
	}
	checkDiff(t, before, c.Diff, rib.Routes())
}

type fuzzInput struct {
	data []byte
	i    int
}

func (in *fuzzInput) done() bool { return in.i >= len(in.data) }

func (in *fuzzInput) next() uint8 {
	if in.done() {
		return 0
	}
	in.i++
	return in.data[in.i-1]
}

func (in *fuzzInput) node() NodeID { return NodeID(fmt.Sprintf("n%d", in.next()%5)) }

// content makes up to 4 adjacencies and prefixes: enough to cross the
// limits, and with bad metrics, self-adjacencies, duplicates and bad prefix
// lengths among them.
func (in *fuzzInput) content() ([]Adjacency, []PrefixReach) {
	var adj []Adjacency
	for range in.next() % 5 {
		adj = append(adj, Adjacency{Neighbor: in.node(), Metric: uint32(in.next() % 4), LinkID: uint32(in.next() % 3)})
	}
	var pfx []PrefixReach
	for range in.next() % 5 {
		p := Prefix{Len: [...]uint8{32, 64, 33, 128}[in.next()%4]}
		p.Key[0] = in.next() % 4
		pfx = append(pfx, PrefixReach{Prefix: p, Metric: uint32(in.next() % 3)})
	}
	return adj, pfx
}
