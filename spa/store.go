package spa

import (
	"context"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

// Store keeps SPA's registry: which name holds which key, the announced
// services, and their instances with leases. The server does every
// read-check-write in one transaction function, so a backend only has to
// run such functions serializably: bbolt does (BoltStore); etcd would,
// through its STM (clientv3/concurrency), when SPA runs replicated.
//
// A transaction function may run more than once (an STM retries on
// conflict), so it must have no effect outside the Tx.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed if fn returns
	// nil and rolled back otherwise.
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is one transaction of a Store.
type Tx interface {
	// NameOf is the name bound to key (a name's key, instance segment 0).
	NameOf(key wire.Key) (string, bool, error)
	// BindName binds key to name. Bindings are never removed by SPA: once a
	// name holds a key, no colliding name can take it over, even while the
	// name has no instance.
	BindName(key wire.Key, name string) error

	Service(name string) (Service, bool, error)
	PutService(Service) error
	// Services calls fn for each service with a name after `after`, in name
	// order, until fn returns false.
	Services(after string, fn func(Service) bool) error

	Instance(name string, id uint32) (Instance, bool, error)
	// InstanceAt finds the instance of name attached to SG sg, port port.
	InstanceAt(name, sg string, port uint32) (Instance, bool, error)
	// PutInstance inserts or replaces an instance (by name and id).
	PutInstance(Instance) error
	DeleteInstance(name string, id uint32) error
	// Instances calls fn for each instance of name in id order, or of every
	// name (in name, then id order) when name is "", until fn returns false.
	Instances(name string, fn func(Instance) bool) error
}

// Service is an announced name.
type Service struct {
	Name   string   `json:"name"`
	Key    wire.Key `json:"key"`
	NextID uint32   `json:"next_id"` // where the search for a free instance id starts
	Count  uint32   `json:"count"`   // instances held now
}

// Instance is one (name, SG, SG port) holding an instance id under a lease.
type Instance struct {
	Name         string    `json:"name"`
	ID           uint32    `json:"id"`
	SG           string    `json:"sg"`
	Port         uint32    `json:"port"`
	Identity     string    `json:"identity"` // pod identity URI
	PodPrefix    string    `json:"pod_prefix"`
	Serial       string    `json:"serial"` // pod certificate serial, ca.SerialString
	CertNotAfter time.Time `json:"cert_not_after"`
	Expires      time.Time `json:"expires"`
	Created      time.Time `json:"created"`
}
