package spa

import (
	"sync"
	"time"
)

// replayMemory remembers the challenges SPA has accepted a proof for, for as
// long as such a challenge could still pass the freshness check: a
// challenge is accepted only while now-window <= issued <= now+skew, so one
// first seen at s is stale for good after s+window+skew. Entries therefore
// expire in insertion order, and a FIFO queue drops them in O(1) each.
// Memory is bounded by max: when it is full, new challenges are refused
// (fail closed) instead of forgetting live ones, which would open a replay
// window.
type replayMemory struct {
	hold time.Duration // window + skew
	max  int

	mu    sync.Mutex
	seen  map[[32]byte]struct{}
	queue []replayEntry // insertion order; head at index head
	head  int
}

type replayEntry struct {
	nonce  [32]byte
	forget time.Time
}

func newReplayMemory(hold time.Duration, max int) *replayMemory {
	return &replayMemory{hold: hold, max: max, seen: make(map[[32]byte]struct{})}
}

type replayVerdict int

const (
	replayFresh replayVerdict = iota
	replaySeen
	replayFull
)

// check records nonce at now, or reports it as seen before, or the memory as
// full.
func (m *replayMemory) check(nonce [32]byte, now time.Time) replayVerdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	if _, ok := m.seen[nonce]; ok {
		return replaySeen
	}
	if len(m.seen) >= m.max {
		return replayFull
	}
	m.seen[nonce] = struct{}{}
	m.queue = append(m.queue, replayEntry{nonce: nonce, forget: now.Add(m.hold)})
	return replayFresh
}

func (m *replayMemory) expire(now time.Time) {
	for m.head < len(m.queue) && !now.Before(m.queue[m.head].forget) {
		delete(m.seen, m.queue[m.head].nonce)
		m.queue[m.head] = replayEntry{}
		m.head++
	}
	// Compact once the dead head is half the slice, so the queue's memory
	// follows the live entries.
	if m.head > 0 && m.head*2 >= len(m.queue) {
		n := copy(m.queue, m.queue[m.head:])
		m.queue = m.queue[:n]
		m.head = 0
	}
}

func (m *replayMemory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}
