package spf

import (
	"math"
	"slices"
	"time"
)

// Options configures an LSDB. Zero fields take the defaults in brackets.
type Options struct {
	// Self is this node. LSPs of Self are handled by the own-LSP rules (see
	// Receive) and originated with Originate. Empty makes a passive observer
	// that treats every LSP alike.
	Self NodeID
	// LSPLifetime is the RemainingLifetime of the LSPs Self originates, in
	// seconds [1200, IS-IS MaxAge].
	LSPLifetime uint16
	// RefreshInterval is how long after origination Expire re-originates one
	// of Self's fragments with the next Seq [3/4 of LSPLifetime, which is
	// IS-IS's 900 s for 1200 s]. It must be shorter than LSPLifetime, or the
	// default is used.
	RefreshInterval time.Duration
	// ZeroAgeLifetime is how long a purge header is kept after its content
	// went, so the purge floods and a late copy of the old content is
	// recognised as older [60 s].
	ZeroAgeLifetime time.Duration
	// MaxFragments bounds Fragment: fragment numbers must be below it
	// [256, every uint8].
	MaxFragments int
	// MaxAdjacencies and MaxPrefixes bound one fragment's content, a guard
	// against a node that announces absurd amounts [1024, 4096]. The wire
	// format bounds a fragment much more tightly (1,400-byte frames); these
	// only keep a buggy origin from exhausting memory.
	MaxAdjacencies int
	MaxPrefixes    int
	// Seal, when set, is called on every LSP the LSDB originates for Self
	// (Originate, PurgeOwn, refreshes, re-originations) before it is stored
	// and returned; it sets Opaque, typically to the signature. It must be a
	// pure function: no I/O, no clock.
	Seal func(*LSP)
}

func (o Options) withDefaults() Options {
	if o.LSPLifetime == 0 {
		o.LSPLifetime = 1200
	}
	life := time.Duration(o.LSPLifetime) * time.Second
	if o.RefreshInterval <= 0 || o.RefreshInterval >= life {
		o.RefreshInterval = life * 3 / 4
	}
	if o.ZeroAgeLifetime <= 0 {
		o.ZeroAgeLifetime = 60 * time.Second
	}
	if o.MaxFragments <= 0 || o.MaxFragments > 256 {
		o.MaxFragments = 256
	}
	if o.MaxAdjacencies <= 0 {
		o.MaxAdjacencies = 1024
	}
	if o.MaxPrefixes <= 0 {
		o.MaxPrefixes = 4096
	}
	return o
}

// LSDB is the link-state database: the newest copy of every (origin,
// fragment), ageing, purges, database summaries, and the graph and prefix
// index that RIB computes routes from. It remembers what changed since the
// last TakeChanges, so the route computation can tell a topology change (full
// SPF) from a prefix-only change (partial route calculation).
type LSDB struct {
	opts Options

	ids   map[NodeID]int32
	nodes []*node // by index; nil for a freed index
	free  []int32
	nfrag int

	// The prefix index: every prefix announced by any fragment, with its
	// origins, in a dense slice so that a full route computation walks
	// contiguous memory instead of a map (at 100k prefixes the map's cache
	// misses cost more than Dijkstra).
	pfxIDs  map[Prefix]int32
	pfxs    []pfxSlot
	pfxFree []int32

	// topoGen counts topology changes; a RIB remembers the value its tree was
	// computed at and refuses to reuse the tree once it moved.
	topoGen uint64

	pendTopology bool
	pendOrigins  map[NodeID]struct{}
	pendPrefixes map[Prefix]struct{}
}

// node is one router: its fragments and the SPF graph's view of it.
type node struct {
	id    NodeID
	idx   int32
	frags []*fragment // sorted by number
	// active: fragment 0 is present and not purged, so the node is in SPF.
	active bool
	// edges is the union of the adjacencies of the node's live fragments,
	// sorted by (to, link); twoWay caches the two-way check so that SPF reads
	// one bool per edge instead of searching the neighbour's list.
	edges []edge
	nbrs  []int32 // distinct neighbours, sorted
	// refs counts the nodes that list this one as a neighbour; a node with
	// neither fragments nor refs is freed.
	refs int32
	// one is []NodeID{id}, shared by every route with this single origin.
	one []NodeID
}

type edge struct {
	to     int32
	metric uint32
	link   uint32
	twoWay bool
}

type fragment struct {
	num          uint8
	ver          version
	expiresAt    time.Duration // content: when the lifetime runs out
	removeAt     time.Duration // purge header: when it is dropped
	originatedAt time.Duration // Self's content: for the refresh
	adj          []Adjacency   // canonical, nil when purged
	nbr          []int32       // adj[i].Neighbor's node index
	pfx          []PrefixReach // canonical, nil when purged
	opaque       []byte
}

// pfxSlot is one prefix of the index. The first origin is kept inline: most
// prefixes have one, and reading it then costs no pointer chase.
type pfxSlot struct {
	prefix Prefix
	n      int32 // number of origins; 0 for a free slot
	o0     pfxOrigin
	more   []pfxOrigin
}

type pfxOrigin struct {
	node   int32
	frag   uint8
	metric uint32
}

// New returns an empty LSDB.
func New(opts Options) *LSDB {
	return &LSDB{
		opts:         opts.withDefaults(),
		ids:          make(map[NodeID]int32),
		pfxIDs:       make(map[Prefix]int32),
		pendOrigins:  make(map[NodeID]struct{}),
		pendPrefixes: make(map[Prefix]struct{}),
	}
}

// Self returns the node the LSDB belongs to ("" for an observer).
func (db *LSDB) Self() NodeID { return db.opts.Self }

// Options returns the options in effect, defaults filled in.
func (db *LSDB) Options() Options { return db.opts }

// Len returns the number of fragments held, purge headers included.
func (db *LSDB) Len() int { return db.nfrag }

// Verdict is what Receive decided about an LSP.
type Verdict uint8

const (
	// Invalid: malformed (Result.Err says why). Drop it and count.
	Invalid Verdict = iota
	// Newer: installed. Acknowledge it and flood it to every adjacency but
	// the one it came from.
	Newer
	// Same: we hold this very copy (or it is a purge of a fragment we do not
	// hold). Acknowledge it; do not flood it.
	Same
	// Older: we hold a newer copy, Result.Ours. Send it back to the sender.
	Older
	// Reoriginated: the LSP is Self's own and newer than what Self holds (a
	// copy from before a restart, or a purge of a fragment Self still
	// announces). It was not installed; Self's fragment was re-originated
	// above it, or purged if Self does not hold it. Flood Result.Ours to
	// every adjacency.
	Reoriginated
)

var verdictNames = [...]string{"invalid", "newer", "same", "older", "reoriginated"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict(?)"
}

// Result tells the agent what to do with an LSP it received.
type Result struct {
	Verdict Verdict
	// Err is set with Invalid (and when an own re-origination is impossible,
	// ErrSeqExhausted).
	Err error
	// Ours is our copy, with its current remaining lifetime: for Older, to
	// send back; for Reoriginated, to flood. Its slices are shared with the
	// database: do not modify them.
	Ours *LSP
	// Topology: the SPF graph changed (adjacencies, or a node entering or
	// leaving SPF). Prefixes: the origin's prefixes changed.
	Topology, Prefixes bool
}

// Receive processes an LSP from a neighbour at time now.
//
// The rules are those of IS-IS (ISO 10589 §7.3.16): a newer copy is
// installed and flooded, the same copy acknowledged, an older one answered
// with ours. A purge of a fragment we do not hold is acknowledged and not
// stored. Copies of Self's fragments are never installed from outside: a newer
// one makes Self re-originate above it (or purge it, if Self does not hold
// that fragment), which is how a restarted node catches up with its previous
// sequence numbers. A refresh (new Seq, same content) changes nothing for SPF.
func (db *LSDB) Receive(in LSP, now time.Duration) Result {
	if err := db.opts.validateHeader(&in); err != nil {
		return Result{Verdict: Invalid, Err: err}
	}
	nf := &fragment{num: in.Fragment}
	if in.Purged || in.RemainingLifetime == 0 {
		nf.ver = version{seq: in.Seq, purged: true}
		nf.removeAt = now + db.opts.ZeroAgeLifetime
	} else {
		adj, pfx, err := db.opts.canonical(&in)
		if err != nil {
			return Result{Verdict: Invalid, Err: err}
		}
		nf.adj, nf.pfx = adj, pfx
		nf.ver = version{seq: in.Seq, hash: contentHash(adj, pfx)}
		nf.expiresAt = now + time.Duration(in.RemainingLifetime)*time.Second
	}

	var cur *fragment
	n := db.lookup(in.Origin)
	if n != nil {
		cur = n.frag(in.Fragment)
	}
	own := db.opts.Self != "" && in.Origin == db.opts.Self

	if cur == nil {
		if nf.ver.purged {
			return Result{Verdict: Same}
		}
		if own {
			// Someone holds a fragment of ours that we do not announce:
			// purge it. Purges win at equal Seq, so in.Seq is enough.
			return db.reoriginate(in.Fragment, in.Seq, true, nil, now)
		}
		if n == nil {
			n = db.node(in.Origin)
		}
		nf.opaque = slices.Clone(in.Opaque)
		topo, pfx := db.replace(n, nf, true)
		return Result{Verdict: Newer, Topology: topo, Prefixes: pfx}
	}

	switch compareVersion(nf.ver, cur.ver) {
	case 0:
		return Result{Verdict: Same}
	case -1:
		ours := db.export(n, cur, now)
		return Result{Verdict: Older, Ours: &ours}
	}
	if own {
		switch {
		case cur.ver.purged && nf.ver.purged:
			// A newer purge of a fragment we purged too: nothing of ours
			// to defend; install it like any other.
		case cur.ver.purged:
			// Old content of a fragment we purged: purge it again at its
			// Seq (purges win at equal Seq).
			return db.reoriginate(in.Fragment, in.Seq, true, nil, now)
		case in.Seq == math.MaxUint32:
			return Result{Verdict: Invalid, Err: ErrSeqExhausted}
		default:
			// A copy from before a restart, or someone purged our
			// fragment: announce ours again, above it.
			return db.reoriginate(in.Fragment, in.Seq+1, false, cur, now)
		}
	}
	nf.opaque = slices.Clone(in.Opaque) // the caller may reuse its buffer
	topo, pfx := db.replace(n, nf, !sameAdj(cur, nf))
	return Result{Verdict: Newer, Topology: topo, Prefixes: pfx}
}

// reoriginate installs Self's fragment num at seq: a purge, or the content of
// cur under a new Seq.
func (db *LSDB) reoriginate(num uint8, seq uint32, purge bool, cur *fragment, now time.Duration) Result {
	l := LSP{Origin: db.opts.Self, Fragment: num, Seq: seq}
	if purge {
		l.Purged = true
	} else {
		l.RemainingLifetime = db.opts.LSPLifetime
		l.Adjacencies, l.Prefixes = cur.adj, cur.pfx
	}
	out, res := db.originate(l, cur != nil && !purge, now)
	res.Verdict = Reoriginated
	res.Ours = &out
	return res
}

// originate stores one of Self's fragments, already canonical, sealing it
// first. sameContent spares the graph update for a refresh.
func (db *LSDB) originate(l LSP, sameContent bool, now time.Duration) (LSP, Result) {
	if db.opts.Seal != nil {
		db.opts.Seal(&l)
	}
	nf := &fragment{num: l.Fragment, opaque: l.Opaque, originatedAt: now}
	if l.Purged {
		nf.ver = version{seq: l.Seq, purged: true}
		nf.removeAt = now + db.opts.ZeroAgeLifetime
	} else {
		nf.adj, nf.pfx = l.Adjacencies, l.Prefixes
		nf.ver = version{seq: l.Seq, hash: contentHash(nf.adj, nf.pfx)}
		nf.expiresAt = now + time.Duration(l.RemainingLifetime)*time.Second
	}
	n := db.node(l.Origin)
	if sameContent {
		if cur := n.frag(l.Fragment); cur != nil {
			nf.nbr = cur.nbr
		}
	}
	topo, pfx := db.replace(n, nf, !sameContent)
	return l, Result{Verdict: Newer, Topology: topo, Prefixes: pfx}
}

// Originate installs a new version of Self's fragment frag with the given
// content, the next Seq and a full lifetime, and returns it (sealed) to
// flood. The agent calls it whenever its adjacencies or prefixes change; the
// content is validated like a received LSP's. The returned LSP's slices are
// the database's: do not modify them.
func (db *LSDB) Originate(frag uint8, adj []Adjacency, pfx []PrefixReach, now time.Duration) (LSP, Result) {
	if db.opts.Self == "" {
		return LSP{}, Result{Verdict: Invalid, Err: ErrNoSelf}
	}
	l := LSP{Origin: db.opts.Self, Fragment: frag, Seq: 1, RemainingLifetime: db.opts.LSPLifetime,
		Adjacencies: adj, Prefixes: pfx}
	if n := db.lookup(db.opts.Self); n != nil {
		if cur := n.frag(frag); cur != nil {
			if cur.ver.seq == math.MaxUint32 {
				return LSP{}, Result{Verdict: Invalid, Err: ErrSeqExhausted}
			}
			l.Seq = cur.ver.seq + 1
		}
	}
	if err := db.opts.validateHeader(&l); err != nil {
		return LSP{}, Result{Verdict: Invalid, Err: err}
	}
	a, p, err := db.opts.canonical(&l)
	if err != nil {
		return LSP{}, Result{Verdict: Invalid, Err: err}
	}
	l.Adjacencies, l.Prefixes = a, p
	return db.originate(l, false, now)
}

// PurgeOwn purges Self's fragment frag (one the agent no longer needs, after
// its content shrank) and returns the purge to flood. ok is false when Self
// holds no live fragment frag.
func (db *LSDB) PurgeOwn(frag uint8, now time.Duration) (LSP, Result, bool) {
	n := db.lookup(db.opts.Self)
	if db.opts.Self == "" || n == nil {
		return LSP{}, Result{}, false
	}
	cur := n.frag(frag)
	if cur == nil || cur.ver.purged {
		return LSP{}, Result{}, false
	}
	l, res := db.originate(LSP{Origin: db.opts.Self, Fragment: frag, Seq: cur.ver.seq, Purged: true}, false, now)
	return l, res, true
}

// Get returns the fragment id as it would be flooded now: with its current
// remaining lifetime (0 for a purge header). Its slices are shared with the
// database: do not modify them.
func (db *LSDB) Get(id FragmentID, now time.Duration) (LSP, bool) {
	n := db.lookup(id.Origin)
	if n == nil {
		return LSP{}, false
	}
	f := n.frag(id.Fragment)
	if f == nil {
		return LSP{}, false
	}
	return db.export(n, f, now), true
}

func (db *LSDB) export(n *node, f *fragment, now time.Duration) LSP {
	return LSP{
		Origin:            n.id,
		Fragment:          f.num,
		Seq:               f.ver.seq,
		RemainingLifetime: remaining(f, now),
		Purged:            f.ver.purged,
		Adjacencies:       f.adj,
		Prefixes:          f.pfx,
		Opaque:            f.opaque,
	}
}

// remaining is the lifetime left in whole seconds, rounded up so that a
// fragment received with L seconds reports L at once and 0 exactly when it
// expires.
func remaining(f *fragment, now time.Duration) uint16 {
	if f.ver.purged || now >= f.expiresAt {
		return 0
	}
	s := (f.expiresAt - now + time.Second - 1) / time.Second
	if s > math.MaxUint16 {
		return math.MaxUint16
	}
	return uint16(s)
}

// ExpireResult says what Expire did. Every LSP in it is to be flooded to
// every adjacency.
type ExpireResult struct {
	// Purged: fragments whose lifetime ran out, now purge headers.
	Purged []LSP
	// Refreshed: Self's fragments re-originated with the next Seq.
	Refreshed []LSP
	// Removed: purge headers dropped after ZeroAgeLifetime.
	Removed []FragmentID
	// Topology and Prefixes as in Result.
	Topology, Prefixes bool
	// Err is ErrSeqExhausted when one of Self's fragments could not be
	// refreshed; it will expire.
	Err error
}

// Expire ages the database to now: it refreshes Self's fragments that are
// due, turns fragments whose remaining lifetime reached 0 into purge headers
// (their content leaves SPF at once), and drops purge headers older than
// ZeroAgeLifetime. The cost is linear in the number of fragments; call it
// at NextDeadline, or once a second.
func (db *LSDB) Expire(now time.Duration) ExpireResult {
	var res ExpireResult
	for i := 0; i < len(db.nodes); i++ {
		n := db.nodes[i]
		if n == nil {
			continue
		}
		own := db.opts.Self != "" && n.id == db.opts.Self
		for _, f := range slices.Clone(n.frags) {
			switch {
			case f.ver.purged:
				if now >= f.removeAt {
					db.remove(n, f.num)
					res.Removed = append(res.Removed, FragmentID{n.id, f.num})
				}
				continue
			case own && now-f.originatedAt >= db.opts.RefreshInterval:
				if f.ver.seq == math.MaxUint32 {
					res.Err = ErrSeqExhausted
					break
				}
				l, _ := db.originate(LSP{Origin: n.id, Fragment: f.num, Seq: f.ver.seq + 1,
					RemainingLifetime: db.opts.LSPLifetime, Adjacencies: f.adj, Prefixes: f.pfx}, true, now)
				res.Refreshed = append(res.Refreshed, l)
				continue
			}
			if now >= f.expiresAt {
				nf := &fragment{num: f.num, ver: version{seq: f.ver.seq, purged: true},
					removeAt: now + db.opts.ZeroAgeLifetime}
				topo, pfx := db.replace(n, nf, true)
				res.Topology = res.Topology || topo
				res.Prefixes = res.Prefixes || pfx
				res.Purged = append(res.Purged, db.export(n, nf, now))
			}
		}
	}
	byID := func(a, b LSP) int { return a.ID().compare(b.ID()) }
	slices.SortFunc(res.Purged, byID)
	slices.SortFunc(res.Refreshed, byID)
	slices.SortFunc(res.Removed, FragmentID.compare)
	return res
}

// NextDeadline returns the earliest time at which Expire has something to
// do, so the agent can arm one timer; ok is false for an empty database.
func (db *LSDB) NextDeadline() (t time.Duration, ok bool) {
	t = math.MaxInt64
	for _, n := range db.nodes {
		if n == nil {
			continue
		}
		own := db.opts.Self != "" && n.id == db.opts.Self
		for _, f := range n.frags {
			d := f.expiresAt
			switch {
			case f.ver.purged:
				d = f.removeAt
			case own:
				d = min(d, f.originatedAt+db.opts.RefreshInterval)
			}
			if d < t {
				t, ok = d, true
			}
		}
	}
	return t, ok
}

// Summary describes one fragment in a database summary (IS-IS CSNP entry).
type Summary struct {
	Origin            NodeID
	Fragment          uint8
	Seq               uint32
	RemainingLifetime uint16 // 0: purge
	// Hash is the content hash that breaks ties at equal Seq; 0 for a purge.
	Hash uint64
}

// ID returns the summarised fragment's identity.
func (s Summary) ID() FragmentID { return FragmentID{s.Origin, s.Fragment} }

func (s Summary) version() version {
	if s.RemainingLifetime == 0 {
		return version{seq: s.Seq, purged: true}
	}
	return version{seq: s.Seq, hash: s.Hash}
}

// Summary lists every fragment held, purge headers included (so that purges
// reach a neighbour during sync), sorted by origin and fragment.
func (db *LSDB) Summary(now time.Duration) []Summary {
	out := make([]Summary, 0, db.nfrag)
	for _, n := range db.nodes {
		if n == nil {
			continue
		}
		for _, f := range n.frags {
			out = append(out, Summary{Origin: n.id, Fragment: f.num, Seq: f.ver.seq,
				RemainingLifetime: remaining(f, now), Hash: f.ver.hash})
		}
	}
	slices.SortFunc(out, func(a, b Summary) int { return a.ID().compare(b.ID()) })
	return out
}

// SummaryOf is the summary of one fragment, as Summary would list it.
func (db *LSDB) SummaryOf(id FragmentID, now time.Duration) (Summary, bool) {
	n := db.lookup(id.Origin)
	if n == nil {
		return Summary{}, false
	}
	f := n.frag(id.Fragment)
	if f == nil {
		return Summary{}, false
	}
	return Summary{Origin: n.id, Fragment: f.num, Seq: f.ver.seq, RemainingLifetime: remaining(f, now), Hash: f.ver.hash}, true
}

// SyncPlan is what database synchronisation with a neighbour must exchange.
type SyncPlan struct {
	// Request: fragments the neighbour holds newer than ours, or that we
	// lack (IS-IS PSNP request).
	Request []FragmentID
	// Send: fragments we hold newer than the neighbour's, or that it lacks;
	// flood them to it (Get gives each one).
	Send []FragmentID
}

// Compare compares a neighbour's complete summary with the database. A purge
// in theirs of a fragment we do not hold needs nothing, and neither does one
// of our purge headers that they lack.
func (db *LSDB) Compare(theirs []Summary) SyncPlan { return db.CompareRange(theirs, nil) }

// CompareRange is Compare for a summary that covers only the fragments for
// which in reports true (one DB_SUMMARY message of several, each with its own
// range); fragments outside it are not offered. A nil in covers everything.
func (db *LSDB) CompareRange(theirs []Summary, in func(FragmentID) bool) SyncPlan {
	var plan SyncPlan
	seen := make(map[FragmentID]struct{}, len(theirs))
	for _, s := range theirs {
		id := s.ID()
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		var cur *fragment
		if n := db.lookup(s.Origin); n != nil {
			cur = n.frag(s.Fragment)
		}
		if cur == nil {
			if s.RemainingLifetime != 0 {
				plan.Request = append(plan.Request, id)
			}
			continue
		}
		switch compareVersion(s.version(), cur.ver) {
		case 1:
			plan.Request = append(plan.Request, id)
		case -1:
			plan.Send = append(plan.Send, id)
		}
	}
	for _, n := range db.nodes {
		if n == nil {
			continue
		}
		for _, f := range n.frags {
			id := FragmentID{n.id, f.num}
			if in != nil && !in(id) {
				continue
			}
			if _, ok := seen[id]; !ok && !f.ver.purged {
				plan.Send = append(plan.Send, id)
			}
		}
	}
	slices.SortFunc(plan.Request, FragmentID.compare)
	slices.SortFunc(plan.Send, FragmentID.compare)
	return plan
}

// Covers reports whether s describes the copy of its fragment that the
// database holds, or a newer one: an acknowledgement that the neighbour has
// what we would send it. A fragment we do not hold is covered by anything.
func (db *LSDB) Covers(s Summary) bool {
	n := db.lookup(s.Origin)
	if n == nil {
		return true
	}
	cur := n.frag(s.Fragment)
	return cur == nil || compareVersion(s.version(), cur.ver) >= 0
}

// Changes is what changed in the database since the last TakeChanges.
type Changes struct {
	// Topology: the SPF graph changed; routes need a full SPF.
	Topology bool
	// Origins whose prefixes changed, sorted.
	Origins []NodeID
	// Prefixes whose origins or metrics changed, in no particular order.
	// Without a topology change, they are the only routes that can differ.
	Prefixes []Prefix
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return !c.Topology && len(c.Prefixes) == 0 }

// Merge adds o to c, for a caller that takes changes more often than it
// computes routes.
func (c *Changes) Merge(o Changes) {
	c.Topology = c.Topology || o.Topology
	for _, id := range o.Origins {
		if i, found := slices.BinarySearch(c.Origins, id); !found {
			c.Origins = slices.Insert(c.Origins, i, id)
		}
	}
	if len(c.Prefixes) == 0 {
		c.Prefixes = slices.Clone(o.Prefixes)
		return
	}
	seen := make(map[Prefix]struct{}, len(c.Prefixes))
	for _, p := range c.Prefixes {
		seen[p] = struct{}{}
	}
	for _, p := range o.Prefixes {
		if _, dup := seen[p]; !dup {
			seen[p] = struct{}{}
			c.Prefixes = append(c.Prefixes, p)
		}
	}
}

// PendingTopology reports whether a change of the SPF graph waits for
// TakeChanges.
func (db *LSDB) PendingTopology() bool { return db.pendTopology }

// TakeChanges returns what changed since the previous call and forgets it.
func (db *LSDB) TakeChanges() Changes {
	c := Changes{Topology: db.pendTopology}
	for id := range db.pendOrigins {
		c.Origins = append(c.Origins, id)
	}
	slices.Sort(c.Origins)
	if len(db.pendPrefixes) > 0 {
		c.Prefixes = make([]Prefix, 0, len(db.pendPrefixes))
		for p := range db.pendPrefixes {
			c.Prefixes = append(c.Prefixes, p)
		}
	}
	db.pendTopology = false
	db.pendOrigins = emptied(db.pendOrigins)
	db.pendPrefixes = emptied(db.pendPrefixes)
	return c
}

// emptied returns m empty. Clearing a map costs its capacity, not its
// length: a map that once held a whole database (the changes of the initial
// sync) is replaced, or every later small clear would cost as much.
func emptied[K comparable, V any](m map[K]V) map[K]V {
	switch {
	case len(m) == 0:
		return m
	case len(m) > 64:
		return make(map[K]V)
	}
	clear(m)
	return m
}

func (db *LSDB) lookup(id NodeID) *node {
	if i, ok := db.ids[id]; ok {
		return db.nodes[i]
	}
	return nil
}

// node returns id's node, creating it.
func (db *LSDB) node(id NodeID) *node {
	if n := db.lookup(id); n != nil {
		return n
	}
	var i int32
	if k := len(db.free); k > 0 {
		i, db.free = db.free[k-1], db.free[:k-1]
	} else {
		i = int32(len(db.nodes))
		db.nodes = append(db.nodes, nil)
	}
	n := &node{id: id, idx: i, one: []NodeID{id}}
	db.nodes[i] = n
	db.ids[id] = i
	return n
}

// maybeFree forgets a node nothing refers to any more, so that a stream of
// invented neighbour names cannot grow the database for ever.
func (db *LSDB) maybeFree(n *node) {
	if n == nil || len(n.frags) > 0 || n.refs > 0 || n.id == db.opts.Self {
		return
	}
	delete(db.ids, n.id)
	db.nodes[n.idx] = nil
	db.free = append(db.free, n.idx)
}

func (n *node) fragIndex(num uint8) (int, bool) {
	return slices.BinarySearchFunc(n.frags, num, func(f *fragment, num uint8) int { return int(f.num) - int(num) })
}

func (n *node) frag(num uint8) *fragment {
	if i, ok := n.fragIndex(num); ok {
		return n.frags[i]
	}
	return nil
}

func sameAdj(a, b *fragment) bool {
	return slices.Equal(a.adj, b.adj)
}

// replace installs nf as n's fragment nf.num and updates the graph and the
// prefix index. adjChanged false promises that nf's adjacencies equal the
// installed ones (a refresh), which spares the graph update.
func (db *LSDB) replace(n *node, nf *fragment, adjChanged bool) (topo, pfx bool) {
	i, found := n.fragIndex(nf.num)
	var oldPfx []PrefixReach
	if found {
		oldPfx = n.frags[i].pfx
		if !adjChanged {
			nf.nbr = n.frags[i].nbr
		}
		n.frags[i] = nf
	} else {
		n.frags = slices.Insert(n.frags, i, nf)
		db.nfrag++
	}
	if adjChanged && nf.nbr == nil && len(nf.adj) > 0 {
		nf.nbr = make([]int32, len(nf.adj))
		for j, a := range nf.adj {
			m := db.node(a.Neighbor)
			nf.nbr[j] = m.idx
			// Share the node's copy of the name: a decoded LSP brings its
			// own string for every adjacency, 730k of them at 10k nodes.
			nf.adj[j].Neighbor = m.id
		}
	}
	pfx = db.updatePrefixes(n, nf.num, oldPfx, nf.pfx)

	wasActive := n.active
	n.active = n.frags[0].num == 0 && !n.frags[0].ver.purged
	if adjChanged && db.rebuildEdges(n) && (wasActive || n.active) {
		topo = true
	}
	if wasActive != n.active {
		topo = true
	}
	if topo {
		db.topoGen++
		db.pendTopology = true
	}
	return topo, pfx
}

// remove drops n's fragment num, a purge header (so no content goes with it).
func (db *LSDB) remove(n *node, num uint8) {
	i, found := n.fragIndex(num)
	if !found {
		return
	}
	n.frags = slices.Delete(n.frags, i, i+1)
	db.nfrag--
	db.maybeFree(n)
}

// updatePrefixes moves the prefix index from old to new, both canonical (the
// prefixes of n's fragment num), and marks what changed.
func (db *LSDB) updatePrefixes(n *node, num uint8, old, new []PrefixReach) bool {
	changed := false
	mark := func(p Prefix) {
		db.pendPrefixes[p] = struct{}{}
		changed = true
	}
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		var c int
		switch {
		case i == len(old):
			c = 1
		case j == len(new):
			c = -1
		default:
			c = old[i].Prefix.Compare(new[j].Prefix)
		}
		switch {
		case c < 0: // withdrawn
			db.removeOrigin(old[i].Prefix, n.idx, num)
			mark(old[i].Prefix)
			i++
		case c > 0: // announced
			db.addOrigin(new[j].Prefix, pfxOrigin{node: n.idx, frag: num, metric: new[j].Metric})
			mark(new[j].Prefix)
			j++
		default:
			if old[i].Metric != new[j].Metric {
				p := new[j].Prefix
				*db.pfxs[db.pfxIDs[p]].find(n.idx, num) = pfxOrigin{node: n.idx, frag: num, metric: new[j].Metric}
				mark(p)
			}
			i++
			j++
		}
	}
	if changed {
		db.pendOrigins[n.id] = struct{}{}
	}
	return changed
}

func (db *LSDB) addOrigin(p Prefix, o pfxOrigin) {
	id, ok := db.pfxIDs[p]
	if !ok {
		if k := len(db.pfxFree); k > 0 {
			id, db.pfxFree = db.pfxFree[k-1], db.pfxFree[:k-1]
		} else {
			id = int32(len(db.pfxs))
			db.pfxs = append(db.pfxs, pfxSlot{})
		}
		s := &db.pfxs[id]
		*s = pfxSlot{prefix: p, n: 1, o0: o}
		db.pfxIDs[p] = id
		return
	}
	s := &db.pfxs[id]
	s.more = append(s.more, o)
	s.n++
}

func (db *LSDB) removeOrigin(p Prefix, node int32, frag uint8) {
	id := db.pfxIDs[p]
	s := &db.pfxs[id]
	o := s.find(node, frag)
	if k := len(s.more); k > 0 {
		*o = s.more[k-1]
		s.more = s.more[:k-1]
		s.n--
		return
	}
	s.n, s.more = 0, nil
	delete(db.pfxIDs, p)
	db.pfxFree = append(db.pfxFree, id)
}

// find returns the origin (node, frag) of s, which must be there.
func (s *pfxSlot) find(node int32, frag uint8) *pfxOrigin {
	if s.o0.node == node && s.o0.frag == frag {
		return &s.o0
	}
	for k := range s.more {
		if s.more[k].node == node && s.more[k].frag == frag {
			return &s.more[k]
		}
	}
	panic("spf: prefix index out of step with the fragments")
}

// rebuildEdges recomputes n's edges from its live fragments and keeps the
// two-way flags right on both ends. The cost is proportional to n's degree
// and its neighbours' (a binary search each), so that SPF itself never has to
// look an adjacency up. It reports whether n's edges changed.
func (db *LSDB) rebuildEdges(n *node) bool {
	var edges []edge
	for _, f := range n.frags {
		for j, a := range f.adj {
			edges = append(edges, edge{to: f.nbr[j], metric: a.Metric, link: a.LinkID})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if a.to != b.to {
			return int(a.to) - int(b.to)
		}
		if a.link != b.link {
			if a.link < b.link {
				return -1
			}
			return 1
		}
		return int(int64(a.metric) - int64(b.metric))
	})
	// The same link announced in two fragments (while the origin moves it
	// between fragments) counts once, at its lower metric.
	edges = slices.CompactFunc(edges, func(a, b edge) bool { return a.to == b.to && a.link == b.link })
	if slices.EqualFunc(edges, n.edges, func(a, b edge) bool {
		return a.to == b.to && a.link == b.link && a.metric == b.metric
	}) {
		return false
	}

	var nbrs []int32
	for _, e := range edges {
		if k := len(nbrs); k == 0 || nbrs[k-1] != e.to {
			nbrs = append(nbrs, e.to)
		}
	}
	oldNbrs := n.nbrs
	n.edges, n.nbrs = edges, nbrs
	for k := range n.edges {
		n.edges[k].twoWay = db.nodes[n.edges[k].to].lists(n.idx)
	}
	// Every node in oldNbrs ∪ nbrs has edges whose two-way flag depends on
	// whether n lists it.
	var dropped []*node
	i, j := 0, 0
	for i < len(oldNbrs) || j < len(nbrs) {
		var x int32
		switch {
		case j == len(nbrs) || (i < len(oldNbrs) && oldNbrs[i] < nbrs[j]):
			x = oldNbrs[i]
			i++
			db.nodes[x].refs--
			dropped = append(dropped, db.nodes[x])
		case i == len(oldNbrs) || nbrs[j] < oldNbrs[i]:
			x = nbrs[j]
			j++
			db.nodes[x].refs++
		default:
			x = nbrs[j]
			i++
			j++
		}
		m := db.nodes[x]
		two := n.lists(x)
		k, _ := slices.BinarySearchFunc(m.edges, n.idx, func(e edge, t int32) int { return int(e.to) - int(t) })
		for ; k < len(m.edges) && m.edges[k].to == n.idx; k++ {
			m.edges[k].twoWay = two
		}
	}
	for _, m := range dropped {
		db.maybeFree(m)
	}
	return true
}

// lists reports whether n has an adjacency to node x.
func (n *node) lists(x int32) bool {
	_, ok := slices.BinarySearch(n.nbrs, x)
	return ok
}
