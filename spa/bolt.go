package spa

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dmsc-mesh/dmsc/wire"
)

// Bucket layout of BoltStore. Names never contain a 0 byte, so
// name+"\x00"+... keys sort every instance of a name together.
var (
	bucketNames     = []byte("names")     // key (16) → name
	bucketServices  = []byte("services")  // name → Service (JSON)
	bucketInstances = []byte("instances") // name 0x00 id (4) → Instance (JSON)
	bucketAttach    = []byte("attach")    // name 0x00 sg 0x00 port (4) → id (4)
)

// BoltStore is the embedded Store: one bbolt file, fsynced on every commit.
type BoltStore struct {
	db *bolt.DB
}

// OpenBoltStore opens (or creates, 0600) the store at path. bbolt locks the
// file, so a second SPA on the same file waits up to a second and fails
// rather than corrupting it.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("spa store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNames, bucketServices, bucketInstances, bucketAttach} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("spa store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// View implements Store.
func (s *BoltStore) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements Store.
func (s *BoltStore) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) NameOf(key wire.Key) (string, bool, error) {
	v := t.tx.Bucket(bucketNames).Get(key[:])
	if v == nil {
		return "", false, nil
	}
	return string(v), true, nil
}

func (t boltTx) BindName(key wire.Key, name string) error {
	return t.tx.Bucket(bucketNames).Put(bytes.Clone(key[:]), []byte(name))
}

func (t boltTx) Service(name string) (Service, bool, error) {
	var s Service
	v := t.tx.Bucket(bucketServices).Get([]byte(name))
	if v == nil {
		return s, false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, false, fmt.Errorf("spa store: service %q: %w", name, err)
	}
	return s, true, nil
}

func (t boltTx) PutService(s Service) error {
	if err := checkStoreName(s.Name); err != nil {
		return err
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketServices).Put([]byte(s.Name), v)
}

func (t boltTx) Services(after string, fn func(Service) bool) error {
	c := t.tx.Bucket(bucketServices).Cursor()
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	for ; k != nil; k, v = c.Next() {
		var s Service
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("spa store: service %q: %w", k, err)
		}
		if !fn(s) {
			return nil
		}
	}
	return nil
}

func instKey(name string, id uint32) []byte {
	k := make([]byte, 0, len(name)+5)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, id)
}

func attachKey(name, sg string, port uint32) []byte {
	k := make([]byte, 0, len(name)+len(sg)+6)
	k = append(k, name...)
	k = append(k, 0)
	k = append(k, sg...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, port)
}

func (t boltTx) Instance(name string, id uint32) (Instance, bool, error) {
	var in Instance
	v := t.tx.Bucket(bucketInstances).Get(instKey(name, id))
	if v == nil {
		return in, false, nil
	}
	if err := json.Unmarshal(v, &in); err != nil {
		return in, false, fmt.Errorf("spa store: instance %s#%d: %w", name, id, err)
	}
	return in, true, nil
}

func (t boltTx) InstanceAt(name, sg string, port uint32) (Instance, bool, error) {
	v := t.tx.Bucket(bucketAttach).Get(attachKey(name, sg, port))
	if len(v) != 4 {
		return Instance{}, false, nil
	}
	return t.Instance(name, binary.BigEndian.Uint32(v))
}

func (t boltTx) PutInstance(in Instance) error {
	if err := checkStoreName(in.Name); err != nil {
		return err
	}
	if strings.IndexByte(in.SG, 0) >= 0 {
		return errors.New("spa store: SG id contains a 0 byte")
	}
	// An instance that moved (same id, other attachment) must not leave its
	// old attachment pointing at it.
	if old, ok, err := t.Instance(in.Name, in.ID); err != nil {
		return err
	} else if ok && (old.SG != in.SG || old.Port != in.Port) {
		if err := t.tx.Bucket(bucketAttach).Delete(attachKey(old.Name, old.SG, old.Port)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketInstances).Put(instKey(in.Name, in.ID), v); err != nil {
		return err
	}
	return t.tx.Bucket(bucketAttach).Put(attachKey(in.Name, in.SG, in.Port), binary.BigEndian.AppendUint32(nil, in.ID))
}

func (t boltTx) DeleteInstance(name string, id uint32) error {
	old, ok, err := t.Instance(name, id)
	if err != nil || !ok {
		return err
	}
	if err := t.tx.Bucket(bucketAttach).Delete(attachKey(old.Name, old.SG, old.Port)); err != nil {
		return err
	}
	return t.tx.Bucket(bucketInstances).Delete(instKey(name, id))
}

func (t boltTx) Instances(name string, fn func(Instance) bool) error {
	c := t.tx.Bucket(bucketInstances).Cursor()
	var prefix []byte
	if name != "" {
		prefix = append([]byte(name), 0)
	}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var in Instance
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("spa store: instance record %q: %w", k, err)
		}
		if !fn(in) {
			return nil
		}
	}
	return nil
}

func checkStoreName(name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("spa store: bad name %q", name)
	}
	return nil
}
