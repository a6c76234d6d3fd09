package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Pod signalling (signal 1, the draft's Service Prefix Announcement): the
// bodies of the control messages a pod and its SG exchange on the pod's
// port. docs/wire.md gives the byte layout; every field is big-endian and
// strings are length-prefixed ASCII.
//
//	pod → SG  ANNOUNCE   prefix, certificate chain (DER, leaf first)
//	SG → pod  CHALLENGE  prefix, 32-byte challenge, SG node id, SG port
//	pod → SG  PROOF      prefix, challenge, signature (ca.SignProof)
//	SG → pod  ACCEPT     prefix, instance key, keepalive interval, hold time, lease
//	SG → pod  REJECT     prefix, reason, retry after, text
//	pod ↔ SG  KEEPALIVE  instance key (the SG echoes each one)
//	pod → SG  WITHDRAW   instance key (the SG echoes it once done)
//	pod → SG  RESOLVE    destination key
//	SG → pod  RESOLVED   destination key, reachable, metric

// More message types of SignalPod (see control.go for 1–7).
const (
	PodResolve  = 8
	PodResolved = 9
)

// Limits of pod messages.
const (
	ChallengeSize = 32
	MaxCertChain  = 4
	MaxReasonText = 256
)

// PodReason is why an SG refused an announcement. Codes 1–99 are SPA's
// decision reasons, passed through (api/spa/spa.proto, enum Reason); codes
// from 100 are the SG's own.
type PodReason uint16

// The SG's own reasons.
const (
	ReasonSPAUnavailable  PodReason = 100 // SPA did not answer: retry after the given time
	ReasonMalformed       PodReason = 101 // the message did not decode
	ReasonNoChallenge     PodReason = 102 // a PROOF without a live CHALLENGE (expired, or never sent)
	ReasonPortBusy        PodReason = 103 // the port holds its maximum of instances
	ReasonWrongPrefix     PodReason = 104 // the PROOF names another prefix than the ANNOUNCE
	ReasonRateLimited     PodReason = 105 // too many announcements on this port: retry later
	ReasonUnknownInstance PodReason = 106 // KEEPALIVE or WITHDRAW of an instance the port does not hold
)

// ErrPodMessage wraps every decoding error of a pod message.
var ErrPodMessage = errors.New("wire: bad pod message")

// Announce is an ANNOUNCE body.
type Announce struct {
	Prefix    string
	CertChain [][]byte
}

// Challenge is a CHALLENGE body.
type Challenge struct {
	Prefix    string
	Challenge [ChallengeSize]byte
	SG        string
	Port      uint32
}

// Proof is a PROOF body.
type Proof struct {
	Prefix    string
	Challenge [ChallengeSize]byte
	Signature []byte
}

// Accept is an ACCEPT body.
type Accept struct {
	Prefix string
	// Instance is the pod's instance key: the service key with the
	// instance id SPA allocated. The pod sends from it.
	Instance Key
	// Keepalive is how often the pod sends KEEPALIVE; Hold how long the SG
	// waits without one before it withdraws the instance; Lease how long SPA
	// holds the instance (the SG renews it while the pod is alive).
	Keepalive, Hold, Lease time.Duration
}

// Reject is a REJECT body.
type Reject struct {
	Prefix string
	Reason PodReason
	// RetryAfter, when non-zero, says the refusal is temporary.
	RetryAfter time.Duration
	Text       string
}

// InstanceMsg is a KEEPALIVE or WITHDRAW body.
type InstanceMsg struct{ Instance Key }

// Resolve is a RESOLVE body: may this destination be reached?
type Resolve struct{ Dst Key }

// Resolved is a RESOLVED body.
type Resolved struct {
	Dst       Key
	Reachable bool
	Metric    uint32
}

type podReader struct {
	b   []byte
	err error
}

func (r *podReader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("%w: %s truncated", ErrPodMessage, field)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *podReader) u8(field string) uint8 {
	if v := r.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (r *podReader) u16(field string) uint16 {
	if v := r.take(field, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *podReader) u32(field string) uint32 {
	if v := r.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *podReader) ms(field string) time.Duration {
	return time.Duration(r.u32(field)) * time.Millisecond
}

func (r *podReader) str8(field string) string { return string(r.take(field, int(r.u8(field)))) }

// prefix reads a service prefix and checks it parses.
func (r *podReader) prefix() string {
	s := r.str8("prefix")
	if r.err == nil {
		if _, err := ParseName(s); err != nil {
			r.err = fmt.Errorf("%w: prefix: %v", ErrPodMessage, err)
		}
	}
	return s
}

func (r *podReader) key(field string) Key {
	var k Key
	copy(k[:], r.take(field, 16))
	return k
}

func (r *podReader) done() error {
	if r.err == nil && len(r.b) > 0 {
		return fmt.Errorf("%w: %d bytes after the message", ErrPodMessage, len(r.b))
	}
	return r.err
}

func appendStr8(dst []byte, field, s string) ([]byte, error) {
	if len(s) > 255 {
		return dst, fmt.Errorf("%w: %s of %d bytes", ErrPodMessage, field, len(s))
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...), nil
}

func appendMS(dst []byte, field string, d time.Duration) ([]byte, error) {
	ms := d / time.Millisecond
	if ms < 0 || ms > 1<<32-1 {
		return dst, fmt.Errorf("%w: %s %v out of range", ErrPodMessage, field, d)
	}
	return binary.BigEndian.AppendUint32(dst, uint32(ms)), nil
}

func checkBody(b []byte) ([]byte, error) {
	if len(b) > MaxControlBody {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrPodMessage, len(b), MaxControlBody)
	}
	return b, nil
}

// Append appends the ANNOUNCE body.
func (m Announce) Append(dst []byte) ([]byte, error) {
	if len(m.CertChain) == 0 || len(m.CertChain) > MaxCertChain {
		return dst, fmt.Errorf("%w: %d certificates (want 1 to %d)", ErrPodMessage, len(m.CertChain), MaxCertChain)
	}
	start := len(dst)
	dst, err := appendStr8(dst, "prefix", m.Prefix)
	if err != nil {
		return dst, err
	}
	dst = append(dst, byte(len(m.CertChain)))
	for _, c := range m.CertChain {
		if len(c) == 0 || len(c) > 0xffff {
			return dst, fmt.Errorf("%w: certificate of %d bytes", ErrPodMessage, len(c))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(c)))
		dst = append(dst, c...)
	}
	if _, err := checkBody(dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// DecodeAnnounce reads an ANNOUNCE body. The certificates alias b.
func DecodeAnnounce(b []byte) (Announce, error) {
	r := podReader{b: b}
	m := Announce{Prefix: r.prefix()}
	n := int(r.u8("certificate count"))
	if r.err == nil && (n == 0 || n > MaxCertChain) {
		r.err = fmt.Errorf("%w: %d certificates (want 1 to %d)", ErrPodMessage, n, MaxCertChain)
	}
	for i := 0; i < n && r.err == nil; i++ {
		c := r.take("certificate", int(r.u16("certificate length")))
		if r.err == nil && len(c) == 0 {
			r.err = fmt.Errorf("%w: empty certificate", ErrPodMessage)
		}
		m.CertChain = append(m.CertChain, c)
	}
	return m, r.done()
}

// Append appends the CHALLENGE body.
func (m Challenge) Append(dst []byte) ([]byte, error) {
	dst, err := appendStr8(dst, "prefix", m.Prefix)
	if err != nil {
		return dst, err
	}
	dst = append(dst, m.Challenge[:]...)
	if dst, err = appendStr8(dst, "sg", m.SG); err != nil {
		return dst, err
	}
	return binary.BigEndian.AppendUint32(dst, m.Port), nil
}

// DecodeChallenge reads a CHALLENGE body.
func DecodeChallenge(b []byte) (Challenge, error) {
	r := podReader{b: b}
	m := Challenge{Prefix: r.prefix()}
	copy(m.Challenge[:], r.take("challenge", ChallengeSize))
	m.SG = r.str8("sg")
	if r.err == nil && m.SG == "" {
		r.err = fmt.Errorf("%w: empty SG id", ErrPodMessage)
	}
	m.Port = r.u32("port")
	return m, r.done()
}

// Append appends the PROOF body.
func (m Proof) Append(dst []byte) ([]byte, error) {
	dst, err := appendStr8(dst, "prefix", m.Prefix)
	if err != nil {
		return dst, err
	}
	dst = append(dst, m.Challenge[:]...)
	if len(m.Signature) == 0 || len(m.Signature) > 512 {
		return dst, fmt.Errorf("%w: signature of %d bytes", ErrPodMessage, len(m.Signature))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Signature)))
	return append(dst, m.Signature...), nil
}

// DecodeProof reads a PROOF body. The signature aliases b.
func DecodeProof(b []byte) (Proof, error) {
	r := podReader{b: b}
	m := Proof{Prefix: r.prefix()}
	copy(m.Challenge[:], r.take("challenge", ChallengeSize))
	n := int(r.u16("signature length"))
	if r.err == nil && (n == 0 || n > 512) {
		r.err = fmt.Errorf("%w: signature of %d bytes", ErrPodMessage, n)
	}
	m.Signature = r.take("signature", n)
	return m, r.done()
}

// Append appends the ACCEPT body.
func (m Accept) Append(dst []byte) ([]byte, error) {
	dst, err := appendStr8(dst, "prefix", m.Prefix)
	if err != nil {
		return dst, err
	}
	dst = append(dst, m.Instance[:]...)
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"keepalive", m.Keepalive}, {"hold", m.Hold}, {"lease", m.Lease}} {
		if dst, err = appendMS(dst, f.name, f.d); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// DecodeAccept reads an ACCEPT body.
func DecodeAccept(b []byte) (Accept, error) {
	r := podReader{b: b}
	m := Accept{Prefix: r.prefix(), Instance: r.key("instance")}
	m.Keepalive, m.Hold, m.Lease = r.ms("keepalive"), r.ms("hold"), r.ms("lease")
	if r.err == nil && m.Instance.Instance() == 0 {
		r.err = fmt.Errorf("%w: instance key without an instance id", ErrPodMessage)
	}
	return m, r.done()
}

// Append appends the REJECT body.
func (m Reject) Append(dst []byte) ([]byte, error) {
	dst, err := appendStr8(dst, "prefix", m.Prefix)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Reason))
	if dst, err = appendMS(dst, "retry after", m.RetryAfter); err != nil {
		return dst, err
	}
	text := m.Text
	if len(text) > MaxReasonText {
		text = text[:MaxReasonText]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(text)))
	return append(dst, text...), nil
}

// DecodeReject reads a REJECT body. The prefix may be empty: a REJECT can
// answer a message that did not decode.
func DecodeReject(b []byte) (Reject, error) {
	r := podReader{b: b}
	m := Reject{Prefix: r.str8("prefix")}
	if r.err == nil && m.Prefix != "" {
		if _, err := ParseName(m.Prefix); err != nil {
			r.err = fmt.Errorf("%w: prefix: %v", ErrPodMessage, err)
		}
	}
	m.Reason = PodReason(r.u16("reason"))
	m.RetryAfter = r.ms("retry after")
	n := int(r.u16("text length"))
	if r.err == nil && n > MaxReasonText {
		r.err = fmt.Errorf("%w: reason text of %d bytes", ErrPodMessage, n)
	}
	m.Text = string(r.take("text", n))
	return m, r.done()
}

// Append appends a KEEPALIVE or WITHDRAW body.
func (m InstanceMsg) Append(dst []byte) ([]byte, error) { return append(dst, m.Instance[:]...), nil }

// DecodeInstanceMsg reads a KEEPALIVE or WITHDRAW body.
func DecodeInstanceMsg(b []byte) (InstanceMsg, error) {
	r := podReader{b: b}
	m := InstanceMsg{Instance: r.key("instance")}
	if r.err == nil && m.Instance.Instance() == 0 {
		r.err = fmt.Errorf("%w: instance key without an instance id", ErrPodMessage)
	}
	return m, r.done()
}

// Append appends a RESOLVE body.
func (m Resolve) Append(dst []byte) ([]byte, error) { return append(dst, m.Dst[:]...), nil }

// DecodeResolve reads a RESOLVE body.
func DecodeResolve(b []byte) (Resolve, error) {
	r := podReader{b: b}
	m := Resolve{Dst: r.key("destination")}
	return m, r.done()
}

// Append appends a RESOLVED body.
func (m Resolved) Append(dst []byte) ([]byte, error) {
	dst = append(dst, m.Dst[:]...)
	var ok byte
	if m.Reachable {
		ok = 1
	}
	dst = append(dst, ok)
	return binary.BigEndian.AppendUint32(dst, m.Metric), nil
}

// DecodeResolved reads a RESOLVED body.
func DecodeResolved(b []byte) (Resolved, error) {
	r := podReader{b: b}
	m := Resolved{Dst: r.key("destination")}
	switch ok := r.u8("reachable"); {
	case r.err != nil:
	case ok > 1:
		r.err = fmt.Errorf("%w: reachable flag %d", ErrPodMessage, ok)
	default:
		m.Reachable = ok == 1
	}
	m.Metric = r.u32("metric")
	return m, r.done()
}

// String names a reason for logs and errors.
func (r PodReason) String() string {
	switch r {
	case ReasonSPAUnavailable:
		return "spa_unavailable"
	case ReasonMalformed:
		return "malformed"
	case ReasonNoChallenge:
		return "no_challenge"
	case ReasonPortBusy:
		return "port_busy"
	case ReasonWrongPrefix:
		return "wrong_prefix"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonUnknownInstance:
		return "unknown_instance"
	}
	if r > 0 && r < 100 {
		return fmt.Sprintf("spa_reason_%d", r)
	}
	return fmt.Sprintf("reason_%d", r)
}
