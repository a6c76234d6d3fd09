package demo

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the whole demo and checks what it claims: calls by name
// work, survive a link cut on a new path, and a QoS event is steered
// around by SCSC with the calls faster than while impaired.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes several seconds")
	}
	if raceEnabled {
		t.Skip("the demo's timing is checked without the race detector (scripts/test.sh runs it so)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	s, err := Run(ctx, Options{Out: &out, Calls: 20})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	want := []string{"sg1", "sr1", "sr3", "sg4"}
	switch {
	case !slices.Equal(s.PathBefore, want):
		t.Errorf("path before the cut %v, want %v", s.PathBefore, want)
	case slices.Equal(s.PathCut, s.PathBefore) || slices.Contains(s.PathCut, "") || len(s.PathCut) < 4:
		t.Errorf("path after the cut %v", s.PathCut)
	case slices.Equal(s.PathQoS, s.PathBefore):
		t.Errorf("SCSC did not move the path: %v", s.PathQoS)
	}
	if s.CutCalls == 0 || s.CutFailed > s.CutCalls/10 {
		t.Errorf("during the cut %d of %d calls failed", s.CutFailed, s.CutCalls)
	}
	if s.SteeredP50 >= s.ImpairedP50 {
		t.Errorf("steered p50 %v not below the impaired %v", s.SteeredP50, s.ImpairedP50)
	}
	for _, line := range []string{"[5/5]", "Summary", "SCSC install", "/shop/frontend"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q", line)
		}
	}
}
