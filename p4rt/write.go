package p4rt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Atomicity is a Write's batch semantics.
type Atomicity = p4v1.WriteRequest_Atomicity

// Atomicity modes.
const (
	ContinueOnError = p4v1.WriteRequest_CONTINUE_ON_ERROR
	RollbackOnError = p4v1.WriteRequest_ROLLBACK_ON_ERROR
	DataplaneAtomic = p4v1.WriteRequest_DATAPLANE_ATOMIC
)

// UpdateError is the outcome of one failed update of a Write.
type UpdateError struct {
	Index   int // position in the updates passed to Write
	Code    codes.Code
	Message string
	Update  *p4v1.Update
}

// WriteError reports the updates of a Write that failed; the others applied
// (with ContinueOnError) or were not applied (atomic modes: Code ABORTED).
type WriteError struct {
	Updates []UpdateError
}

func (e *WriteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "p4rt: write: %d update(s) failed", len(e.Updates))
	for i, u := range e.Updates {
		if i == 3 {
			fmt.Fprintf(&b, "; …")
			break
		}
		fmt.Fprintf(&b, "; #%d %s: %s", u.Index, u.Code, u.Message)
	}
	return b.String()
}

// Code returns the code of the update at index i of the Write (OK when it
// did not fail).
func (e *WriteError) Code(i int) codes.Code {
	for _, u := range e.Updates {
		if u.Index == i {
			return u.Code
		}
	}
	return codes.OK
}

// OnlyCodes reports whether every failed update failed with one of these
// codes: an agent re-applying state treats ALREADY_EXISTS on INSERT or
// NOT_FOUND on DELETE as done.
func (e *WriteError) OnlyCodes(cs ...codes.Code) bool {
	for _, u := range e.Updates {
		ok := false
		for _, c := range cs {
			ok = ok || u.Code == c
		}
		if !ok {
			return false
		}
	}
	return true
}

// Insert, Modify and Delete wrap entities (*p4v1.TableEntry,
// *p4v1.ActionProfileMember, *p4v1.ActionProfileGroup or *p4v1.Entity) into
// updates.
func Insert(e any) *p4v1.Update { return &p4v1.Update{Type: p4v1.Update_INSERT, Entity: entity(e)} }

// Modify wraps an entity into a MODIFY update.
func Modify(e any) *p4v1.Update { return &p4v1.Update{Type: p4v1.Update_MODIFY, Entity: entity(e)} }

// Delete wraps an entity into a DELETE update.
func Delete(e any) *p4v1.Update { return &p4v1.Update{Type: p4v1.Update_DELETE, Entity: entity(e)} }

func entity(e any) *p4v1.Entity {
	switch v := e.(type) {
	case *p4v1.Entity:
		return v
	case *p4v1.TableEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: v}}
	case *p4v1.ActionProfileMember:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: v}}
	case *p4v1.ActionProfileGroup:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: v}}
	case *p4v1.CounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: v}}
	case *p4v1.DirectCounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: v}}
	}
	panic(fmt.Sprintf("p4rt: %T is not an entity", e))
}

// Write sends updates in order, in RPCs of at most Options.BatchSize
// updates, with ContinueOnError. A failed update is reported in a
// *WriteError with its index; an RPC that fails as a whole returns its gRPC
// error, and the updates after it are not sent.
func (c *Client) Write(ctx context.Context, updates ...*p4v1.Update) error {
	return c.WriteAtomic(ctx, ContinueOnError, updates...)
}

// WriteAtomic is Write with the given atomicity for each RPC. Atomic modes
// are atomic per RPC: keep such writes within one batch.
func (c *Client) WriteAtomic(ctx context.Context, atomicity Atomicity, updates ...*p4v1.Update) error {
	var failed []UpdateError
	for start := 0; start < len(updates); start += c.opts.BatchSize {
		end := min(start+c.opts.BatchSize, len(updates))
		req := &p4v1.WriteRequest{
			DeviceId:   c.opts.DeviceID,
			ElectionId: c.opts.ElectionID.proto(),
			Role:       c.opts.Role,
			Updates:    updates[start:end],
			Atomicity:  atomicity,
		}
		_, err := c.rpc.Write(ctx, req)
		if err == nil {
			continue
		}
		ups, ok := decodeWriteError(err, updates[start:end], start)
		if !ok {
			return fmt.Errorf("p4rt: write of updates %d–%d: %w", start, end-1, err)
		}
		failed = append(failed, ups...)
	}
	if len(failed) > 0 {
		return &WriteError{Updates: failed}
	}
	return nil
}

// decodeWriteError reads the spec's batch error format: status UNKNOWN whose
// details hold one p4.v1.Error per update. It reports false for any other
// error (a whole-RPC failure such as PERMISSION_DENIED).
func decodeWriteError(err error, updates []*p4v1.Update, offset int) ([]UpdateError, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unknown {
		return nil, false
	}
	details := st.Proto().GetDetails()
	if len(details) == 0 {
		return nil, false
	}
	var out []UpdateError
	for i, d := range details {
		var pe p4v1.Error
		if d.UnmarshalTo(&pe) != nil {
			return nil, false
		}
		if codes.Code(pe.CanonicalCode) == codes.OK {
			continue
		}
		ue := UpdateError{Index: offset + i, Code: codes.Code(pe.CanonicalCode), Message: pe.Message}
		if i < len(updates) {
			ue.Update = updates[i]
		}
		out = append(out, ue)
	}
	return out, true
}

// IsCode reports whether err is a gRPC status error with code c, or a
// WriteError whose every failed update has code c.
func IsCode(err error, c codes.Code) bool {
	var we *WriteError
	if errors.As(err, &we) {
		return len(we.Updates) > 0 && we.OnlyCodes(c)
	}
	return status.Code(err) == c
}
