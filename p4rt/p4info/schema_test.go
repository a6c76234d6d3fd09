package p4info

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/proto"
)

// testInfo is a small P4Info with one of each kind of object.
const testInfo = `
tables {
  preamble { id: 33554433 name: "Ingress.fib" alias: "fib" }
  match_fields { id: 1 name: "dst" bitwidth: 32 match_type: EXACT }
  action_refs { id: 16777217 }
  action_refs { id: 16777218 scope: DEFAULT_ONLY }
  direct_resource_ids: 318767105
  size: 1024
}
tables {
  preamble { id: 33554434 name: "Ingress.nh" alias: "nh" }
  match_fields { id: 1 name: "group" bitwidth: 16 match_type: EXACT }
  action_refs { id: 16777217 }
  implementation_id: 285212673
  size: 1024
}
actions {
  preamble { id: 16777217 name: "Ingress.fwd" alias: "fwd" }
  params { id: 1 name: "port" bitwidth: 9 }
}
actions { preamble { id: 16777218 name: "NoAction" alias: "NoAction" } }
action_profiles {
  preamble { id: 285212673 name: "Ingress.sel" alias: "sel" }
  table_ids: 33554434
  with_selector: true
  size: 128
}
counters {
  preamble { id: 302006529 name: "Ingress.rx" alias: "rx" }
  spec { unit: BOTH }
  size: 16
}
direct_counters {
  preamble { id: 318767105 name: "Ingress.fib_counter" alias: "fib_counter" }
  spec { unit: BOTH }
  direct_table_id: 33554433
}
controller_packet_metadata {
  preamble { id: 67146229 name: "packet_in" }
  metadata { id: 1 name: "ingress_port" bitwidth: 16 }
}
`

func mustParse(t *testing.T, text string) *p4cfg.P4Info {
	t.Helper()
	info, err := ParseText([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestSchemaLookups(t *testing.T) {
	s, err := New(mustParse(t, testInfo))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Ingress.fib", "fib"} {
		tbl, err := s.Table(name)
		if err != nil {
			t.Fatal(err)
		}
		if tbl.Preamble.Id != 33554433 || tbl.DirectCounter == nil || tbl.Profile != nil {
			t.Errorf("%s: %+v", name, tbl.Table)
		}
	}
	nh, err := s.Table("nh")
	if err != nil {
		t.Fatal(err)
	}
	if nh.Profile == nil || nh.Profile.Preamble.Name != "Ingress.sel" || len(nh.Profile.Tables) != 1 {
		t.Errorf("nh implementation not resolved: %+v", nh.Profile)
	}
	if f, err := nh.Field("group"); err != nil || f.Bitwidth != 16 {
		t.Errorf("nh.group: %v %v", f, err)
	}
	if _, err := nh.Field("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown field error should name it: %v", err)
	}
	a, err := s.Action("fwd")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Param("port"); err != nil || p.Bitwidth != 9 {
		t.Errorf("fwd.port: %v %v", p, err)
	}
	if _, ok := a.ParamByID(1); !ok {
		t.Error("ParamByID(1)")
	}
	tbl, _ := s.Table("fib")
	if r, ok := tbl.ActionRef(16777218); !ok || r.Scope != p4cfg.ActionRef_DEFAULT_ONLY {
		t.Errorf("fib NoAction ref: %v %v", r, ok)
	}
	if _, ok := tbl.ActionRef(12345); ok {
		t.Error("unknown action ref found")
	}
	if c, err := s.Counter("rx"); err != nil || c.Size != 16 {
		t.Errorf("counter rx: %v %v", c, err)
	}
	if _, err := s.DirectCounter("Ingress.fib_counter"); err != nil {
		t.Error(err)
	}
	pm, err := s.PacketMetadata("packet_in")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pm.Field("ingress_port"); err != nil {
		t.Error(err)
	}
	if got := len(s.Tables()); got != 2 {
		t.Errorf("Tables() has %d", got)
	}
	if got := len(s.ActionProfiles()); got != 1 {
		t.Errorf("ActionProfiles() has %d", got)
	}
}

func TestSchemaRejectsInconsistentP4Info(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*p4cfg.P4Info)
		want   string
	}{
		{"duplicate id", func(i *p4cfg.P4Info) { i.Actions[1].Preamble.Id = i.Actions[0].Preamble.Id }, "used by both"},
		{"missing preamble", func(i *p4cfg.P4Info) { i.Counters[0].Preamble = nil }, "without preamble"},
		{"unknown action ref", func(i *p4cfg.P4Info) { i.Tables[0].ActionRefs[0].Id = 99 }, "unknown action"},
		{"unknown implementation", func(i *p4cfg.P4Info) { i.Tables[1].ImplementationId = 99 }, "unknown implementation"},
		{"duplicate match field", func(i *p4cfg.P4Info) {
			i.Tables[0].MatchFields = append(i.Tables[0].MatchFields, proto.Clone(i.Tables[0].MatchFields[0]).(*p4cfg.MatchField))
		}, "duplicate match field"},
		{"duplicate param", func(i *p4cfg.P4Info) {
			i.Actions[0].Params = append(i.Actions[0].Params, proto.Clone(i.Actions[0].Params[0]).(*p4cfg.Action_Param))
		}, "duplicate param"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := mustParse(t, testInfo)
			tt.mutate(info)
			_, err := New(info)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) accepted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	info := mustParse(t, testInfo)
	bin, err := proto.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	textPath := filepath.Join(dir, "x.p4info.txtpb")
	binPath := filepath.Join(dir, "x.p4info.bin")
	if err := os.WriteFile(textPath, []byte(testInfo), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(binPath, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{textPath, binPath} {
		s, err := Load(p)
		if err != nil {
			t.Fatalf("Load(%s): %v", p, err)
		}
		if !proto.Equal(s.P4Info(), info) {
			t.Errorf("Load(%s) differs", p)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.txtpb")); err == nil {
		t.Error("missing file loaded")
	}
	bad := filepath.Join(dir, "bad.txtpb")
	os.WriteFile(bad, []byte("tables { nonsense"), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file error should name the file: %v", err)
	}
}

func FuzzNew(f *testing.F) {
	info, _ := ParseText([]byte(testInfo))
	seed, _ := proto.Marshal(info)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		info := &p4cfg.P4Info{}
		if proto.Unmarshal(b, info) != nil {
			return
		}
		s, err := New(info)
		if err != nil {
			return
		}
		for _, tbl := range s.Tables() {
			if _, ok := s.TableByID(tbl.Preamble.Id); !ok {
				t.Fatalf("table %d not found by id", tbl.Preamble.Id)
			}
		}
	})
}
