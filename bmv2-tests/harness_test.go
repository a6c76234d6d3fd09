package bmv2tests

import (
	"errors"
	"strings"
	"testing"
)

// The harness's pure parts, which run everywhere (no BMv2 needed).

func TestSkipMessages(t *testing.T) {
	none := func(name string) (Tool, error) {
		return Tool{}, errors.New(name + " is not on PATH nor in /opt/p4/bin")
	}
	all := func(name string) (Tool, error) { return Tool{Name: name, Path: "/x/" + name}, nil }
	for _, c := range []struct {
		name   string
		needs  Needs
		lookup func(string) (Tool, error)
		euid   int
		ip     bool
		want   string
	}{
		{"nothing missing", Needs{P4C: true, Switch: true}, all, 0, true, ""},
		{"no p4c", Needs{P4C: true}, none, 1000, false, "bmv2-tests: p4c-bm2-ss is not on PATH nor in /opt/p4/bin"},
		{"no switch", Needs{Switch: true}, none, 0, true, "bmv2-tests: simple_switch_grpc is not on PATH nor in /opt/p4/bin"},
		{"not root", Needs{Switch: true}, all, 1000, true, "bmv2-tests: network namespaces need root (euid 1000)"},
		{"everything missing", Needs{Switch: true}, none, 1000, false,
			"bmv2-tests: simple_switch_grpc is not on PATH nor in /opt/p4/bin; network namespaces need root (euid 1000); ip (iproute2) is not on PATH"},
		{"p4c only needs p4c", Needs{P4C: true}, all, 1000, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tools, msg := c.needs.check(c.lookup, c.euid, c.ip)
			if msg != c.want {
				t.Errorf("message %q, want %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is more than one line", msg)
			}
			if c.want == "" && c.needs.Switch && tools.Switch.Path == "" {
				t.Error("no switch tool returned")
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("LD_LIBRARY_PATH", "/usr/local/lib")
	env := childEnv(OptP4 + "/bin/" + SimpleSwitch)
	if !containsKV(env, "LD_LIBRARY_PATH=/opt/p4/lib:/usr/local/lib") {
		t.Errorf("OptP4 binary: LD_LIBRARY_PATH not extended: %v", filterLD(env))
	}
	if env := childEnv("/usr/bin/" + SimpleSwitch); !containsKV(env, "LD_LIBRARY_PATH=/usr/local/lib") {
		t.Errorf("other binary: LD_LIBRARY_PATH changed: %v", filterLD(env))
	}
	t.Setenv("LD_LIBRARY_PATH", "/opt/p4/lib")
	if env := childEnv(OptP4 + "/bin/" + P4C); !containsKV(env, "LD_LIBRARY_PATH=/opt/p4/lib") {
		t.Errorf("already there: %v", filterLD(env))
	}
}

func containsKV(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

func filterLD(env []string) []string {
	var out []string
	for _, e := range env {
		if strings.HasPrefix(e, "LD_LIBRARY_PATH=") {
			out = append(out, e)
		}
	}
	return out
}

func TestJSONDiff(t *testing.T) {
	a := map[string]any{"x": []any{1.0, map[string]any{"source_info": map[string]any{"line": 1.0}, "y": "z"}}}
	b := map[string]any{"x": []any{1.0, map[string]any{"source_info": map[string]any{"line": 2.0}, "y": "z"}}}
	if d := jsonDiff("", stripSourceInfo(a), stripSourceInfo(b)); d != "" {
		t.Errorf("equal but for source_info: %s", d)
	}
	if d := jsonDiff("", a, b); d != "x[1].source_info.line: 1 fresh, 2 committed" {
		t.Errorf("source_info differs: %q", d)
	}
	c := map[string]any{"x": []any{1.0}}
	if d := jsonDiff("", a, c); d != "x: 2 elements fresh, 1 committed" {
		t.Errorf("lengths: %q", d)
	}
	if d := jsonDiff("", map[string]any{"k": 1.0}, map[string]any{}); d != "k: only in the fresh compile" {
		t.Errorf("missing key: %q", d)
	}
	if d := firstLineDiff("a\nb\nc", "a\nB\nc"); !strings.Contains(d, "line 2") {
		t.Errorf("firstLineDiff: %q", d)
	}
}
