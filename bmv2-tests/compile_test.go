package bmv2tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// TestCompiledArtifactsMatch compiles p4/dmsc.p4 as `make p4` does (from the
// repository root, with the relative path the committed JSON records) into
// a temporary directory, and checks the result against p4/build/: the P4Info
// compared as a protobuf message, the BMv2 JSON as JSON values (with and
// without source_info, so that a difference in source locations alone is
// told apart from a different program).
func TestCompiledArtifactsMatch(t *testing.T) {
	tools := Require(t, Needs{P4C: true})
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := tools.P4C.Command("--arch", "v1model", "--std", "p4-16",
		"-o", filepath.Join(out, "dmsc.json"),
		"--p4runtime-files", filepath.Join(out, "dmsc.p4info.txtpb"),
		"p4/dmsc.p4")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tools.P4C.Path, err, msg)
	}

	fresh := parseP4Info(t, filepath.Join(out, "dmsc.p4info.txtpb"))
	committed := parseP4Info(t, filepath.Join(root, "p4", "build", "dmsc.p4info.txtpb"))
	if !proto.Equal(fresh, committed) {
		t.Errorf("p4/build/dmsc.p4info.txtpb is not what %s makes of p4/dmsc.p4 (run make p4): %s",
			P4C, firstLineDiff(textOf(fresh), textOf(committed)))
	}
	// The embedded P4Info (package p4) is the committed file.
	embedded, err := p4info.ParseText(p4.P4InfoText())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(embedded, committed) {
		t.Error("package p4 embeds a P4Info other than p4/build/dmsc.p4info.txtpb")
	}
	if len(committed.GetTables()) == 0 || len(committed.GetActionProfiles()) != 2 || len(committed.GetControllerPacketMetadata()) != 2 {
		t.Errorf("the P4Info has %d tables, %d action profiles, %d controller headers: not the DMSC program",
			len(committed.GetTables()), len(committed.GetActionProfiles()), len(committed.GetControllerPacketMetadata()))
	}

	freshJSON := parseJSON(t, filepath.Join(out, "dmsc.json"))
	committedJSON := parseJSON(t, filepath.Join(root, "p4", "build", "dmsc.json"))
	if d := jsonDiff("", stripSourceInfo(freshJSON), stripSourceInfo(committedJSON)); d != "" {
		t.Errorf("p4/build/dmsc.json is not what %s makes of p4/dmsc.p4 (run make p4): %s", P4C, d)
	} else if d := jsonDiff("", freshJSON, committedJSON); d != "" {
		t.Errorf("p4/build/dmsc.json differs from a fresh compile in source locations only (%s): was it compiled from another directory? `make p4` compiles p4/dmsc.p4 from the repository root", d)
	}
}

func parseP4Info(t *testing.T, path string) *p4cfg.P4Info {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := p4info.ParseText(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return info
}

func textOf(m proto.Message) string {
	return prototext.MarshalOptions{Multiline: true}.Format(m)
}

// firstLineDiff names the first line where two texts differ.
func firstLineDiff(fresh, committed string) string {
	a, b := strings.Split(fresh, "\n"), strings.Split(committed, "\n")
	for i := range max(len(a), len(b)) {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if strings.TrimSpace(la) != strings.TrimSpace(lb) {
			return fmt.Sprintf("line %d of the text form: fresh %q, committed %q", i+1, strings.TrimSpace(la), strings.TrimSpace(lb))
		}
	}
	return "the messages differ in a way the text form does not show"
}

func parseJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// stripSourceInfo drops every "source_info" member: where in dmsc.p4 each
// object came from.
func stripSourceInfo(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k != "source_info" {
				out[k] = stripSourceInfo(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripSourceInfo(e)
		}
		return out
	}
	return v
}

// jsonDiff describes the first difference between two JSON values, by path,
// or returns "".
func jsonDiff(path string, a, b any) string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object vs %T", orRoot(path), b)
		}
		keys := make([]string, 0, len(x)+len(y))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			ea, ina := x[k]
			eb, inb := y[k]
			switch {
			case !ina:
				return fmt.Sprintf("%s: only in the committed file", orRoot(path+"."+k))
			case !inb:
				return fmt.Sprintf("%s: only in the fresh compile", orRoot(path+"."+k))
			}
			if d := jsonDiff(path+"."+k, ea, eb); d != "" {
				return d
			}
		}
		return ""
	case []any:
		y, ok := b.([]any)
		if !ok {
			return fmt.Sprintf("%s: array vs %T", orRoot(path), b)
		}
		if len(x) != len(y) {
			return fmt.Sprintf("%s: %d elements fresh, %d committed", orRoot(path), len(x), len(y))
		}
		for i := range x {
			if d := jsonDiff(fmt.Sprintf("%s[%d]", path, i), x[i], y[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%s: %s fresh, %s committed", orRoot(path), short(a), short(b))
	}
	return ""
}

func orRoot(path string) string {
	if path == "" {
		return "(top)"
	}
	return strings.TrimPrefix(path, ".")
}

func short(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
