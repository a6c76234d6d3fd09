package softswitch

import (
	"math/rand/v2"
	"testing"
)

// TestCowMap checks the copy-on-write map against a plain map through many
// batches, across folds, and checks that published maps never change.
func TestCowMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ref := map[uint32]int{}
	var cur cowMap[uint32, int]
	type published struct {
		m   cowMap[uint32, int]
		ref map[uint32]int
	}
	var history []published
	folds := 0
	for batch := range 200 {
		var w cowWriter[uint32, int]
		w.init(&cur)
		n := rng.IntN(1500)
		for range n {
			k := rng.Uint32N(6000)
			if rng.IntN(3) == 0 {
				w.del(k)
				delete(ref, k)
			} else {
				v := rng.Int()
				w.put(k, v)
				ref[k] = v
			}
			if w.len() != len(ref) {
				t.Fatalf("batch %d: writer len %d, want %d", batch, w.len(), len(ref))
			}
		}
		next := w.finish()
		if len(next.delta) == 0 && len(cur.delta) > 0 {
			folds++
		}
		cur = next
		snap := map[uint32]int{}
		for k, v := range ref {
			snap[k] = v
		}
		history = append(history, published{cur, snap})
	}
	if folds == 0 {
		t.Error("no fold happened")
	}
	for i, h := range history {
		if h.m.len() != len(h.ref) {
			t.Fatalf("version %d: len %d, want %d", i, h.m.len(), len(h.ref))
		}
		for k := range uint32(6000) {
			v, ok := h.m.get(k)
			rv, rok := h.ref[k]
			if ok != rok || v != rv {
				t.Fatalf("version %d key %d: %v %v, want %v %v", i, k, v, ok, rv, rok)
			}
		}
		n := 0
		h.m.each(func(k uint32, v int) bool {
			if h.ref[k] != v {
				t.Fatalf("version %d each: %d=%d", i, k, v)
			}
			n++
			return true
		})
		if n != len(h.ref) {
			t.Fatalf("version %d each saw %d entries, want %d", i, n, len(h.ref))
		}
	}
}
