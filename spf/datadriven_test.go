package spf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The data-driven tests read testdata/*.txt, in the manner of etcd raft's
// interaction tests and cockroachdb/datadriven (written out here: the package
// takes no dependency). A file is a series of cases:
//
//	# comment
//	command key=value key=value ...
//	----
//	expected output, one or more lines
//	<blank line>
//
// `go test ./spf -run TestDataDriven -rewrite` rewrites the expected outputs
// from what the commands print; review the diff before committing it.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt")

type ddArg struct{ key, val string }

type ddCase struct {
	pos  string // file:line
	cmd  string
	args []ddArg
}

func (c *ddCase) has(key string) bool {
	for _, a := range c.args {
		if a.key == key {
			return true
		}
	}
	return false
}

func (c *ddCase) get(key, def string) string {
	for _, a := range c.args {
		if a.key == key {
			return a.val
		}
	}
	return def
}

// runDataDriven runs every case of path through run and compares (or, with
// -rewrite, replaces) the expected output.
func runDataDriven(t *testing.T, path string, run func(c *ddCase) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var out []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if s := strings.TrimSpace(l); s == "" || strings.HasPrefix(s, "#") {
			out = append(out, l)
			i++
			continue
		}
		fields := strings.Fields(l)
		c := &ddCase{pos: fmt.Sprintf("%s:%d", path, i+1), cmd: fields[0]}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			c.args = append(c.args, ddArg{k, v})
		}
		out = append(out, l)
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s: want ---- after the command", c.pos)
		}
		out = append(out, lines[i])
		i++
		var want []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			want = append(want, lines[i])
		}
		got := strings.TrimRight(run(c), "\n")
		if got == "" || strings.Contains(got, "\n\n") {
			t.Fatalf("%s: %s: output must be non-empty, without blank lines: %q", c.pos, c.cmd, got)
		}
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", c.pos, l, got, strings.Join(want, "\n"))
		}
		out = append(out, got)
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			h := newHarness(t)
			runDataDriven(t, f, h.run)
		})
	}
}

// harness is a fabric as one node sees it: one LSDB fed by the commands and
// one RIB per root asked for with `spf self=...`, each with the changes taken
// from the LSDB since its last computation.
type harness struct {
	t     *testing.T
	db    *LSDB
	now   time.Duration
	ribs  map[NodeID]*RIB
	pend  map[NodeID]*Changes
	last  NodeID
	names map[Prefix]string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, names: make(map[Prefix]string)}
	h.reset(Options{})
	return h
}

func (h *harness) reset(o Options) {
	h.db = New(o)
	h.now = 0
	h.ribs = make(map[NodeID]*RIB)
	h.pend = make(map[NodeID]*Changes)
	h.last = ""
}

func (h *harness) fatalf(c *ddCase, format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s: %s: %s", c.pos, c.cmd, fmt.Sprintf(format, args...))
}

func (h *harness) num(c *ddCase, key string, def int) int {
	v := c.get(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		h.fatalf(c, "%s=%q: %v", key, v, err)
	}
	return n
}

// dur parses a Go duration; a bare number is seconds.
func (h *harness) dur(c *ddCase, key string) time.Duration {
	v := c.get(key, "")
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		h.fatalf(c, "%s=%q: %v", key, v, err)
	}
	return d
}

func (h *harness) run(c *ddCase) string {
	switch c.cmd {
	case "init":
		h.reset(Options{
			Self:            NodeID(c.get("self", "")),
			LSPLifetime:     uint16(h.num(c, "lifetime", 0)),
			RefreshInterval: time.Duration(h.num(c, "refresh", 0)) * time.Second,
			ZeroAgeLifetime: time.Duration(h.num(c, "zero-age", 0)) * time.Second,
			MaxFragments:    h.num(c, "max-frags", 0),
			MaxAdjacencies:  h.num(c, "max-adj", 0),
			MaxPrefixes:     h.num(c, "max-prefixes", 0),
		})
		return "ok"
	case "lsp", "purge":
		l := h.parseLSP(c)
		l.Purged = c.cmd == "purge" || c.has("purged")
		return h.result(h.db.Receive(l, h.now)) + h.changes()
	case "originate":
		l, res := h.db.Originate(uint8(h.num(c, "frag", 0)), h.parseAdj(c), h.parsePrefixes(c), h.now)
		if res.Verdict == Invalid {
			return "invalid: " + res.Err.Error()
		}
		return "originated " + h.fmtLSP(l, false) + h.changes()
	case "purge-own":
		l, _, ok := h.db.PurgeOwn(uint8(h.num(c, "frag", 0)), h.now)
		if !ok {
			return "nothing to purge"
		}
		return "purged " + h.fmtLSP(l, false) + h.changes()
	case "age":
		h.now = h.dur(c, "now")
		return h.expire(h.db.Expire(h.now)) + h.changes()
	case "deadline":
		d, ok := h.db.NextDeadline()
		if !ok {
			return "none"
		}
		return d.String()
	case "get":
		l, ok := h.db.Get(FragmentID{NodeID(c.get("origin", "")), uint8(h.num(c, "frag", 0))}, h.now)
		if !ok {
			return "not found"
		}
		return h.fmtLSP(l, true)
	case "summary":
		var b strings.Builder
		for _, s := range h.db.Summary(h.now) {
			fmt.Fprintf(&b, "%s seq=%d life=%d\n", s.ID(), s.Seq, s.RemainingLifetime)
		}
		if b.Len() == 0 {
			return "empty"
		}
		return b.String()
	case "compare":
		plan := h.db.Compare(h.parseSummary(c))
		ids := func(l []FragmentID) string {
			if len(l) == 0 {
				return "-"
			}
			s := make([]string, len(l))
			for i, id := range l {
				s[i] = id.String()
			}
			return strings.Join(s, " ")
		}
		return fmt.Sprintf("request: %s\nsend: %s", ids(plan.Request), ids(plan.Send))
	case "spf":
		return h.spf(c)
	case "tree":
		r := h.rib(c)
		var b strings.Builder
		for _, n := range r.Tree() {
			fmt.Fprintf(&b, "%s %d", n.Node, n.Distance)
			if len(n.FirstHops) > 0 {
				b.WriteString(" via " + fmtHops(n.FirstHops))
			}
			b.WriteByte('\n')
		}
		if b.Len() == 0 {
			return "empty"
		}
		return b.String()
	case "routes":
		return h.fmtTable(h.rib(c).Routes())
	case "check-full":
		r := h.rib(c)
		fresh := NewRIB(r.Root())
		fresh.Full(h.db)
		d := DiffRoutes(r.Routes(), fresh.Routes())
		if d.Len() == 0 {
			return fmt.Sprintf("identical (%d routes)", len(fresh.Routes()))
		}
		return "DIFFERENT from a full computation:\n" + h.fmtDiff(d)
	}
	h.fatalf(c, "unknown command")
	return ""
}

// rib returns the RIB named by self=, or the last one used.
func (h *harness) rib(c *ddCase) *RIB {
	self := NodeID(c.get("self", string(h.last)))
	if self == "" {
		h.fatalf(c, "no self= and no previous spf")
	}
	r := h.ribs[self]
	if r == nil {
		r = NewRIB(self)
		h.ribs[self] = r
		h.pend[self] = &Changes{}
	}
	h.last = self
	return r
}

func (h *harness) spf(c *ddCase) string {
	r := h.rib(c)
	pend := h.pend[r.Root()]
	var comp Computation
	switch mode := c.get("mode", "auto"); mode {
	case "auto":
		comp = r.Update(h.db, *pend)
	case "full":
		comp = r.Full(h.db)
	case "incremental":
		var err error
		if comp, err = r.Incremental(h.db, *pend); err != nil {
			return "error: " + err.Error()
		}
	default:
		h.fatalf(c, "mode=%s", mode)
	}
	*pend = Changes{}
	head := fmt.Sprintf("%s: %d nodes reachable, %d prefixes computed", comp.Kind, comp.Reachable, comp.Recomputed)
	if comp.Diff.Len() == 0 {
		return head + ", routes unchanged"
	}
	return head + "\n" + h.fmtDiff(comp.Diff)
}

// changes hands what the LSDB reports to every RIB and describes it.
func (h *harness) changes() string {
	ch := h.db.TakeChanges()
	for _, p := range h.pend {
		p.Merge(ch)
	}
	var parts []string
	if ch.Topology {
		parts = append(parts, "topology")
	}
	if len(ch.Origins) > 0 {
		s := make([]string, len(ch.Origins))
		for i, o := range ch.Origins {
			s[i] = string(o)
		}
		parts = append(parts, "prefixes of "+strings.Join(s, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return "\nchanged: " + strings.Join(parts, "; ")
}

func (h *harness) result(r Result) string {
	switch r.Verdict {
	case Invalid:
		return "invalid: " + r.Err.Error()
	case Older, Reoriginated:
		return fmt.Sprintf("%s: ours %s", r.Verdict, h.fmtLSP(*r.Ours, false))
	}
	return r.Verdict.String()
}

func (h *harness) expire(r ExpireResult) string {
	var b strings.Builder
	for _, l := range r.Refreshed {
		fmt.Fprintf(&b, "refreshed %s\n", h.fmtLSP(l, false))
	}
	for _, l := range r.Purged {
		fmt.Fprintf(&b, "purged %s\n", h.fmtLSP(l, false))
	}
	for _, id := range r.Removed {
		fmt.Fprintf(&b, "removed %s\n", id)
	}
	if r.Err != nil {
		fmt.Fprintf(&b, "error: %v\n", r.Err)
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (h *harness) fmtLSP(l LSP, content bool) string {
	s := fmt.Sprintf("%s seq=%d life=%d", l.ID(), l.Seq, l.RemainingLifetime)
	if l.Purged {
		return s + " purge"
	}
	if !content {
		return s
	}
	if len(l.Adjacencies) > 0 {
		a := make([]string, len(l.Adjacencies))
		for i, x := range l.Adjacencies {
			a[i] = fmt.Sprintf("%s:%d:%d", x.Neighbor, x.Metric, x.LinkID)
		}
		s += " adj=" + strings.Join(a, ",")
	}
	if len(l.Prefixes) > 0 {
		p := make([]string, len(l.Prefixes))
		for i, x := range l.Prefixes {
			p[i] = fmt.Sprintf("%s:%d", h.name(x.Prefix), x.Metric)
		}
		s += " prefix=" + strings.Join(p, ",")
	}
	return s
}

func fmtHops(hops []NextHop) string {
	s := make([]string, len(hops))
	for i, x := range hops {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (h *harness) name(p Prefix) string {
	if n, ok := h.names[p]; ok {
		return n
	}
	return p.String()
}

func (h *harness) fmtTable(t RouteTable) string {
	if len(t) == 0 {
		return "no routes"
	}
	var lines []string
	for p, r := range t {
		lines = append(lines, h.name(p)+" "+r.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func (h *harness) fmtDiff(d Diff) string {
	var lines []string
	for _, u := range d.Added {
		lines = append(lines, "+ "+h.name(u.Prefix)+" "+u.New.String())
	}
	for _, u := range d.Changed {
		lines = append(lines, "~ "+h.name(u.Prefix)+" "+u.New.String())
	}
	for _, u := range d.Removed {
		lines = append(lines, "- "+h.name(u.Prefix))
	}
	// By name, not by key, so that the files read in order.
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[2:], b[2:]) })
	return strings.Join(lines, "\n")
}

func (h *harness) parseLSP(c *ddCase) LSP {
	return LSP{
		Origin:            NodeID(c.get("origin", "")),
		Fragment:          uint8(h.num(c, "frag", 0)),
		Seq:               uint32(h.num(c, "seq", 0)),
		RemainingLifetime: uint16(h.num(c, "life", 1200)),
		Adjacencies:       h.parseAdj(c),
		Prefixes:          h.parsePrefixes(c),
	}
}

// parseAdj reads adj=b:10:1,c:5:2 (neighbour:metric[:link]).
func (h *harness) parseAdj(c *ddCase) []Adjacency {
	v := c.get("adj", "")
	if v == "" {
		return nil
	}
	var out []Adjacency
	for _, tok := range strings.Split(v, ",") {
		f := strings.Split(tok, ":")
		if len(f) < 2 || len(f) > 3 {
			h.fatalf(c, "adjacency %q: want neighbour:metric[:link]", tok)
		}
		m, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			h.fatalf(c, "adjacency %q: %v", tok, err)
		}
		a := Adjacency{Neighbor: NodeID(f[0]), Metric: uint32(m)}
		if len(f) == 3 {
			l, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				h.fatalf(c, "adjacency %q: %v", tok, err)
			}
			a.LinkID = uint32(l)
		}
		out = append(out, a)
	}
	return out
}

// parsePrefixes reads prefix=/shop/cart:0,/shop#7:5,0x<32 hex digits>/33:1
// (name or raw key, then :metric, default 0). A name's key follows DESIGN §2:
// segment i is the first 4 bytes of SHA-256 of component i (0 becomes 1),
// #n sets the instance segment and makes the prefix /128.
func (h *harness) parsePrefixes(c *ddCase) []PrefixReach {
	v := c.get("prefix", "")
	if v == "" {
		return nil
	}
	var out []PrefixReach
	for _, tok := range strings.Split(v, ",") {
		var pr PrefixReach
		if i := strings.LastIndexByte(tok, ':'); i >= 0 {
			m, err := strconv.ParseUint(tok[i+1:], 10, 32)
			if err != nil {
				h.fatalf(c, "prefix %q: %v", tok, err)
			}
			pr.Metric, tok = uint32(m), tok[:i]
		}
		p, err := parsePrefix(tok)
		if err != nil {
			h.fatalf(c, "%v", err)
		}
		pr.Prefix = p
		if _, ok := h.names[p]; !ok {
			h.names[p] = tok
		}
		out = append(out, pr)
	}
	return out
}

func parsePrefix(s string) (Prefix, error) {
	var p Prefix
	if hx, ok := strings.CutPrefix(s, "0x"); ok {
		k, l, _ := strings.Cut(hx, "/")
		b, err := hex.DecodeString(k)
		if err != nil || len(b) != 16 {
			return p, fmt.Errorf("prefix %q: want 32 hex digits", s)
		}
		n, err := strconv.Atoi(l)
		if err != nil {
			return p, fmt.Errorf("prefix %q: %v", s, err)
		}
		copy(p.Key[:], b)
		p.Len = uint8(n)
		return p, nil
	}
	name, inst, hasInst := strings.Cut(s, "#")
	comps := strings.Split(strings.TrimPrefix(name, "/"), "/")
	if !strings.HasPrefix(name, "/") || len(comps) > 3 {
		return p, fmt.Errorf("prefix %q: want /a[/b[/c]][#instance]", s)
	}
	for i, comp := range comps {
		sum := sha256.Sum256([]byte(comp))
		seg := binary.BigEndian.Uint32(sum[:4])
		if seg == 0 {
			seg = 1
		}
		binary.BigEndian.PutUint32(p.Key[4*i:], seg)
	}
	p.Len = uint8(32 * len(comps))
	if hasInst {
		n, err := strconv.ParseUint(inst, 10, 32)
		if err != nil {
			return p, fmt.Errorf("prefix %q: %v", s, err)
		}
		binary.BigEndian.PutUint32(p.Key[12:], uint32(n))
		p.Len = 128
	}
	return p, nil
}

// parseSummary reads entries=a/0:3:1200[:hash],b/1:2:0 (origin/frag:seq:life).
// Without a hash, an entry with our Seq gets our hash: the same copy.
func (h *harness) parseSummary(c *ddCase) []Summary {
	v := c.get("entries", "")
	if v == "" {
		return nil
	}
	var out []Summary
	for _, tok := range strings.Split(v, ",") {
		f := strings.Split(tok, ":")
		id, frag, ok := strings.Cut(f[0], "/")
		if len(f) < 3 || !ok {
			h.fatalf(c, "entry %q: want origin/frag:seq:life[:hash]", tok)
		}
		fr, err1 := strconv.Atoi(frag)
		seq, err2 := strconv.ParseUint(f[1], 10, 32)
		life, err3 := strconv.ParseUint(f[2], 10, 16)
		if err1 != nil || err2 != nil || err3 != nil {
			h.fatalf(c, "entry %q: bad number", tok)
		}
		s := Summary{Origin: NodeID(id), Fragment: uint8(fr), Seq: uint32(seq), RemainingLifetime: uint16(life)}
		if len(f) == 4 {
			hs, err := strconv.ParseUint(f[3], 16, 64)
			if err != nil {
				h.fatalf(c, "entry %q: %v", tok, err)
			}
			s.Hash = hs
		} else if life > 0 {
			for _, ours := range h.db.Summary(h.now) {
				if ours.ID() == s.ID() && ours.Seq == s.Seq {
					s.Hash = ours.Hash
				}
			}
		}
		out = append(out, s)
	}
	return out
}
