package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func TestProofMessageLayout(t *testing.T) {
	ch := bytes.Repeat([]byte{0xab}, ChallengeLen)
	m, err := ProofMessage(ch, "sg1", 0x01020304, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	want := "DMSC-SPA-PROOF-v1\x00" + string(ch) + "\x03sg1" + "\x01\x02\x03\x04" + "\x0a/shop/cart"
	if string(m) != want {
		t.Fatalf("message\n%s\nwant\n%s", hex.EncodeToString(m), hex.EncodeToString([]byte(want)))
	}
	for _, tc := range []struct {
		ch     []byte
		sg, pf string
	}{
		{ch[:31], "sg1", "/a"},
		{ch, "", "/a"},
		{ch, "sg1", ""},
		{ch, string(make([]byte, 256)), "/a"},
	} {
		if _, err := ProofMessage(tc.ch, tc.sg, 1, tc.pf); err == nil {
			t.Errorf("ProofMessage(%d bytes, %q, %q) accepted", len(tc.ch), tc.sg, tc.pf)
		}
	}
}

func TestProofSignVerify(t *testing.T) {
	c, _ := newCA(t)
	pod, err := c.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ch, err := NewChallenge(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ch2, _ := NewChallenge(time.Now())
	for _, key := range []struct {
		name string
		sign func() ([]byte, error)
		pub  any
	}{
		{"ed25519", func() ([]byte, error) { return SignProof(pod.Key, ch, "sg1", 3, "/shop/cart") }, pod.Cert.PublicKey},
		{"ecdsa", func() ([]byte, error) { return SignProof(ec, ch, "sg1", 3, "/shop/cart") }, &ec.PublicKey},
	} {
		t.Run(key.name, func(t *testing.T) {
			sig, err := key.sign()
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyProof(key.pub, ch, "sg1", 3, "/shop/cart", sig); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []struct {
				name string
				ch   []byte
				sg   string
				port uint32
				pf   string
			}{
				{"other challenge", ch2, "sg1", 3, "/shop/cart"},
				{"other SG", ch, "sg2", 3, "/shop/cart"},
				{"other port", ch, "sg1", 4, "/shop/cart"},
				{"other prefix", ch, "sg1", 3, "/shop"},
			} {
				if err := VerifyProof(key.pub, bad.ch, bad.sg, bad.port, bad.pf, sig); !errors.Is(err, ErrBadProof) {
					t.Errorf("%s: %v", bad.name, err)
				}
			}
			flipped := bytes.Clone(sig)
			flipped[len(flipped)/2] ^= 1
			if err := VerifyProof(key.pub, ch, "sg1", 3, "/shop/cart", flipped); !errors.Is(err, ErrBadProof) {
				t.Errorf("flipped signature: %v", err)
			}
		})
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err := VerifyProof(&p384.PublicKey, ch, "sg1", 3, "/a", []byte{1}); !errors.Is(err, ErrBadProof) {
		t.Errorf("P-384: %v", err)
	}
}

func TestChallengeTime(t *testing.T) {
	now := time.Unix(1_800_000_000, 123)
	ch, err := NewChallenge(now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ChallengeTime(ch)
	if err != nil || !got.Equal(now) {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ChallengeTime(ch[:8]); err == nil {
		t.Error("short challenge accepted")
	}
	ch2, _ := NewChallenge(now)
	if bytes.Equal(ch[8:], ch2[8:]) {
		t.Error("two challenges share their random part")
	}
}
