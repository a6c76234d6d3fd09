package p4rt

import (
	"context"
	"errors"
	"fmt"
	"io"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
)

// Read returns every entity matching the (possibly wildcard) entities.
func (c *Client) Read(ctx context.Context, entities ...*p4v1.Entity) ([]*p4v1.Entity, error) {
	var out []*p4v1.Entity
	err := c.ReadFunc(ctx, func(e *p4v1.Entity) error {
		out = append(out, e)
		return nil
	}, entities...)
	return out, err
}

// ReadFunc streams the entities matching the request to fn, as the server
// sends them; an error from fn stops the read and is returned.
func (c *Client) ReadFunc(ctx context.Context, fn func(*p4v1.Entity) error, entities ...*p4v1.Entity) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Read(ctx, &p4v1.ReadRequest{DeviceId: c.opts.DeviceID, Role: c.opts.Role, Entities: entities})
	if err != nil {
		return fmt.Errorf("p4rt: read: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("p4rt: read: %w", err)
		}
		for _, e := range resp.Entities {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// AllTableEntries is the wildcard for every entry of every table.
func AllTableEntries() *p4v1.Entity { return entity(&p4v1.TableEntry{}) }

// TableEntries is the wildcard for every entry of one table.
func TableEntries(tableID uint32) *p4v1.Entity { return entity(&p4v1.TableEntry{TableId: tableID}) }

// Members is the wildcard for every member of an action profile (0: all profiles).
func Members(profileID uint32) *p4v1.Entity {
	return entity(&p4v1.ActionProfileMember{ActionProfileId: profileID})
}

// Groups is the wildcard for every group of an action profile (0: all profiles).
func Groups(profileID uint32) *p4v1.Entity {
	return entity(&p4v1.ActionProfileGroup{ActionProfileId: profileID})
}

// TableEntriesNamed is TableEntries by table name.
func (c *Client) TableEntriesNamed(table string) (*p4v1.Entity, error) {
	s, err := c.requireSchema()
	if err != nil {
		return nil, err
	}
	t, err := s.Table(table)
	if err != nil {
		return nil, err
	}
	return TableEntries(t.Preamble.Id), nil
}

// CounterValue is a packets/bytes pair.
type CounterValue struct{ Packets, Bytes int64 }

// ReadCounter reads one cell of an indexed counter by name, or every cell
// when index is negative (the result is then indexed by cell).
func (c *Client) ReadCounter(ctx context.Context, name string, index int64) (map[int64]CounterValue, error) {
	s, err := c.requireSchema()
	if err != nil {
		return nil, err
	}
	ctr, err := s.Counter(name)
	if err != nil {
		return nil, err
	}
	ce := &p4v1.CounterEntry{CounterId: ctr.Preamble.Id}
	if index >= 0 {
		ce.Index = &p4v1.Index{Index: index}
	}
	out := map[int64]CounterValue{}
	err = c.ReadFunc(ctx, func(e *p4v1.Entity) error {
		got := e.GetCounterEntry()
		if got == nil {
			return nil
		}
		out[got.GetIndex().GetIndex()] = CounterValue{Packets: got.GetData().GetPacketCount(), Bytes: got.GetData().GetByteCount()}
		return nil
	}, entity(ce))
	return out, err
}

// ReadCounterCells reads the given cells of an indexed counter by name in
// one Read: cheaper than a wildcard over a large counter when few cells
// matter (the ports a switch uses of its 512 port counters).
func (c *Client) ReadCounterCells(ctx context.Context, name string, indexes ...int64) (map[int64]CounterValue, error) {
	s, err := c.requireSchema()
	if err != nil {
		return nil, err
	}
	ctr, err := s.Counter(name)
	if err != nil {
		return nil, err
	}
	out := map[int64]CounterValue{}
	if len(indexes) == 0 {
		return out, nil
	}
	ents := make([]*p4v1.Entity, len(indexes))
	for i, ix := range indexes {
		ents[i] = entity(&p4v1.CounterEntry{CounterId: ctr.Preamble.Id, Index: &p4v1.Index{Index: ix}})
	}
	err = c.ReadFunc(ctx, func(e *p4v1.Entity) error {
		if got := e.GetCounterEntry(); got != nil {
			out[got.GetIndex().GetIndex()] = CounterValue{Packets: got.GetData().GetPacketCount(), Bytes: got.GetData().GetByteCount()}
		}
		return nil
	}, ents...)
	return out, err
}

// ReadDirectCounter reads the direct counter of an installed table entry
// (its match is what counts).
func (c *Client) ReadDirectCounter(ctx context.Context, entry *p4v1.TableEntry) (CounterValue, error) {
	req := &p4v1.TableEntry{TableId: entry.TableId, Match: entry.Match, Priority: entry.Priority, IsDefaultAction: entry.IsDefaultAction}
	var v CounterValue
	found := false
	err := c.ReadFunc(ctx, func(e *p4v1.Entity) error {
		if d := e.GetDirectCounterEntry(); d != nil {
			v = CounterValue{Packets: d.GetData().GetPacketCount(), Bytes: d.GetData().GetByteCount()}
			found = true
		}
		return nil
	}, entity(&p4v1.DirectCounterEntry{TableEntry: req}))
	if err == nil && !found {
		err = errors.New("p4rt: no direct counter returned for the entry")
	}
	return v, err
}
