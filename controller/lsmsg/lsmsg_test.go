package lsmsg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/spf"
)

func prefix(len uint8, seg ...byte) spf.Prefix {
	var p spf.Prefix
	p.Len = len
	for i, b := range seg {
		p.Key[i*4+3] = b
	}
	return p
}

func testKeys(t testing.TB, ids ...spf.NodeID) (map[spf.NodeID]Signer, Keys) {
	t.Helper()
	signers := map[spf.NodeID]Signer{}
	pubs := map[spf.NodeID]ed25519.PublicKey{}
	for i, id := range ids {
		seed := bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize)
		k := ed25519.NewKeyFromSeed(seed)
		signers[id] = Signer{ID: id, Key: k}
		pubs[id] = k.Public().(ed25519.PublicKey)
	}
	return signers, func(id spf.NodeID) (ed25519.PublicKey, bool) { k, ok := pubs[id]; return k, ok }
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []Hello{
		{Router: "sr1", Port: 3, HoldTime: 80 * time.Millisecond, MAC: [6]byte{2, 0, 0, 0, 1, 3}},
		{Router: "sg1", Port: 1, HeardRouter: "sr1", HeardPort: 1, HoldTime: time.Second},
	} {
		b, err := AppendHello(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHello(b)
		if err != nil || got != h {
			t.Errorf("round trip %+v: got %+v, %v", h, got, err)
		}
	}
	if _, err := AppendHello(nil, Hello{}); !errors.Is(err, ErrField) {
		t.Errorf("hello without router: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	hello, _ := AppendHello(nil, Hello{Router: "a", Port: 1})
	lsp, _ := AppendLSP(nil, &spf.LSP{Origin: "a", Seq: 1, RemainingLifetime: 1200,
		Adjacencies: []spf.Adjacency{{Neighbor: "b", Metric: 10, LinkID: 1}}})
	for _, tc := range []struct {
		name string
		dec  func([]byte) error
		b    []byte
		want error
	}{
		{"hello short", func(b []byte) error { _, err := DecodeHello(b); return err }, hello[:len(hello)-1], ErrTruncated},
		{"hello trailing", func(b []byte) error { _, err := DecodeHello(b); return err }, append(bytes.Clone(hello), 0), ErrTrailing},
		{"hello empty router", func(b []byte) error { _, err := DecodeHello(b); return err }, []byte{0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrField},
		{"lsp short", func(b []byte) error { _, err := DecodeLSP(b); return err }, lsp[:10], ErrTruncated},
		{"lsp unknown flag", func(b []byte) error { _, err := DecodeLSP(b); return err }, append([]byte{0x80}, lsp[1:]...), ErrField},
		{"lsp huge count", func(b []byte) error { _, err := DecodeLSP(b); return err }, []byte{0, 1, 'a', 0, 0, 0, 0, 1, 4, 0xb0, 0xff, 0xff}, ErrTruncated},
		{"ack short", func(b []byte) error { _, err := DecodeAck(b); return err }, []byte{0, 1, 1}, ErrTruncated},
		{"request empty origin", func(b []byte) error { _, err := DecodeDBRequest(b); return err }, []byte{0, 1, 0, 0, 0}, ErrField},
	} {
		if err := tc.dec(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestLSPRoundTripAndSignature(t *testing.T) {
	signers, keys := testKeys(t, "sg1", "sr1", "sr2")
	l := spf.LSP{
		Origin: "sg1", Fragment: 2, Seq: 7, RemainingLifetime: 1200,
		Adjacencies: []spf.Adjacency{{Neighbor: "sr1", Metric: 10, LinkID: 1}, {Neighbor: "sr2", Metric: 1 << 20, LinkID: 2}},
		Prefixes: []spf.PrefixReach{
			{Prefix: prefix(32, 1)}, {Prefix: prefix(64, 1, 2), Metric: 5},
			{Prefix: prefix(128, 1, 2, 3, 4)}, {Prefix: prefix(96, 2, 2, 2)},
		},
	}
	signers["sg1"].Seal(&l)
	b, err := AppendLSP(nil, &l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeLSP(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, l) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, l)
	}
	if who, err := Verify(&got, keys); err != nil || who != "sg1" {
		t.Fatalf("verify: %s %v", who, err)
	}
	// The lifetime is not signed: it changes on the way.
	got.RemainingLifetime = 17
	if _, err := Verify(&got, keys); err != nil {
		t.Errorf("lifetime changed: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(*spf.LSP)
		want   error
	}{
		{"seq", func(l *spf.LSP) { l.Seq++ }, ErrBadSignature},
		{"metric", func(l *spf.LSP) { l.Adjacencies = []spf.Adjacency{{Neighbor: "sr1", Metric: 1, LinkID: 1}} }, ErrBadSignature},
		{"prefix dropped", func(l *spf.LSP) { l.Prefixes = l.Prefixes[:1] }, ErrBadSignature},
		{"other origin", func(l *spf.LSP) { l.Origin = "sr1" }, ErrBadSignature},
		{"untrusted origin", func(l *spf.LSP) { l.Origin = "mallory" }, ErrUntrusted},
		{"no auth", func(l *spf.LSP) { l.Opaque = nil }, ErrNoAuth},
		{"short auth", func(l *spf.LSP) { l.Opaque = l.Opaque[:10] }, ErrNoAuth},
		{"signed by another node", func(l *spf.LSP) {
			c := *l
			c.Origin = "sg1"
			signers["sr1"].Seal(&c)
			l.Opaque = c.Opaque
		}, ErrBadSignature},
		{"content dressed as purge", func(l *spf.LSP) { l.Purged = true }, ErrNoAuth},
	} {
		c := l
		c.Adjacencies = append([]spf.Adjacency(nil), l.Adjacencies...)
		c.Prefixes = append([]spf.PrefixReach(nil), l.Prefixes...)
		tc.change(&c)
		if _, err := Verify(&c, keys); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestPurgeAuth(t *testing.T) {
	signers, keys := testKeys(t, "sg1", "sr1")
	p := spf.LSP{Origin: "sg1", Fragment: 1, Seq: 9, Purged: true}
	// Any trusted node may purge (a fragment whose lifetime ran out).
	p.Opaque = signers["sr1"].PurgeAuth(&p)
	b, err := AppendLSP(nil, &p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeLSP(b)
	if err != nil || !got.Purged || len(got.Adjacencies) != 0 {
		t.Fatalf("decode purge: %+v %v", got, err)
	}
	if who, err := Verify(&got, keys); err != nil || who != "sr1" {
		t.Fatalf("verify purge: %s %v", who, err)
	}
	if !IsPurgeAuth(&got) {
		t.Error("IsPurgeAuth false")
	}
	got.Seq = 10
	if _, err := Verify(&got, keys); !errors.Is(err, ErrBadSignature) {
		t.Errorf("replayed purge at another seq: %v", err)
	}
	// A purge carrying content is malformed.
	bad := bytes.Clone(b)
	off := 1 + 1 + 3 + 1 + 4 // flags, origin, fragment, seq
	bad[off+1] = 5           // lifetime
	if _, err := DecodeLSP(bad); !errors.Is(err, ErrField) {
		t.Errorf("purge with lifetime: %v", err)
	}
	// Seal makes a purge authentication for purges.
	own := spf.LSP{Origin: "sg1", Fragment: 0, Seq: 3, Purged: true}
	signers["sg1"].Seal(&own)
	if who, err := Verify(&own, keys); err != nil || who != "sg1" {
		t.Errorf("sealed purge: %s %v", who, err)
	}
}

func TestCanonicalOrder(t *testing.T) {
	l := spf.LSP{Origin: "a", Seq: 1, RemainingLifetime: 10,
		Prefixes: []spf.PrefixReach{{Prefix: prefix(64, 2, 1)}, {Prefix: prefix(64, 1, 1)}}}
	if _, err := AppendLSP(nil, &l); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Errorf("unsorted prefixes encoded: %v", err)
	}
	l.Prefixes[0], l.Prefixes[1] = l.Prefixes[1], l.Prefixes[0]
	b, err := AppendLSP(nil, &l)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the two encoded prefixes (9 bytes each) by hand: the decoder refuses.
	i := bytes.Index(b, []byte{2, 0, 0, 0, 1, 0, 0, 0, 1})
	j := bytes.Index(b, []byte{2, 0, 0, 0, 2, 0, 0, 0, 1})
	if i < 0 || j < 0 {
		t.Fatalf("prefixes not found in %x", b)
	}
	sw := bytes.Clone(b)
	copy(sw[i:i+9], b[j:j+9])
	copy(sw[j:j+9], b[i:i+9])
	if _, err := DecodeLSP(sw); !errors.Is(err, ErrField) {
		t.Errorf("unsorted prefixes decoded: %v", err)
	}
}

func TestSizesMatchEncoding(t *testing.T) {
	signers, _ := testKeys(t, "node-with-a-long-name")
	l := spf.LSP{Origin: "node-with-a-long-name", Seq: 1, RemainingLifetime: 100,
		Adjacencies: []spf.Adjacency{{Neighbor: "x", Metric: 1, LinkID: 1}, {Neighbor: "yy", Metric: 1, LinkID: 2}},
		Prefixes:    []spf.PrefixReach{{Prefix: prefix(32, 1)}, {Prefix: prefix(128, 1, 1, 1, 1), Metric: 3}}}
	signers[l.Origin].Seal(&l)
	b, err := AppendLSP(nil, &l)
	if err != nil {
		t.Fatal(err)
	}
	want := HeaderSize(l.Origin)
	for _, a := range l.Adjacencies {
		want += AdjacencySize(a)
	}
	for _, p := range l.Prefixes {
		want += PrefixSize(p)
	}
	if len(b) != want {
		t.Errorf("encoded %d bytes, sizes say %d", len(b), want)
	}
	// Too large for a frame.
	big := spf.LSP{Origin: "a", Seq: 1, RemainingLifetime: 100}
	for i := 0; i < 200; i++ {
		big.Prefixes = append(big.Prefixes, spf.PrefixReach{Prefix: prefix(64, byte(i), 1)})
	}
	if _, err := AppendLSP(nil, &big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized LSP: %v", err)
	}
}

func TestSyncMessagesRoundTrip(t *testing.T) {
	es := []spf.Summary{
		{Origin: "a", Fragment: 0, Seq: 1, RemainingLifetime: 1200, Hash: 42},
		{Origin: "a", Fragment: 1, Seq: 3, Hash: 0},
		{Origin: "b", Fragment: 0, Seq: 9, RemainingLifetime: 5, Hash: 1<<64 - 1},
	}
	ab, _ := AppendAck(nil, Ack{Entries: es})
	if a, err := DecodeAck(ab); err != nil || !reflect.DeepEqual(a.Entries, es) {
		t.Errorf("ack: %+v %v", a, err)
	}
	for _, s := range []DBSummary{
		{First: true, Last: true, Entries: es},
		{First: true, WantReply: true, Through: spf.FragmentID{Origin: "a"}, Entries: es[:1]},
		{After: spf.FragmentID{Origin: "a"}, Through: spf.FragmentID{Origin: "b"}, Entries: es[1:]},
		{First: true, Through: spf.FragmentID{Origin: "zz"}},
	} {
		b, err := AppendDBSummary(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeDBSummary(b)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("summary %+v: got %+v, %v", s, got, err)
		}
	}
	out := DBSummary{After: spf.FragmentID{Origin: "a"}, Through: spf.FragmentID{Origin: "c"}, Entries: es[:1]}
	b, _ := AppendDBSummary(nil, out)
	if _, err := DecodeDBSummary(b); !errors.Is(err, ErrField) {
		t.Errorf("entry outside range: %v", err)
	}
	unsorted := DBSummary{First: true, Last: true, Entries: []spf.Summary{es[2], es[0]}}
	b, _ = AppendDBSummary(nil, unsorted)
	if _, err := DecodeDBSummary(b); !errors.Is(err, ErrField) {
		t.Errorf("unsorted summary: %v", err)
	}
	q := DBRequest{IDs: []spf.FragmentID{{Origin: "a", Fragment: 3}, {Origin: "b"}}}
	qb, _ := AppendDBRequest(nil, q)
	if got, err := DecodeDBRequest(qb); err != nil || !reflect.DeepEqual(got, q) {
		t.Errorf("request: %+v %v", got, err)
	}
}

// FuzzDecode feeds every decoder; whatever decodes must encode again to the
// same bytes (the formats have one encoding per value).
func FuzzDecode(f *testing.F) {
	signers, _ := testKeys(f, "sg1")
	l := spf.LSP{Origin: "sg1", Seq: 1, RemainingLifetime: 100,
		Adjacencies: []spf.Adjacency{{Neighbor: "sr1", Metric: 10, LinkID: 1}},
		Prefixes:    []spf.PrefixReach{{Prefix: prefix(64, 1, 2), Metric: 4}}}
	signers["sg1"].Seal(&l)
	lb, _ := AppendLSP(nil, &l)
	hb, _ := AppendHello(nil, Hello{Router: "sr1", Port: 1, HeardRouter: "sg1", HeardPort: 2, HoldTime: time.Second})
	ab, _ := AppendAck(nil, Ack{Entries: []spf.Summary{{Origin: "sg1", Seq: 1, Hash: 3}}})
	sb, _ := AppendDBSummary(nil, DBSummary{First: true, Last: true, Entries: []spf.Summary{{Origin: "sg1", Seq: 1}}})
	qb, _ := AppendDBRequest(nil, DBRequest{IDs: []spf.FragmentID{{Origin: "sg1"}}})
	for i, b := range [][]byte{hb, lb, ab, sb, qb} {
		f.Add(byte(i), b)
	}
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		var again []byte
		var decErr, encErr error
		switch which % 5 {
		case 0:
			var h Hello
			if h, decErr = DecodeHello(b); decErr == nil {
				again, encErr = AppendHello(nil, h)
			}
		case 1:
			var l spf.LSP
			if l, decErr = DecodeLSP(b); decErr == nil {
				if len(b) > MaxBody {
					return // decodable, but AppendLSP refuses to make it
				}
				again, encErr = AppendLSP(nil, &l)
			}
		case 2:
			var a Ack
			if a, decErr = DecodeAck(b); decErr == nil {
				again, encErr = AppendAck(nil, a)
			}
		case 3:
			var s DBSummary
			if s, decErr = DecodeDBSummary(b); decErr == nil {
				again, encErr = AppendDBSummary(nil, s)
			}
		case 4:
			var q DBRequest
			if q, decErr = DecodeDBRequest(b); decErr == nil {
				again, encErr = AppendDBRequest(nil, q)
			}
		}
		if decErr != nil {
			return
		}
		if encErr != nil {
			t.Fatalf("kind %d: decoded, but encoding failed: %v", which%5, encErr)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("kind %d: re-encoding differs:\n in %x\nout %x", which%5, b, again)
		}
	})
}
