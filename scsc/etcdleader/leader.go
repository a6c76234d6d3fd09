// Package etcdleader is SCSC's leader election through etcd (DESIGN §7):
// replicas campaign on one key prefix with a lease of the configured TTL;
// the one elected pushes policies, the others follow until its lease lapses.
package etcdleader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/dmsc-mesh/dmsc/scsc"
)

// Leader campaigns for SCSC's leadership in etcd. It implements scsc.Leader.
type Leader struct {
	client *clientv3.Client
	id     string
	prefix string
	ttl    time.Duration
	log    *slog.Logger
}

var _ scsc.Leader = (*Leader)(nil)

// New connects to the etcd endpoints of cfg (TLS is not configured here:
// endpoints on a trusted network or loopback) and returns a Leader that
// campaigns as id. Close releases the connection.
func New(cfg *scsc.ElectionConfig, id string, log *slog.Logger) (*Leader, error) {
	if cfg == nil || len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdleader: no endpoints")
	}
	if log == nil {
		log = slog.Default()
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		// etcd's client logs with zap; SCSC logs what matters itself.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdleader: %w", err)
	}
	ttl := cfg.TTL
	if ttl < time.Second {
		ttl = scsc.DefaultElectionTTL
	}
	return &Leader{client: c, id: id, prefix: cfg.Prefix, ttl: ttl, log: log}, nil
}

// Close closes the etcd client.
func (l *Leader) Close() error { return l.client.Close() }

// Lead campaigns until ctx ends: it sends true once elected and false when
// the session's lease is lost (etcd unreachable for longer than the TTL, or
// the key deleted), then campaigns again. On ctx's end it resigns, so that
// another replica takes over at once rather than after the TTL.
func (l *Leader) Lead(ctx context.Context, leads chan<- bool) error {
	for {
		sess, err := concurrency.NewSession(l.client, concurrency.WithTTL(int(l.ttl.Seconds())), concurrency.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("etcdleader: session: %w", err)
		}
		el := concurrency.NewElection(sess, l.prefix)
		if err := el.Campaign(ctx, l.id); err != nil {
			sess.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("etcdleader: campaign: %w", err)
		}
		l.log.Info("etcdleader: elected", "id", l.id, "prefix", l.prefix)
		if !report(ctx, leads, true) {
			l.resign(el, sess)
			return ctx.Err()
		}
		select {
		case <-sess.Done():
			l.log.Warn("etcdleader: lease lost; campaigning again", "id", l.id)
			report(ctx, leads, false)
		case <-ctx.Done():
			l.resign(el, sess)
			return ctx.Err()
		}
	}
}

func (l *Leader) resign(el *concurrency.Election, sess *concurrency.Session) {
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := el.Resign(rctx); err != nil {
		l.log.Warn("etcdleader: resign failed; the lease lapses at its TTL", "err", err)
	}
	sess.Close()
}

func report(ctx context.Context, leads chan<- bool, v bool) bool {
	if leads == nil {
		return true
	}
	select {
	case leads <- v:
		return true
	case <-ctx.Done():
		return false
	}
}
