package spf

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// NodeID is a router id: the name of an SG or SR, unique in the fabric.
type NodeID string

// MaxNodeIDLen bounds a NodeID so that a fragment's size stays predictable.
const MaxNodeIDLen = 255

// MaxMetric is the largest link or prefix metric, 24 bits like IS-IS wide
// metrics (RFC 5305). Distances are summed in uint64, so no path can overflow.
const MaxMetric = 1<<24 - 1

// Adjacency is one link from the LSP's origin to a neighbour. Two parallel
// links to the same neighbour are two adjacencies with different LinkIDs.
type Adjacency struct {
	Neighbor NodeID
	// Metric is the cost of the link in the origin → neighbour direction,
	// 1..MaxMetric. 0 is refused: with zero-cost links Dijkstra could pop a
	// node before all its equal-cost predecessors and lose ECMP next hops.
	Metric uint32
	// LinkID is the origin's local port. First hops are (neighbour, LinkID),
	// so the agent can map them to its ports directly.
	LinkID uint32
}

// Prefix is a service key prefix: the first Len bits of Key. Len is 32, 64, 96
// or 128 (DESIGN §2: matching happens at 32-bit boundaries only) and the bits
// after Len are zero, so every prefix has exactly one representation and can
// be a map key.
type Prefix struct {
	Key [16]byte
	Len uint8
}

// Valid reports why p is not a canonical prefix, or nil.
func (p Prefix) Valid() error {
	switch p.Len {
	case 32, 64, 96, 128:
	default:
		return fmt.Errorf("%w: %d (want 32, 64, 96 or 128)", ErrPrefixLen, p.Len)
	}
	for _, b := range p.Key[p.Len/8:] {
		if b != 0 {
			return fmt.Errorf("%w: %s has bits set after /%d", ErrPrefixBits, hexKey(p.Key), p.Len)
		}
	}
	return nil
}

// Compare orders prefixes by key, then by length.
func (p Prefix) Compare(q Prefix) int {
	if c := bytes.Compare(p.Key[:], q.Key[:]); c != 0 {
		return c
	}
	return cmp.Compare(p.Len, q.Len)
}

// String gives the segments inside the prefix in hex, dot-separated, and the
// length: "1a2b3c4d.00c0ffee/64".
func (p Prefix) String() string {
	var b strings.Builder
	n := int(p.Len) / 32
	if n == 0 || n > 4 {
		return hexKey(p.Key) + fmt.Sprintf("/%d", p.Len)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		fmt.Fprintf(&b, "%08x", binary.BigEndian.Uint32(p.Key[4*i:]))
	}
	fmt.Fprintf(&b, "/%d", p.Len)
	return b.String()
}

func hexKey(k [16]byte) string { return fmt.Sprintf("%x", k[:]) }

// PrefixReach is a prefix announced in an LSP, with the origin's metric for it.
// The metric is added to the distance to the origin; anycast services use it
// to prefer one SG over another.
type PrefixReach struct {
	Prefix Prefix
	Metric uint32
}

// LSP is one fragment of a node's link-state PDU. A node's state is the union
// of its fragments; the node takes part in SPF only while its fragment 0 is
// present and not purged (as in IS-IS), so a node that lost fragment 0 cannot
// leave half a view of itself behind.
type LSP struct {
	Origin   NodeID
	Fragment uint8
	Seq      uint32
	// RemainingLifetime in seconds: at origination, LSPLifetime; on receipt,
	// what the sender had left. 0 means purge.
	RemainingLifetime uint16
	// Purged marks a purge: no content, lifetime 0. An LSP with Purged set or
	// with RemainingLifetime 0 is a purge; its content is ignored.
	Purged      bool
	Adjacencies []Adjacency
	Prefixes    []PrefixReach
	// Opaque is kept with the fragment and handed back unchanged with it, never
	// interpreted: typically the origin's signature, so that the agent can
	// flood the fragment on without re-signing. It must not cover
	// RemainingLifetime, which changes on the way.
	Opaque []byte
}

// ID returns the fragment's identity.
func (l *LSP) ID() FragmentID { return FragmentID{l.Origin, l.Fragment} }

// FragmentID names one fragment of one origin, the LSDB's key.
type FragmentID struct {
	Origin   NodeID
	Fragment uint8
}

func (f FragmentID) String() string { return fmt.Sprintf("%s/%d", f.Origin, f.Fragment) }

func (f FragmentID) compare(g FragmentID) int {
	if c := strings.Compare(string(f.Origin), string(g.Origin)); c != 0 {
		return c
	}
	return cmp.Compare(f.Fragment, g.Fragment)
}

// Errors for malformed LSPs. Receive wraps them with the offending field, so
// the agent can count drops per reason with errors.Is and log the detail.
var (
	ErrNodeID        = errors.New("bad node id")
	ErrSeqZero       = errors.New("sequence number 0")
	ErrFragment      = errors.New("too many fragments")
	ErrTooLarge      = errors.New("fragment too large")
	ErrMetric        = errors.New("bad metric")
	ErrSelfAdjacency = errors.New("adjacency to itself")
	ErrDuplicate     = errors.New("duplicate entry")
	ErrPrefixLen     = errors.New("bad prefix length")
	ErrPrefixBits    = errors.New("prefix has bits set after its length")
	ErrNoSelf        = errors.New("no self node configured")
	ErrSeqExhausted  = errors.New("sequence number space exhausted")
	ErrNeedFull      = errors.New("incremental route calculation impossible: topology changed or no tree yet")
)

func validNodeID(id NodeID) bool { return id != "" && len(id) <= MaxNodeIDLen }

// validateHeader checks what every LSP, purge or not, must get right.
func (o *Options) validateHeader(l *LSP) error {
	if !validNodeID(l.Origin) {
		return fmt.Errorf("%w: origin %q", ErrNodeID, l.Origin)
	}
	if l.Seq == 0 {
		return fmt.Errorf("%w: %s", ErrSeqZero, l.ID())
	}
	if int(l.Fragment) >= o.MaxFragments {
		return fmt.Errorf("%w: %s, at most %d per origin", ErrFragment, l.ID(), o.MaxFragments)
	}
	return nil
}

// canonical validates the content of a non-purge LSP and returns sorted
// copies of its adjacencies and prefixes. Sorting makes the content hash and
// the comparison with the installed copy independent of the order the origin
// chose; copying keeps the database safe from a caller reusing its buffers.
func (o *Options) canonical(l *LSP) ([]Adjacency, []PrefixReach, error) {
	if len(l.Adjacencies) > o.MaxAdjacencies {
		return nil, nil, fmt.Errorf("%w: %s has %d adjacencies, at most %d", ErrTooLarge, l.ID(), len(l.Adjacencies), o.MaxAdjacencies)
	}
	if len(l.Prefixes) > o.MaxPrefixes {
		return nil, nil, fmt.Errorf("%w: %s has %d prefixes, at most %d", ErrTooLarge, l.ID(), len(l.Prefixes), o.MaxPrefixes)
	}
	for i, a := range l.Adjacencies {
		switch {
		case !validNodeID(a.Neighbor):
			return nil, nil, fmt.Errorf("%w: %s adjacency %d neighbour %q", ErrNodeID, l.ID(), i, a.Neighbor)
		case a.Neighbor == l.Origin:
			return nil, nil, fmt.Errorf("%w: %s adjacency %d", ErrSelfAdjacency, l.ID(), i)
		case a.Metric == 0 || a.Metric > MaxMetric:
			return nil, nil, fmt.Errorf("%w: %s adjacency %d to %s: %d (want 1..%d)", ErrMetric, l.ID(), i, a.Neighbor, a.Metric, MaxMetric)
		}
	}
	for i, p := range l.Prefixes {
		if err := p.Prefix.Valid(); err != nil {
			return nil, nil, fmt.Errorf("%s prefix %d: %w", l.ID(), i, err)
		}
		if p.Metric > MaxMetric {
			return nil, nil, fmt.Errorf("%w: %s prefix %s: %d (at most %d)", ErrMetric, l.ID(), p.Prefix, p.Metric, MaxMetric)
		}
	}
	adj := slices.Clone(l.Adjacencies)
	slices.SortFunc(adj, compareAdj)
	for i := 1; i < len(adj); i++ {
		if adj[i].Neighbor == adj[i-1].Neighbor && adj[i].LinkID == adj[i-1].LinkID {
			return nil, nil, fmt.Errorf("%w: %s adjacency to %s on link %d twice", ErrDuplicate, l.ID(), adj[i].Neighbor, adj[i].LinkID)
		}
	}
	pfx := slices.Clone(l.Prefixes)
	slices.SortFunc(pfx, func(a, b PrefixReach) int { return a.Prefix.Compare(b.Prefix) })
	for i := 1; i < len(pfx); i++ {
		if pfx[i].Prefix == pfx[i-1].Prefix {
			return nil, nil, fmt.Errorf("%w: %s prefix %s twice", ErrDuplicate, l.ID(), pfx[i].Prefix)
		}
	}
	return adj, pfx, nil
}

func compareAdj(a, b Adjacency) int {
	if c := strings.Compare(string(a.Neighbor), string(b.Neighbor)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.LinkID, b.LinkID); c != 0 {
		return c
	}
	return cmp.Compare(a.Metric, b.Metric)
}

// contentHash is FNV-1a (64 bits) over canonical content. It must be the same
// on every node and in every release (it breaks ties between copies with the
// same Seq, and travels in summaries), so it is spelled out here rather than
// taken from hash/maphash, which is seeded per process.
func contentHash(adj []Adjacency, pfx []PrefixReach) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	byte1 := func(b byte) { h ^= uint64(b); h *= prime }
	u32 := func(v uint32) {
		byte1(byte(v >> 24))
		byte1(byte(v >> 16))
		byte1(byte(v >> 8))
		byte1(byte(v))
	}
	u32(uint32(len(adj)))
	for _, a := range adj {
		u32(uint32(len(a.Neighbor)))
		for i := 0; i < len(a.Neighbor); i++ {
			byte1(a.Neighbor[i])
		}
		u32(a.Metric)
		u32(a.LinkID)
	}
	u32(uint32(len(pfx)))
	for _, p := range pfx {
		for _, b := range p.Prefix.Key {
			byte1(b)
		}
		byte1(p.Prefix.Len)
		u32(p.Metric)
	}
	if h == 0 {
		// 0 is what a purge carries; keep content distinguishable from it.
		h = 1
	}
	return h
}

// version is what decides which of two copies of a fragment is newer.
type version struct {
	seq    uint32
	purged bool
	hash   uint64 // 0 for a purge
}

// compareVersion returns +1 if a is newer than b, -1 if older, 0 if the same.
func compareVersion(a, b version) int {
	if c := cmp.Compare(a.seq, b.seq); c != 0 {
		return c
	}
	if a.purged != b.purged {
		if a.purged {
			return 1
		}
		return -1
	}
	if a.purged {
		return 0
	}
	return cmp.Compare(a.hash, b.hash)
}
