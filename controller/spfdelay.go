package controller

import "time"

// SPFDelay is the SPF back-off algorithm of RFC 8405: the first event after a
// quiet period runs SPF quickly, a burst of events is answered with longer
// delays, and a quiet period resets it. It is pure: the caller passes the
// time of each event and runs SPF when the returned deadline passes.
type SPFDelay struct {
	InitialDelay time.Duration // INITIAL_SPF_DELAY: first event in QUIET
	ShortDelay   time.Duration // SHORT_SPF_DELAY: while in SHORT_WAIT
	LongDelay    time.Duration // LONG_SPF_DELAY: while in LONG_WAIT
	HoldDown     time.Duration // HOLDDOWN_INTERVAL: quiet time that returns to QUIET
	TimeToLearn  time.Duration // TIME_TO_LEARN_INTERVAL: SHORT_WAIT before LONG_WAIT

	state      spfDelayState
	lastEvent  time.Duration
	learnUntil time.Duration // end of TIME_TO_LEARN in SHORT_WAIT
	holdUntil  time.Duration // end of HOLDDOWN
	pending    bool
	runAt      time.Duration
}

type spfDelayState int

const (
	spfQuiet spfDelayState = iota
	spfShortWait
	spfLongWait
)

// DefaultSPFDelay suits a data-centre fabric: a single failure is computed
// within InitialDelay, a flapping link costs at most one SPF per LongDelay.
func DefaultSPFDelay() SPFDelay {
	return SPFDelay{
		InitialDelay: 0,
		ShortDelay:   10 * time.Millisecond,
		LongDelay:    200 * time.Millisecond,
		HoldDown:     1 * time.Second,
		TimeToLearn:  500 * time.Millisecond,
	}
}

// Event records an IGP event at now (time since any fixed origin) and returns
// when SPF should run. A later event never moves a pending run earlier.
func (d *SPFDelay) Event(now time.Duration) time.Duration {
	d.expire(now)
	var delay time.Duration
	switch d.state {
	case spfQuiet:
		delay = d.InitialDelay
		d.state = spfShortWait
		d.learnUntil = now + d.TimeToLearn
	case spfShortWait:
		delay = d.ShortDelay
	case spfLongWait:
		delay = d.LongDelay
	}
	d.holdUntil = now + d.HoldDown
	d.lastEvent = now
	if !d.pending {
		d.pending = true
		d.runAt = now + delay
	}
	return d.runAt
}

// Due reports whether a pending SPF run is due at now; when it is, the caller
// runs SPF and the run is cleared.
func (d *SPFDelay) Due(now time.Duration) bool {
	d.expire(now)
	if d.pending && now >= d.runAt {
		d.pending = false
		return true
	}
	return false
}

// Next returns the time of the pending run, if any.
func (d *SPFDelay) Next() (time.Duration, bool) {
	return d.runAt, d.pending
}

// expire applies the two timers of RFC 8405 §5: TIME_TO_LEARN moves
// SHORT_WAIT to LONG_WAIT, HOLDDOWN returns any state to QUIET.
func (d *SPFDelay) expire(now time.Duration) {
	if d.state != spfQuiet && now >= d.holdUntil {
		d.state = spfQuiet
		return
	}
	if d.state == spfShortWait && now >= d.learnUntil {
		d.state = spfLongWait
	}
}

// Pending reports whether an SPF run is scheduled.
func (d *SPFDelay) Pending() bool {
	_, ok := d.Next()
	return ok
}
