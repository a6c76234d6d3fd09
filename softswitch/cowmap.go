package softswitch

import (
	"maps"
	"math"
)

// cowMap is an immutable hash table built for a read-mostly data plane that
// still takes large write batches cheaply.
//
// It is a large base map plus a small delta map of the changes made since the
// base was built (tombstones for deletions). Both maps are immutable once the
// cowMap is published in a snapshot, so readers need no lock. A write batch
// copies only the delta (small) and folds the delta into a fresh base when it
// grows past a threshold, so writing k entries into a table of n costs about
// the delta's size per batch plus n amortized over the batches between folds,
// instead of n per batch for a plain copy-on-write map. The threshold
// sqrt(2·n·k) balances the two (a copied delta of ~d/2 per batch against a
// fold of n every d/k batches).
//
// A lookup is one probe of the delta (skipped when it is empty) and one of
// the base.
type cowMap[K comparable, V any] struct {
	base  map[K]V
	delta map[K]slot[V]
	n     int // live entries
}

type slot[V any] struct {
	v    V
	live bool // false: a tombstone hiding the base's entry
}

// minFold is the delta size below which a fold is never worth it.
const minFold = 1024

// get is the data plane's lookup.
func (m *cowMap[K, V]) get(k K) (V, bool) {
	if len(m.delta) != 0 {
		if s, ok := m.delta[k]; ok {
			return s.v, s.live
		}
	}
	v, ok := m.base[k]
	return v, ok
}

// len is the number of live entries.
func (m *cowMap[K, V]) len() int { return m.n }

// each calls f for every live entry, in no particular order, until f returns
// false.
func (m *cowMap[K, V]) each(f func(K, V) bool) {
	for k, s := range m.delta {
		if s.live && !f(k, s.v) {
			return
		}
	}
	for k, v := range m.base {
		if _, shadowed := m.delta[k]; shadowed {
			continue
		}
		if !f(k, v) {
			return
		}
	}
}

// cowWriter stages the writes of one batch into a cowMap. The source map is
// never modified: finish returns the new map, and dropping the writer
// discards the batch.
type cowWriter[K comparable, V any] struct {
	src    *cowMap[K, V]
	delta  map[K]slot[V] // owned copy of src.delta, made on the first write
	n      int
	writes int
}

func (w *cowWriter[K, V]) init(src *cowMap[K, V]) {
	*w = cowWriter[K, V]{src: src, n: src.n}
}

func (w *cowWriter[K, V]) get(k K) (V, bool) {
	if w.delta != nil {
		if s, ok := w.delta[k]; ok {
			return s.v, s.live
		}
		v, ok := w.src.base[k]
		return v, ok
	}
	return w.src.get(k)
}

func (w *cowWriter[K, V]) own() {
	if w.delta == nil {
		w.delta = make(map[K]slot[V], len(w.src.delta)+64)
		maps.Copy(w.delta, w.src.delta)
	}
}

// put inserts or replaces k.
func (w *cowWriter[K, V]) put(k K, v V) {
	if _, ok := w.get(k); !ok {
		w.n++
	}
	w.own()
	w.delta[k] = slot[V]{v: v, live: true}
	w.writes++
}

// del removes k if present.
func (w *cowWriter[K, V]) del(k K) {
	if _, ok := w.get(k); !ok {
		return
	}
	w.n--
	w.own()
	if _, inBase := w.src.base[k]; inBase {
		w.delta[k] = slot[V]{}
	} else {
		delete(w.delta, k)
	}
	w.writes++
}

func (w *cowWriter[K, V]) len() int { return w.n }

// each calls f for every live entry of the staged map until f returns false.
func (w *cowWriter[K, V]) each(f func(K, V) bool) {
	if w.delta == nil {
		w.src.each(f)
		return
	}
	view := cowMap[K, V]{base: w.src.base, delta: w.delta, n: w.n}
	view.each(f)
}

// dirty reports whether the batch changed anything.
func (w *cowWriter[K, V]) dirty() bool { return w.delta != nil }

// finish returns the map with the batch applied, folding the delta into a new
// base when it has grown past the threshold.
func (w *cowWriter[K, V]) finish() cowMap[K, V] {
	if w.delta == nil {
		return *w.src
	}
	base := w.src.base
	limit := foldThreshold(len(base), w.writes)
	if len(w.delta) <= limit {
		return cowMap[K, V]{base: base, delta: w.delta, n: w.n}
	}
	nb := make(map[K]V, w.n)
	for k, v := range base {
		if _, changed := w.delta[k]; !changed {
			nb[k] = v
		}
	}
	for k, s := range w.delta {
		if s.live {
			nb[k] = s.v
		}
	}
	return cowMap[K, V]{base: nb, n: w.n}
}

// foldThreshold is the delta size past which the delta is folded into the
// base: sqrt(2·n·k) for a base of n and batches of k writes, at least minFold.
func foldThreshold(n, k int) int {
	if k < 1 {
		k = 1
	}
	t := int(math.Sqrt(2 * float64(n) * float64(k)))
	return max(t, minFold)
}
