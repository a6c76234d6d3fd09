package lsmsg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dmsc-mesh/dmsc/spf"
)

// LSP body:
//
//	flags (8; bit 0: purge) | origin (len8 + bytes) | fragment (8) | seq (32) |
//	remaining lifetime (16, seconds) |
//	adjacency count (16) | adjacencies: neighbor (len8 + bytes), metric (32), link id (32) |
//	prefix count (16) | prefixes: code (8: bits 0-2 len/32, bit 7 metric follows), key (len/8 bytes), [metric (32)] |
//	auth length (16) | auth
//
// Adjacencies and prefixes are in canonical order (adjacencies by neighbour,
// link id, metric; prefixes by key then length), strictly ascending: the
// decoder refuses anything else, so every node encodes a fragment to the same
// bytes and the origin's signature holds wherever the fragment is flooded.
const (
	flagPurge     = 1 << 0
	prefixMetric  = 1 << 7
	prefixLenMask = 0x07

	authSignature = 1 // content: origin's Ed25519 signature
	authPurge     = 2 // purge: purger id and its signature
)

// Signature contexts keep LSP signatures apart from any other use of a
// node's key.
const (
	contentContext = "DMSC-LSP-v1\x00"
	purgeContext   = "DMSC-LSP-PURGE-v1\x00"
)

// Verification errors.
var (
	ErrUntrusted    = errors.New("lsmsg: signer is not a trusted node")
	ErrBadSignature = errors.New("lsmsg: signature does not verify")
	ErrNoAuth       = errors.New("lsmsg: LSP carries no valid authentication")
)

// AdjacencySize, PrefixSize and HeaderSize give the encoded sizes, so that
// the agent can pack fragments to fit MaxBody.
func AdjacencySize(a spf.Adjacency) int { return 1 + len(a.Neighbor) + 8 }

// PrefixSize is the encoded size of one prefix.
func PrefixSize(p spf.PrefixReach) int {
	n := 1 + int(p.Prefix.Len)/8
	if p.Metric != 0 {
		n += 4
	}
	return n
}

// HeaderSize is the size of a content fragment of origin without its
// adjacencies and prefixes, authentication included.
func HeaderSize(origin spf.NodeID) int {
	return 1 + 1 + len(origin) + 1 + 4 + 2 + 2 + 2 + 2 + 1 + ed25519.SignatureSize
}

// AppendLSP appends an LSP body (with its Opaque as the authentication).
func AppendLSP(dst []byte, l *spf.LSP) ([]byte, error) {
	start := len(dst)
	dst, err := appendLSP(dst, l, l.RemainingLifetime, l.Opaque)
	if err != nil {
		return dst[:start], err
	}
	if len(dst)-start > MaxBody {
		return dst[:start], fmt.Errorf("%w: LSP %s is %d bytes, at most %d", ErrTooLarge, l.ID(), len(dst)-start, MaxBody)
	}
	return dst, nil
}

func appendLSP(dst []byte, l *spf.LSP, lifetime uint16, auth []byte) ([]byte, error) {
	purge := l.Purged || l.RemainingLifetime == 0
	var flags byte
	if purge {
		flags |= flagPurge
	}
	dst = append(dst, flags)
	var err error
	if dst, err = appendNode(dst, l.Origin); err != nil {
		return dst, err
	}
	dst = append(dst, l.Fragment)
	dst = binary.BigEndian.AppendUint32(dst, l.Seq)
	if purge {
		lifetime = 0
	}
	dst = binary.BigEndian.AppendUint16(dst, lifetime)
	if purge {
		// A purge has no content, whatever the struct still holds.
		dst = binary.BigEndian.AppendUint16(dst, 0)
		dst = binary.BigEndian.AppendUint16(dst, 0)
	} else {
		if len(l.Adjacencies) > 0xffff || len(l.Prefixes) > 0xffff {
			return dst, fmt.Errorf("%w: LSP %s content", ErrTooLarge, l.ID())
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(l.Adjacencies)))
		for i, a := range l.Adjacencies {
			if i > 0 && compareAdj(l.Adjacencies[i-1], a) >= 0 {
				return dst, fmt.Errorf("%w: LSP %s adjacencies not in canonical order at %d", ErrField, l.ID(), i)
			}
			if dst, err = appendNode(dst, a.Neighbor); err != nil {
				return dst, err
			}
			dst = binary.BigEndian.AppendUint32(dst, a.Metric)
			dst = binary.BigEndian.AppendUint32(dst, a.LinkID)
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(l.Prefixes)))
		for i, p := range l.Prefixes {
			if i > 0 && l.Prefixes[i-1].Prefix.Compare(p.Prefix) >= 0 {
				return dst, fmt.Errorf("%w: LSP %s prefixes not in canonical order at %d", ErrField, l.ID(), i)
			}
			if err := p.Prefix.Valid(); err != nil {
				return dst, fmt.Errorf("%w: LSP %s prefix %d: %v", ErrField, l.ID(), i, err)
			}
			code := p.Prefix.Len / 32
			if p.Metric != 0 {
				code |= prefixMetric
			}
			dst = append(dst, code)
			dst = append(dst, p.Prefix.Key[:p.Prefix.Len/8]...)
			if p.Metric != 0 {
				dst = binary.BigEndian.AppendUint32(dst, p.Metric)
			}
		}
	}
	if len(auth) > 0xffff {
		return dst, fmt.Errorf("%w: LSP %s authentication", ErrTooLarge, l.ID())
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(auth)))
	return append(dst, auth...), nil
}

// DecodeLSP reads an LSP body. The slices of the result are new (they do not
// alias b), Opaque included.
func DecodeLSP(b []byte) (spf.LSP, error) {
	r := reader{b: b}
	var l spf.LSP
	flags := r.u8("flags")
	l.Origin = r.node("origin")
	l.Fragment = r.u8("fragment")
	l.Seq = r.u32("seq")
	l.RemainingLifetime = r.u16("remaining lifetime")
	l.Purged = flags&flagPurge != 0
	if r.err == nil && flags&^flagPurge != 0 {
		r.fail("flags", fmt.Errorf("%w: unknown flags %#x", ErrField, flags))
	}
	if n := int(r.u16("adjacency count")); n > 0 && r.err == nil {
		// Each adjacency takes at least 10 bytes: a count beyond what is
		// left is a lie, not a reason to allocate.
		if n*10 > len(r.b) {
			r.fail("adjacency count", ErrTruncated)
		} else {
			l.Adjacencies = make([]spf.Adjacency, 0, n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			a := spf.Adjacency{Neighbor: r.node("adjacency neighbor")}
			a.Metric = r.u32("adjacency metric")
			a.LinkID = r.u32("adjacency link id")
			if r.err == nil && i > 0 && compareAdj(l.Adjacencies[i-1], a) >= 0 {
				r.fail("adjacencies", fmt.Errorf("%w: not in canonical order at %d", ErrField, i))
			}
			l.Adjacencies = append(l.Adjacencies, a)
		}
	}
	if n := int(r.u16("prefix count")); n > 0 && r.err == nil {
		if n*5 > len(r.b) {
			r.fail("prefix count", ErrTruncated)
		} else {
			l.Prefixes = make([]spf.PrefixReach, 0, n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			code := r.u8("prefix code")
			segs := int(code & prefixLenMask)
			if r.err == nil && (segs < 1 || segs > 4 || code&^(prefixLenMask|prefixMetric) != 0) {
				r.fail("prefix code", fmt.Errorf("%w: %#x", ErrField, code))
				break
			}
			var p spf.PrefixReach
			p.Prefix.Len = uint8(segs * 32)
			copy(p.Prefix.Key[:], r.take("prefix key", segs*4))
			if code&prefixMetric != 0 {
				p.Metric = r.u32("prefix metric")
				if r.err == nil && p.Metric == 0 {
					r.fail("prefix metric", fmt.Errorf("%w: metric 0 must be left out", ErrField))
				}
			}
			if r.err == nil && i > 0 && l.Prefixes[i-1].Prefix.Compare(p.Prefix) >= 0 {
				r.fail("prefixes", fmt.Errorf("%w: not in canonical order at %d", ErrField, i))
			}
			l.Prefixes = append(l.Prefixes, p)
		}
	}
	if r.err == nil && l.Purged && (len(l.Adjacencies) > 0 || len(l.Prefixes) > 0 || l.RemainingLifetime != 0) {
		r.fail("purge", fmt.Errorf("%w: a purge carries content or lifetime", ErrField))
	}
	if r.err == nil && !l.Purged && l.RemainingLifetime == 0 {
		// One encoding per value: a purge says so in its flags.
		r.fail("remaining lifetime", fmt.Errorf("%w: 0 without the purge flag", ErrField))
	}
	auth := r.take("auth", int(r.u16("auth length")))
	if err := r.done(); err != nil {
		return spf.LSP{}, err
	}
	if len(auth) > 0 {
		l.Opaque = bytes.Clone(auth)
	}
	return l, nil
}

// compareAdj is the canonical adjacency order, the same as package spf's.
func compareAdj(a, b spf.Adjacency) int {
	if a.Neighbor != b.Neighbor {
		if a.Neighbor < b.Neighbor {
			return -1
		}
		return 1
	}
	switch {
	case a.LinkID != b.LinkID:
		if a.LinkID < b.LinkID {
			return -1
		}
		return 1
	case a.Metric != b.Metric:
		if a.Metric < b.Metric {
			return -1
		}
		return 1
	}
	return 0
}

// Signer seals the LSPs a node originates: content with the node's
// signature, purges with the node as purger.
type Signer struct {
	ID  spf.NodeID
	Key ed25519.PrivateKey
}

// Seal sets l.Opaque to l's authentication. It is pure (Ed25519 signing is
// deterministic), as spf.Options.Seal requires. An LSP that cannot be
// encoded gets no authentication, and its receivers drop it.
func (s Signer) Seal(l *spf.LSP) {
	l.Opaque = nil
	if l.Purged || l.RemainingLifetime == 0 {
		l.Opaque = s.PurgeAuth(l)
		return
	}
	msg, err := contentMessage(l)
	if err != nil {
		return
	}
	l.Opaque = append([]byte{authSignature}, ed25519.Sign(s.Key, msg)...)
}

// PurgeAuth is the authentication of a purge of l made by s, for purges the
// LSDB makes when a fragment's lifetime runs out.
func (s Signer) PurgeAuth(l *spf.LSP) []byte {
	msg, err := purgeMessage(l, s.ID)
	if err != nil {
		return nil
	}
	out := []byte{authPurge, byte(len(s.ID))}
	out = append(out, s.ID...)
	return append(out, ed25519.Sign(s.Key, msg)...)
}

func contentMessage(l *spf.LSP) ([]byte, error) {
	msg := []byte(contentContext)
	c := *l
	c.Purged = false
	c.RemainingLifetime = 1 // a content LSP; the value is not signed
	msg, err := appendLSP(msg, &c, 0, nil)
	return msg, err
}

func purgeMessage(l *spf.LSP, purger spf.NodeID) ([]byte, error) {
	msg := []byte(purgeContext)
	var err error
	if msg, err = appendNode(msg, l.Origin); err != nil {
		return nil, err
	}
	msg = append(msg, l.Fragment)
	msg = binary.BigEndian.AppendUint32(msg, l.Seq)
	return appendNode(msg, purger)
}

// Keys gives the public key of a trusted node.
type Keys func(spf.NodeID) (ed25519.PublicKey, bool)

// IsPurgeAuth reports whether l carries a purge authentication (of any
// purger); a purge without one is re-authenticated by the node flooding it.
func IsPurgeAuth(l *spf.LSP) bool {
	return len(l.Opaque) > 0 && l.Opaque[0] == authPurge
}

// Verify checks l's authentication: a content LSP must be signed by its
// origin, a purge by a trusted purger. It returns the signer.
func Verify(l *spf.LSP, keys Keys) (spf.NodeID, error) {
	if len(l.Opaque) == 0 {
		return "", ErrNoAuth
	}
	purge := l.Purged || l.RemainingLifetime == 0
	switch {
	case !purge && l.Opaque[0] == authSignature && len(l.Opaque) == 1+ed25519.SignatureSize:
		pub, ok := keys(l.Origin)
		if !ok {
			return l.Origin, fmt.Errorf("%w: %s", ErrUntrusted, l.Origin)
		}
		msg, err := contentMessage(l)
		if err != nil {
			return l.Origin, err
		}
		if !ed25519.Verify(pub, msg, l.Opaque[1:]) {
			return l.Origin, fmt.Errorf("%w: LSP %s by %s", ErrBadSignature, l.ID(), l.Origin)
		}
		return l.Origin, nil
	case purge && l.Opaque[0] == authPurge && len(l.Opaque) >= 2:
		n := int(l.Opaque[1])
		if n == 0 || len(l.Opaque) != 2+n+ed25519.SignatureSize {
			return "", ErrNoAuth
		}
		purger := spf.NodeID(l.Opaque[2 : 2+n])
		pub, ok := keys(purger)
		if !ok {
			return purger, fmt.Errorf("%w: purger %s", ErrUntrusted, purger)
		}
		msg, err := purgeMessage(l, purger)
		if err != nil {
			return purger, err
		}
		if !ed25519.Verify(pub, msg, l.Opaque[2+n:]) {
			return purger, fmt.Errorf("%w: purge of %s by %s", ErrBadSignature, l.ID(), purger)
		}
		return purger, nil
	}
	return "", ErrNoAuth
}
