package controller

import (
	"testing"

	"github.com/dmsc-mesh/dmsc/spf"
)

func TestLSDBsAgree(t *testing.T) {
	frag := func(seq uint32, life uint16) spf.Summary {
		return spf.Summary{Origin: "sr1", Seq: seq, RemainingLifetime: life, Hash: 7}
	}
	purge := spf.Summary{Origin: "sr1", Seq: 3}
	for _, c := range []struct {
		name  string
		snaps map[string]Snapshot
		agree bool
	}{
		{"none", nil, true},
		{"one", map[string]Snapshot{"a": {LSDB: []spf.Summary{frag(3, 100)}}}, true},
		{"lifetimes differ", map[string]Snapshot{"a": {LSDB: []spf.Summary{frag(3, 100)}}, "b": {LSDB: []spf.Summary{frag(3, 90)}}}, true},
		{"sequence differs", map[string]Snapshot{"a": {LSDB: []spf.Summary{frag(3, 100)}}, "b": {LSDB: []spf.Summary{frag(4, 100)}}}, false},
		{"a fragment missing", map[string]Snapshot{"a": {LSDB: []spf.Summary{frag(3, 100)}}, "b": {}}, false},
		{"purged at one, live at the other", map[string]Snapshot{"a": {LSDB: []spf.Summary{purge}}, "b": {LSDB: []spf.Summary{frag(3, 100)}}}, false},
	} {
		if err := LSDBsAgree(c.snaps); (err == nil) != c.agree {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
