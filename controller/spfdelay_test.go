package controller

import (
	"testing"
	"time"
)

func TestSPFDelay(t *testing.T) {
	ms := time.Millisecond
	type step struct {
		event   bool          // an IGP event at `at` (otherwise a Due check)
		at      time.Duration // time of the step
		wantRun time.Duration // for events: the scheduled run
		wantDue bool          // for checks
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single event runs at once", []step{
			{event: true, at: 0, wantRun: 0},
			{at: 0, wantDue: true},
			{at: 1 * ms, wantDue: false},
		}},
		{"burst is answered with the short delay, then the long one", []step{
			{event: true, at: 0, wantRun: 0},
			{at: 0, wantDue: true},
			{event: true, at: 50 * ms, wantRun: 60 * ms},
			{at: 55 * ms, wantDue: false},
			{at: 60 * ms, wantDue: true},
			{event: true, at: 600 * ms, wantRun: 800 * ms}, // TIME_TO_LEARN (500 ms) over: LONG_WAIT
			{at: 700 * ms, wantDue: false},
			{at: 800 * ms, wantDue: true},
		}},
		{"pending run is not moved by later events", []step{
			{event: true, at: 0, wantRun: 0},
			{event: true, at: 0, wantRun: 0},
			{at: 0, wantDue: true},
			{event: true, at: 100 * ms, wantRun: 110 * ms},
			{event: true, at: 105 * ms, wantRun: 110 * ms},
			{at: 110 * ms, wantDue: true},
		}},
		{"quiet period returns to QUIET", []step{
			{event: true, at: 0, wantRun: 0},
			{at: 0, wantDue: true},
			{event: true, at: 600 * ms, wantRun: 800 * ms},
			{at: 800 * ms, wantDue: true},
			{event: true, at: 2 * time.Second, wantRun: 2 * time.Second}, // 1.4 s quiet > HOLDDOWN
			{at: 2 * time.Second, wantDue: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DefaultSPFDelay()
			for i, s := range tt.steps {
				if s.event {
					if got := d.Event(s.at); got != s.wantRun {
						t.Fatalf("step %d: event at %v runs at %v, want %v", i, s.at, got, s.wantRun)
					}
					continue
				}
				if got := d.Due(s.at); got != s.wantDue {
					t.Fatalf("step %d: Due(%v) = %v, want %v", i, s.at, got, s.wantDue)
				}
			}
		})
	}
}
