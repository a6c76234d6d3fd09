package lsmsg

import (
	"encoding/binary"
	"fmt"

	"github.com/dmsc-mesh/dmsc/spf"
)

// Entry sizes bound how many fit one message.
const (
	// summaryFixed is a summary entry without its origin: len8, fragment,
	// seq, lifetime, hash.
	summaryFixed = 1 + 1 + 4 + 2 + 8
	// idFixed is a fragment id without its origin: len8, fragment.
	idFixed = 1 + 1
)

// SummarySize is the encoded size of one summary (ACK and DB_SUMMARY entry).
func SummarySize(s spf.Summary) int { return summaryFixed + len(s.Origin) }

// IDSize is the encoded size of one fragment id (DB_REQUEST entry, range ends).
func IDSize(id spf.FragmentID) int { return idFixed + len(id.Origin) }

func appendSummary(dst []byte, s spf.Summary) ([]byte, error) {
	dst, err := appendNode(dst, s.Origin)
	if err != nil {
		return dst, err
	}
	dst = append(dst, s.Fragment)
	dst = binary.BigEndian.AppendUint32(dst, s.Seq)
	dst = binary.BigEndian.AppendUint16(dst, s.RemainingLifetime)
	return binary.BigEndian.AppendUint64(dst, s.Hash), nil
}

func (r *reader) summary() spf.Summary {
	var s spf.Summary
	s.Origin = r.node("summary origin")
	s.Fragment = r.u8("summary fragment")
	s.Seq = r.u32("summary seq")
	s.RemainingLifetime = r.u16("summary lifetime")
	s.Hash = r.u64("summary hash")
	return s
}

func appendID(dst []byte, id spf.FragmentID) ([]byte, error) {
	dst, err := appendNode(dst, id.Origin)
	if err != nil {
		return dst, err
	}
	return append(dst, id.Fragment), nil
}

func (r *reader) id(field string) spf.FragmentID {
	o := r.optNode(field)
	return spf.FragmentID{Origin: o, Fragment: r.u8(field)}
}

// Ack is an ACK body: the fragments acknowledged, as their summaries (the
// sender of an LSP stops retransmitting it once the acknowledged copy is the
// one it sent, or newer).
type Ack struct{ Entries []spf.Summary }

// AppendAck appends an ACK body.
func AppendAck(dst []byte, a Ack) ([]byte, error) {
	return appendSummaries(dst, a.Entries)
}

func appendSummaries(dst []byte, es []spf.Summary) ([]byte, error) {
	if len(es) > 0xffff {
		return dst, fmt.Errorf("%w: %d entries", ErrTooLarge, len(es))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(es)))
	var err error
	for _, s := range es {
		if dst, err = appendSummary(dst, s); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func (r *reader) summaries() []spf.Summary {
	n := int(r.u16("entry count"))
	if r.err != nil || n == 0 {
		return nil
	}
	if n*(summaryFixed+1) > len(r.b) {
		r.fail("entry count", ErrTruncated)
		return nil
	}
	out := make([]spf.Summary, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.summary())
	}
	return out
}

// DecodeAck reads an ACK body.
func DecodeAck(b []byte) (Ack, error) {
	r := reader{b: b}
	a := Ack{Entries: r.summaries()}
	return a, r.done()
}

// DBSummary is one DB_SUMMARY body (IS-IS CSNP): the summaries of every
// fragment the sender holds after After (exclusive) up to Through
// (inclusive), in order. A database takes as many messages as it needs, each
// starting where the previous one ended, so together they cover the whole id
// space without gaps; each is compared on its own, so a lost message costs
// only its range until the next summary. First means there is no After (the
// range starts at the beginning of the id space), Last that there is no
// Through (it runs to the end). WantReply, on a first range, asks the
// receiver for its own summary: a node whose adjacency came up (after an
// agent restart, say) while the neighbour's stayed up still gets one.
type DBSummary struct {
	After, Through spf.FragmentID
	First, Last    bool
	WantReply      bool
	Entries        []spf.Summary
}

// Covers reports whether id lies in the summary's range.
func (s DBSummary) Covers(id spf.FragmentID) bool {
	return (s.First || compareID(id, s.After) > 0) && (s.Last || compareID(id, s.Through) <= 0)
}

const (
	rangeFirst = 1 << 0
	rangeLast  = 1 << 1
	wantReply  = 1 << 2
	allFlags   = rangeFirst | rangeLast | wantReply
)

// AppendDBSummary appends a DB_SUMMARY body.
func AppendDBSummary(dst []byte, s DBSummary) ([]byte, error) {
	var flags byte
	if s.First {
		flags |= rangeFirst
	}
	if s.Last {
		flags |= rangeLast
	}
	if s.WantReply {
		flags |= wantReply
	}
	dst = append(dst, flags)
	var err error
	if dst, err = appendID(dst, s.After); err != nil {
		return dst, err
	}
	if dst, err = appendID(dst, s.Through); err != nil {
		return dst, err
	}
	return appendSummaries(dst, s.Entries)
}

// DecodeDBSummary reads a DB_SUMMARY body.
func DecodeDBSummary(b []byte) (DBSummary, error) {
	r := reader{b: b}
	flags := r.u8("flags")
	s := DBSummary{First: flags&rangeFirst != 0, Last: flags&rangeLast != 0, WantReply: flags&wantReply != 0}
	if r.err == nil && flags&^allFlags != 0 {
		r.fail("flags", fmt.Errorf("%w: unknown flags %#x", ErrField, flags))
	}
	s.After = r.id("after")
	s.Through = r.id("through")
	s.Entries = r.summaries()
	if err := r.done(); err != nil {
		return DBSummary{}, err
	}
	if !s.First && !s.Last && compareID(s.After, s.Through) >= 0 {
		return DBSummary{}, fmt.Errorf("%w: empty range %s..%s", ErrField, s.After, s.Through)
	}
	// Entries must lie in the range, in order: a receiver compares its own
	// database over exactly that range.
	for i, e := range s.Entries {
		if !s.Covers(e.ID()) {
			return DBSummary{}, fmt.Errorf("%w: entry %s outside the range %s..%s", ErrField, e.ID(), s.After, s.Through)
		}
		if i > 0 && compareID(s.Entries[i-1].ID(), e.ID()) >= 0 {
			return DBSummary{}, fmt.Errorf("%w: entries not in order at %d", ErrField, i)
		}
	}
	return s, nil
}

// DBRequest is a DB_REQUEST body (IS-IS PSNP request): fragments the sender
// wants the receiver to send.
type DBRequest struct{ IDs []spf.FragmentID }

// AppendDBRequest appends a DB_REQUEST body.
func AppendDBRequest(dst []byte, q DBRequest) ([]byte, error) {
	if len(q.IDs) > 0xffff {
		return dst, fmt.Errorf("%w: %d ids", ErrTooLarge, len(q.IDs))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(q.IDs)))
	var err error
	for _, id := range q.IDs {
		if id.Origin == "" {
			return dst, fmt.Errorf("%w: request for an empty origin", ErrField)
		}
		if dst, err = appendID(dst, id); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// DecodeDBRequest reads a DB_REQUEST body.
func DecodeDBRequest(b []byte) (DBRequest, error) {
	r := reader{b: b}
	n := int(r.u16("id count"))
	var q DBRequest
	if r.err == nil && n*(idFixed+1) > len(r.b) {
		r.fail("id count", ErrTruncated)
	}
	for i := 0; i < n && r.err == nil; i++ {
		id := spf.FragmentID{Origin: r.node("id origin")}
		id.Fragment = r.u8("id fragment")
		q.IDs = append(q.IDs, id)
	}
	return q, r.done()
}

// CompareID orders fragment ids by origin, then fragment: the order of
// summaries and ranges.
func CompareID(a, b spf.FragmentID) int { return compareID(a, b) }

func compareID(a, b spf.FragmentID) int {
	switch {
	case a.Origin < b.Origin:
		return -1
	case a.Origin > b.Origin:
		return 1
	case a.Fragment < b.Fragment:
		return -1
	case a.Fragment > b.Fragment:
		return 1
	}
	return 0
}
