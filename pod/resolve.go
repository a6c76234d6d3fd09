package pod

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

// ErrResolveTimeout: the SG did not answer a RESOLVE in time. The route is
// unknown (an SG that does not speak RESOLVE, or a lost frame), not absent.
var ErrResolveTimeout = errors.New("pod: no RESOLVED from the SG in time")

// NoRouteError is Dial's error when the SG said the fabric has no route to
// the dialed name. It wraps ErrNoRoute.
type NoRouteError struct {
	Name string // the dialed service name
}

func (e *NoRouteError) Error() string {
	return "pod: no route to " + e.Name + " (the SG's routing table has none)"
}

// Unwrap makes errors.Is(err, ErrNoRoute) hold.
func (e *NoRouteError) Unwrap() error { return ErrNoRoute }

// Resolve asks the SG whether the fabric has a route to key (a service key
// such as wire.KeyOf of a name, or an instance key) and with which metric.
// It waits up to Config.ResolveTimeout (sending the RESOLVE once more at
// half of it) and then fails with ErrResolveTimeout, which means "unknown":
// the SG may not speak RESOLVE. It works before registration too (the frame
// then carries a zero source key).
func (e *Endpoint) Resolve(ctx context.Context, key wire.Key) (reachable bool, metric uint32, err error) {
	if e.isClosed() {
		return false, 0, fmt.Errorf("pod: resolve %s: %w", key, net.ErrClosed)
	}
	e.sig.install(e)
	body, _ := wire.Resolve{Dst: key}.Append(nil)
	ch := make(chan wire.Resolved, 1)
	e.sig.waitResolve(key, ch)
	defer e.sig.unwaitResolve(key, ch)
	e.sig.stats.resolves.Add(1)
	if err := e.SendControl(wire.SignalPod, wire.PodResolve, body); err != nil {
		return false, 0, fmt.Errorf("pod: resolve %s: %w", key, err)
	}
	timeout := e.cfg.ResolveTimeout
	again := time.NewTimer(timeout / 2)
	defer again.Stop()
	give := time.NewTimer(timeout)
	defer give.Stop()
	for {
		select {
		case res := <-ch:
			e.sig.stats.resolveOK.Add(1)
			return res.Reachable, res.Metric, nil
		case <-again.C:
			if err := e.SendControl(wire.SignalPod, wire.PodResolve, body); err != nil {
				return false, 0, fmt.Errorf("pod: resolve %s: %w", key, err)
			}
		case <-give.C:
			e.sig.stats.resolveTimeouts.Add(1)
			return false, 0, fmt.Errorf("pod: resolve %s: %w (%v)", key, ErrResolveTimeout, timeout)
		case <-ctx.Done():
			return false, 0, fmt.Errorf("pod: resolve %s: %w", key, ctx.Err())
		case <-e.done:
			return false, 0, fmt.Errorf("pod: resolve %s: %w", key, net.ErrClosed)
		}
	}
}

// checkRoute is Dial's question to the SG, asked while the Endpoint is
// registered: no route fails the dial, no answer lets it go ahead.
func (e *Endpoint) checkRoute(ctx context.Context, n wire.Name) error {
	if e.cfg.NoResolve || !e.sig.active() {
		return nil
	}
	ok, _, err := e.Resolve(ctx, wire.KeyOf(n))
	switch {
	case err == nil && !ok:
		return &NoRouteError{Name: n.String()}
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("pod: dial %s: %w", n, ctx.Err())
	case err != nil:
		e.log.Debug("pod dials without a route answer", "name", n.String(), "err", err)
	}
	return nil
}

func (s *signalling) waitResolve(k wire.Key, ch chan wire.Resolved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resolves == nil {
		s.resolves = map[wire.Key][]chan wire.Resolved{}
	}
	s.resolves[k] = append(s.resolves[k], ch)
}

func (s *signalling) unwaitResolve(k wire.Key, ch chan wire.Resolved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := slices.DeleteFunc(s.resolves[k], func(c chan wire.Resolved) bool { return c == ch })
	if len(w) == 0 {
		delete(s.resolves, k)
	} else {
		s.resolves[k] = w
	}
}

// answer hands a RESOLVED to every Resolve waiting for its key; it reports
// whether one was.
func (s *signalling) answer(res wire.Resolved) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.resolves[res.Dst]
	for _, ch := range w {
		select {
		case ch <- res:
		default: // answered already (the RESOLVE went out twice)
		}
	}
	return len(w) > 0
}
