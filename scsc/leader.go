package scsc

import "context"

// Leader is SCSC's leader election among replicas (DESIGN §7): every
// replica subscribes and decides, only the leader pushes policies. A new
// leader sets the same policy ids (they name the decision, not the
// replica), so it takes the policies over where the old one left them, and
// whatever it does not want expires at its TTL.
type Leader interface {
	// Lead campaigns until ctx ends. It sends true on leads when this
	// replica becomes the leader and false when it stops being it (a lost
	// lease, say). It returns ctx's error when ctx ends, or the error that
	// ended the campaign; the caller counts itself a follower then and
	// calls Lead again later.
	Lead(ctx context.Context, leads chan<- bool) error
}

// SingleReplica is the Leader of an SCSC that runs alone: it leads at once
// and for good.
type SingleReplica struct{}

// Lead reports leadership at once and holds it until ctx ends.
func (SingleReplica) Lead(ctx context.Context, leads chan<- bool) error {
	select {
	case leads <- true:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}
