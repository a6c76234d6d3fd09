package netns

import (
	"strings"
	"testing"
)

func TestPidOf(t *testing.T) {
	for _, c := range []struct {
		name, prefix string
		base         int
		pid          int
		ok           bool
	}{
		{"dmsct-1234-5", "dmsct-", 10, 1234, true},
		{"dmsct-1234-", "dmsct-", 10, 1234, true},
		{"dmsct-1234", "dmsct-", 10, 0, false},
		{"dmsct--5", "dmsct-", 10, 0, false},
		{"dmsct-0-5", "dmsct-", 10, 0, false},
		{"dmsct-12a-5", "dmsct-", 10, 0, false},
		{"other-1234-5", "dmsct-", 10, 0, false},
		{"dmscb-1234-5", "dmsct-", 10, 0, false}, // another prefix's names are not ours
		{"dmsctzh-2a", "dmsct", 36, 36*35 + 17, true},
		{"dmsct-1234-5", "dmsct", 36, 0, false}, // a namespace name is no interface name
		{"dmsct99999999999-1", "dmsct", 36, 0, false},
		{"eth0", "dmsct", 36, 0, false},
	} {
		pid, ok := PidOf(c.name, c.prefix, c.base, "-")
		if pid != c.pid || ok != c.ok {
			t.Errorf("PidOf(%q, %q) = %d, %v; want %d, %v", c.name, c.prefix, pid, ok, c.pid, c.ok)
		}
	}
}

// FuzzPidOf: names come from /run/netns and /sys/class/net, anybody's.
func FuzzPidOf(f *testing.F) {
	for _, s := range []string{"dmsct-1234-5", "dmsctzh-2a", "", "dmsct-", "dmsct--", "dmsct-99999999999999999999-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, c := range []struct {
			prefix string
			base   int
		}{{"dmsct-", 10}, {"dmsct", 36}} {
			pid, ok := PidOf(name, c.prefix, c.base, "-")
			if ok && (pid <= 0 || !strings.HasPrefix(name, c.prefix)) {
				t.Errorf("PidOf(%q) = %d, true", name, pid)
			}
		}
	})
}

func TestNewRefusesBadPrefix(t *testing.T) {
	for _, p := range []string{"", "toolong", "a-b", "ab1"} {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { recover() }()
			New(ft, p)
		}()
		if !ft.fatal {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// fatalRecorder notes Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	fatal bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(string, ...any) {
	f.fatal = true
	panic("fatal")
}
