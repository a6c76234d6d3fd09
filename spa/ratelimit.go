package spa

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sgLimiter is a token bucket per calling node (golang.org/x/time/rate).
// Callers are authenticated nodes of the domain, so the map grows only with
// the number of node certificates in use.
type sgLimiter struct {
	every rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newSGLimiter(perSecond float64, burst int) *sgLimiter {
	return &sgLimiter{every: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes a token for node at now, or says how long until one is there.
func (l *sgLimiter) allow(node string, now time.Time) (bool, time.Duration) {
	if l == nil || l.every <= 0 {
		return true, 0
	}
	l.mu.Lock()
	lim, ok := l.m[node]
	if !ok {
		lim = rate.NewLimiter(l.every, l.burst)
		l.m[node] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // the call is refused, so it must not use up a token
		return false, d
	}
	return true, 0
}
