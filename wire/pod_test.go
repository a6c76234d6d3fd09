package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	cartKey  = KeyOf(MustParseName("/shop/cart"))
	instance = cartKey.WithInstance(7)
)

// podMessage is one message of each type, for round trips, golden vectors
// and fuzz seeds.
type podMessage struct {
	name    string
	msgType uint8
	msg     interface{ Append([]byte) ([]byte, error) }
	decode  func([]byte) (any, error)
}

func podMessages() []podMessage {
	var ch [ChallengeSize]byte
	for i := range ch {
		ch[i] = byte(i)
	}
	return []podMessage{
		{"announce", PodAnnounce, Announce{Prefix: "/shop/cart", CertChain: [][]byte{{0x30, 0x82, 1, 2}, {0x30, 3}}},
			func(b []byte) (any, error) { return DecodeAnnounce(b) }},
		{"challenge", PodChallenge, Challenge{Prefix: "/shop/cart", Challenge: ch, SG: "sg1", Port: 10},
			func(b []byte) (any, error) { return DecodeChallenge(b) }},
		{"proof", PodProof, Proof{Prefix: "/shop/cart", Challenge: ch, Signature: bytes.Repeat([]byte{0xab}, 64)},
			func(b []byte) (any, error) { return DecodeProof(b) }},
		{"accept", PodAccept, Accept{Prefix: "/shop/cart", Instance: instance, Keepalive: time.Second, Hold: 3 * time.Second, Lease: 30 * time.Second},
			func(b []byte) (any, error) { return DecodeAccept(b) }},
		{"reject", PodReject, Reject{Prefix: "/shop/cart", Reason: ReasonSPAUnavailable, RetryAfter: 500 * time.Millisecond, Text: "SPA did not answer"},
			func(b []byte) (any, error) { return DecodeReject(b) }},
		{"keepalive", PodKeepalive, InstanceMsg{Instance: instance},
			func(b []byte) (any, error) { return DecodeInstanceMsg(b) }},
		{"withdraw", PodWithdraw, InstanceMsg{Instance: instance},
			func(b []byte) (any, error) { return DecodeInstanceMsg(b) }},
		{"resolve", PodResolve, Resolve{Dst: cartKey},
			func(b []byte) (any, error) { return DecodeResolve(b) }},
		{"resolved", PodResolved, Resolved{Dst: cartKey, Reachable: true, Metric: 30},
			func(b []byte) (any, error) { return DecodeResolved(b) }},
	}
}

func TestPodMessagesRoundTrip(t *testing.T) {
	for _, m := range podMessages() {
		b, err := m.msg.Append(nil)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		got, err := m.decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", m.name, err)
		}
		if !reflect.DeepEqual(got, m.msg) {
			t.Errorf("%s: got %+v, want %+v", m.name, got, m.msg)
		}
		// Every truncation fails cleanly.
		for i := range b {
			if _, err := m.decode(b[:i]); !errors.Is(err, ErrPodMessage) {
				t.Errorf("%s cut at %d: %v", m.name, i, err)
			}
		}
		if _, err := m.decode(append(bytes.Clone(b), 0)); !errors.Is(err, ErrPodMessage) {
			t.Errorf("%s with a trailing byte: %v", m.name, err)
		}
	}
}

func TestPodMessageErrors(t *testing.T) {
	bad := func(b []byte, err error) []byte { return b }
	for _, tc := range []struct {
		name string
		b    []byte
		dec  func([]byte) error
		want string
	}{
		{"announce bad prefix", bad(Announce{Prefix: "/Shop", CertChain: [][]byte{{1}}}.Append(nil)),
			func(b []byte) error { _, err := DecodeAnnounce(b); return err }, "prefix"},
		{"announce no certificate", []byte{5, '/', 's', 'h', 'o', 'p', 0},
			func(b []byte) error { _, err := DecodeAnnounce(b); return err }, "0 certificates"},
		{"accept without instance", bad(Accept{Prefix: "/shop", Instance: cartKey}.Append(nil)),
			func(b []byte) error { _, err := DecodeAccept(b); return err }, "instance id"},
		{"keepalive of a service key", cartKey[:],
			func(b []byte) error { _, err := DecodeInstanceMsg(b); return err }, "instance id"},
		{"resolved flag 2", append(append([]byte{}, cartKey[:]...), 2, 0, 0, 0, 0),
			func(b []byte) error { _, err := DecodeResolved(b); return err }, "reachable flag"},
		{"challenge without SG", append(append([]byte{5, '/', 's', 'h', 'o', 'p'}, make([]byte, 32)...), 0, 0, 0, 0, 1),
			func(b []byte) error { _, err := DecodeChallenge(b); return err }, "empty SG"},
	} {
		err := tc.dec(tc.b)
		if !errors.Is(err, ErrPodMessage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (want an error about %q)", tc.name, err, tc.want)
		}
	}
	if _, err := (Announce{Prefix: "/shop", CertChain: [][]byte{make([]byte, 1500)}}).Append(nil); err == nil {
		t.Error("an ANNOUNCE larger than a frame encoded")
	}
	if _, err := (Announce{Prefix: "/shop"}).Append(nil); err == nil {
		t.Error("an ANNOUNCE without certificates encoded")
	}
	r, _ := Reject{Text: strings.Repeat("x", 1000)}.Append(nil)
	if m, err := DecodeReject(r); err != nil || len(m.Text) != MaxReasonText {
		t.Errorf("long reason text: %d bytes, %v", len(m.Text), err)
	}
}

// FuzzPodMessages: every decoder survives anything, and what decodes
// encodes back to the same bytes.
func FuzzPodMessages(f *testing.F) {
	msgs := podMessages()
	for i, m := range msgs {
		b, _ := m.msg.Append(nil)
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		m := msgs[int(which)%len(msgs)]
		v, err := m.decode(b)
		if err != nil {
			if !errors.Is(err, ErrPodMessage) {
				t.Fatalf("%s: error without ErrPodMessage: %v", m.name, err)
			}
			return
		}
		again, err := v.(interface{ Append([]byte) ([]byte, error) }).Append(nil)
		if err != nil {
			t.Fatalf("%s: decoded but does not encode: %v", m.name, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%s: re-encoding differs:\n in %x\nout %x", m.name, b, again)
		}
	})
}
