package nodeconf

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseStatic feeds arbitrary bytes to the static check (the part of
// Parse that reads outside input before any file is opened): it must not
// panic, every problem must carry a line, and a file it accepts must hold
// only values the controller accepts.
func FuzzParseStatic(f *testing.F) {
	for _, seed := range []string{Example, ExampleEmbedded, srYAML, embeddedYAML, "", "node: [", "a: &x [*x]", "ports: [{num: 1, kind: pod}]",
		"timers: {spf: {initial_delay: 0s}}", "probe: {interval: off}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := parseStatic(b, "/base")
		for _, e := range p.errs {
			if e.Line < 1 || e.Msg == "" || strings.Contains(e.Error(), "%!") && !bytes.Contains(b, []byte("%!")) {
				t.Fatalf("bad error %#v", e)
			}
		}
		if len(p.errs) > 0 {
			return
		}
		f := p.f
		seen := map[uint16]bool{}
		for _, port := range f.Ports {
			if checkPortNum(port.Num) != nil || seen[port.Num] {
				t.Fatalf("accepted port %+v", port)
			}
			seen[port.Num] = true
		}
		if f.Role != "sg" && f.Role != "sr" || f.Node == "" || f.Switch.P4RT == "" || f.Identity.Key == "" {
			t.Fatalf("accepted %+v", f)
		}
		if f.Switch.IsEmbedded() != (f.Embedded != nil) {
			t.Fatalf("embedded %q with section %v", f.Switch.P4RT, f.Embedded)
		}
	})
}
