package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/bmv2-tests/mininet"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

const fig2File = "../../examples/fig2.yaml"

// passingEnv is a machine where every prerequisite is met; missing names
// commands that are neither on PATH nor anywhere else.
func passingEnv(missing ...string) mininetEnv {
	return mininetEnv{
		euid: func() int { return 0 },
		lookPath: func(name string) (string, error) {
			if slices.Contains(missing, name) {
				return "", exec.ErrNotFound
			}
			return "/usr/bin/" + name, nil
		},
		isFile: func(p string) bool {
			if slices.Contains(missing, filepath.Base(p)) {
				return false // not in /opt/p4/bin either
			}
			st, err := os.Stat(p)
			return err == nil && st.Mode().IsRegular()
		},
		netns:    func() error { return nil },
		pyImport: func(context.Context, string) error { return nil },
	}
}

// fakePython writes a stand-in for python3: it copies run.json (its third
// argument) and its environment's LD_LIBRARY_PATH into dir, prints the
// work directory and exits with $FAKE_EXIT.
func fakePython(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "python3")
	script := `#!/bin/sh
cp "$3" "` + dir + `/run.json"
cp "$1" "` + dir + `/script.py"
echo "$LD_LIBRARY_PATH" > "` + dir + `/ld"
echo "workdir $(dirname "$3")"
exit ${FAKE_EXIT:-0}
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

type mininetRun struct {
	out      string
	err      error
	exitCode int // what the verb asked exit for; -1: not called
}

func runMininetVerb(t *testing.T, env mininetEnv, args ...string) mininetRun {
	t.Helper()
	r := mininetRun{exitCode: -1}
	cmd := newTopoMininetCommandWith(&globalFlags{logLevel: "info", logFormat: "text"}, env, func(code int) { r.exitCode = code })
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.err = cmd.ExecuteContext(ctx)
	r.out = out.String()
	return r
}

func TestTopoMininetPrerequisites(t *testing.T) {
	dir := t.TempDir()
	py := fakePython(t, dir)
	notRoot := passingEnv()
	notRoot.euid = func() int { return 1000 }
	noNetns := passingEnv()
	noNetns.netns = func() error { return errors.New("operation not permitted") }
	noMininet := passingEnv()
	noMininet.pyImport = func(context.Context, string) error {
		return errors.New("exit status 1: ModuleNotFoundError: No module named 'mininet'")
	}
	tests := []struct {
		name string
		env  mininetEnv
		args []string
		want []string
	}{
		{"not root", notRoot, nil, []string{"not root"}},
		{"no namespaces", noNetns, nil, []string{"cannot make a network namespace (operation not permitted)"}},
		{"no mininet", noMininet, nil, []string{"mininet is not importable by " + py, "No module named 'mininet'", "apt-get install"}},
		{"no python", passingEnv(), []string{"--python", filepath.Join(dir, "nope")}, []string{"--python " + filepath.Join(dir, "nope") + ": no such file"}},
		{"tools missing, all reported", passingEnv("ethtool", "mnexec"), nil, []string{"mnexec not found on PATH: apt-get install mininet", "ethtool not found on PATH: apt-get install ethtool"}},
		{"bmv2 missing", passingEnv("simple_switch_grpc", "socat"), []string{"--target", "bmv2", "--p4-json", filepath.Join(dir, "none.json")},
			[]string{"simple_switch_grpc not found", "--p4-json " + filepath.Join(dir, "none.json") + ": no such file", "socat not found"}},
		{"bad target", passingEnv(), []string{"--target", "ovs"}, []string{`--target "ovs": want softswitch or bmv2`}},
		{"bad scenario", passingEnv(), []string{"--scenario", "fig9"}, []string{`--scenario "fig9": want one of fig2`}},
		{"bad prefix", passingEnv(), []string{"--intf-prefix", "abcde"}, []string{`--intf-prefix "abcde"`}},
		{"bad prefix characters", passingEnv(), []string{"--intf-prefix", "a/b"}, []string{`--intf-prefix "a/b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{fig2File, "--python", py, "--workdir", t.TempDir()}, tt.args...)
			r := runMininetVerb(t, tt.env, args...)
			if r.err == nil {
				t.Fatalf("no error; output %s", r.out)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("error %q\nlacks %q", r.err, w)
				}
			}
			// Prerequisite errors exit with 2, not main's 1: a setup problem
			// is not a failed check.
			if r.exitCode != 2 {
				t.Errorf("exit status %d, want 2", r.exitCode)
			}
			if _, err := os.Stat(filepath.Join(dir, "run.json")); err == nil {
				t.Error("the script ran despite the missing prerequisite")
			}
		})
	}
}

func TestTopoMininetBadTopology(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("nodes:\n  sg1: {role: spa}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runMininetVerb(t, passingEnv(), bad, "--python", fakePython(t, dir))
	if r.err == nil || !strings.Contains(r.err.Error(), `nodes.sg1.role: "spa" is not a role`) {
		t.Fatalf("error %v, want the topology's", r.err)
	}
}

func TestTopoMininetRunsTheScript(t *testing.T) {
	dir := t.TempDir()
	py := fakePython(t, dir)
	workdir := filepath.Join(t.TempDir(), "work")
	r := runMininetVerb(t, passingEnv(), fig2File, "--python", py, "--workdir", workdir, "--scenario", "fig2", "--intf-prefix", "t1")
	if r.err != nil || r.exitCode != -1 {
		t.Fatalf("error %v, exit %d; output %s", r.err, r.exitCode, r.out)
	}
	if !strings.Contains(r.out, "workdir "+workdir) {
		t.Errorf("the script's output was not passed through: %q", r.out)
	}
	script, err := os.ReadFile(filepath.Join(dir, "script.py"))
	if err != nil || !bytes.Equal(script, mininet.Script) {
		t.Errorf("the script run is not the embedded dmsc_mininet.py (%v)", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got mnRun
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if got.Dmsc != exe || got.Workdir != workdir || got.Target != "softswitch" || got.Scenario != "fig2" ||
		!got.SCSC || got.Keep || got.IntfPrefix != "t1" || got.BMv2 != nil || got.LogLevel != "info" {
		t.Errorf("run.json %+v", got)
	}
	if len(got.Topology.Nodes) != 7 || len(got.Topology.Links) != 9 {
		t.Errorf("run.json topology: %d nodes, %d links", len(got.Topology.Nodes), len(got.Topology.Links))
	}
	if _, err := os.Stat(workdir); err != nil {
		t.Errorf("a given --workdir must stay: %v", err)
	}
}

func TestTopoMininetTemporaryWorkdir(t *testing.T) {
	dir := t.TempDir()
	py := fakePython(t, dir)
	workdirOf := func(out string) string {
		for _, line := range strings.Split(out, "\n") {
			if w, ok := strings.CutPrefix(line, "workdir "); ok {
				return w
			}
		}
		t.Fatalf("no workdir line in %q", out)
		return ""
	}
	r := runMininetVerb(t, passingEnv(), fig2File, "--python", py)
	if w := workdirOf(r.out); r.err != nil {
		t.Fatal(r.err)
	} else if _, err := os.Stat(w); !os.IsNotExist(err) {
		t.Errorf("the temporary work directory %s was not removed after a successful run", w)
	}

	t.Setenv("FAKE_EXIT", "1")
	r = runMininetVerb(t, passingEnv(), fig2File, "--python", py)
	w := workdirOf(r.out)
	defer os.RemoveAll(w)
	if r.err == nil || !strings.Contains(r.err.Error(), "a check failed") || r.exitCode != -1 {
		t.Errorf("exit 1: error %v, exit %d; want main's exit 1 with \"a check failed\"", r.err, r.exitCode)
	}
	if _, err := os.Stat(filepath.Join(w, "run.json")); err != nil || !strings.Contains(r.out, "kept in "+w) {
		t.Errorf("after a failure the work directory should stay and be named: %v; %q", err, r.out)
	}
}

func TestTopoMininetExitStatus(t *testing.T) {
	dir := t.TempDir()
	py := fakePython(t, dir)
	for _, code := range []string{"2", "3", "130"} {
		t.Setenv("FAKE_EXIT", code)
		r := runMininetVerb(t, passingEnv(), fig2File, "--python", py, "--workdir", t.TempDir())
		if r.err == nil || code != strconv.Itoa(r.exitCode) {
			t.Errorf("script exit %s: error %v, exit %d", code, r.err, r.exitCode)
		}
	}
}

func TestTopoMininetBMv2(t *testing.T) {
	dir := t.TempDir()
	py := fakePython(t, dir)
	optP4 := filepath.Join(dir, "p4")
	for _, d := range []string{"bin", "lib"} {
		if err := os.MkdirAll(filepath.Join(optP4, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sw := filepath.Join(optP4, "bin", "simple_switch_grpc")
	js := filepath.Join(dir, "dmsc.json")
	for _, f := range []string{sw, js} {
		if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("LD_LIBRARY_PATH", "/usr/local/lib")
	r := runMininetVerb(t, passingEnv(), fig2File, "--python", py, "--workdir", t.TempDir(),
		"--target", "bmv2", "--simple-switch-grpc", sw, "--p4-json", js)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.out)
	}
	var got mnRun
	b, _ := os.ReadFile(filepath.Join(dir, "run.json"))
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := mnBMv2{SimpleSwitchGRPC: sw, DeviceConfig: js, Socat: "/usr/bin/socat"}
	if got.Target != "bmv2" || got.BMv2 == nil || *got.BMv2 != want {
		t.Errorf("run.json target %q bmv2 %+v, want %+v", got.Target, got.BMv2, want)
	}
	ld, _ := os.ReadFile(filepath.Join(dir, "ld"))
	if strings.TrimSpace(string(ld)) != filepath.Join(optP4, "lib")+":/usr/local/lib" {
		t.Errorf("LD_LIBRARY_PATH %q, want BMv2's lib first", ld)
	}
}

func TestMininetTopology(t *testing.T) {
	tp, err := topo.Load(fig2File)
	if err != nil {
		t.Fatal(err)
	}
	mt := mininetTopology(tp)
	var names []string
	for _, n := range mt.Nodes {
		names = append(names, n.Name)
	}
	if !slices.Equal(names, []string{"sg1", "sg2", "sg3", "sg4", "sr1", "sr2", "sr3"}) {
		t.Errorf("nodes %v", names)
	}
	if n := mt.Nodes[0]; n.Role != "sg" || !slices.Equal(n.PodPorts, []uint16{10, 11, 12, 13}) {
		t.Errorf("sg1 %+v", n)
	}
	if n := mt.Nodes[4]; n.Role != "sr" || n.PodPorts == nil || len(n.PodPorts) != 0 {
		t.Errorf("sr1 %+v: want role sr and an empty (not null) pod_ports", n)
	}
	var cut *mnLink
	for i, l := range mt.Links {
		if l.A == (mnEndpoint{"sr1", 4}) && l.B == (mnEndpoint{"sr3", 4}) {
			cut = &mt.Links[i]
		}
	}
	if cut == nil || cut.DelayNS != int64(time.Millisecond) || cut.CapacityBPS != 40e9 || cut.Metric != topo.DefaultMetric {
		t.Errorf("sr1:4–sr3:4 %+v", cut)
	}
	b, err := json.Marshal(mt)
	if err != nil {
		t.Fatal(err)
	}
	// The field names dmsc_mininet.py reads.
	for _, field := range []string{`"A":{"node":"sg1","port":1}`, `"capacity_bps":10000000000`, `"delay_ns":1000000`, `"pod_ports":[10,11,12,13]`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("topology JSON lacks %s: %s", field, b)
		}
	}
}

func TestTopoFIBReadsTheSwitch(t *testing.T) {
	ts := switchtest.Start(t, 3)
	c := switchtest.Primary(t, ts)
	switchtest.FabricPorts(t, c, 1, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cart := wire.KeyOf(wire.MustParseName("/shop/cart"))
	echo := wire.KeyOf(wire.MustParseName("/echo"))
	nodeName, err := wire.NodeName("sr1")
	if err != nil {
		t.Fatal(err)
	}
	node := wire.KeyOf(nodeName)
	prog := fib.New(c.Schema())
	plan, err := prog.Plan(fib.Routes{
		{Key: cart, Len: 64}: {Kind: fib.Forward, Hops: []fib.Hop{{Port: 2, DMAC: 0x02000000000b}, {Port: 1, DMAC: 0x02000000000a}}},
		{Key: echo, Len: 32}: {Kind: fib.Local, Hops: []fib.Hop{{Port: 3, DMAC: 0x02000000000c, Instance: 7}}},
		{Key: node, Len: 64}: {Kind: fib.ToCPU},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, phase := range plan.Phases {
		if err := c.Write(ctx, phase...); err != nil {
			t.Fatal(err)
		}
	}
	frame := func(dst wire.Key) []byte {
		return wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{2}, Src: [6]byte{2, 0, 0, 0, 0, 9}},
			wire.Header{Type: wire.TypeData, HopLimit: 5, FlowLabel: 42, Dst: dst, Src: wire.KeyOf(wire.MustParseName("/web")).WithInstance(1)},
			nil, []byte("hello"))
	}
	for _, dst := range []wire.Key{cart, cart, wire.KeyOf(wire.MustParseName("/nowhere"))} {
		if err := ts.Links[1].Send(frame(dst)); err != nil {
			t.Fatal(err)
		}
	}

	// The switch forwards asynchronously: read until all three frames counted.
	var sf switchFIB
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := run(ctx, "topo", "fib", "--p4rt", ts.Addr, "--json")
		if err != nil {
			t.Fatalf("topo fib: %v\n%s", err, out)
		}
		sf = switchFIB{}
		if err := json.Unmarshal([]byte(out), &sf); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if sf.Ports["1"].RxPackets == 3 && sf.Drops[wire.DropNoRoute.String()] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []fibRoute{
		// Longest first, then by key.
		{Key: wire.Key(spf.Prefix{Key: node, Len: 64}.Key).String(), Len: 64, Kind: "to_cpu", Hops: []fibHop{}},
		{Key: cart.String(), Len: 64, Kind: "forward", Packets: 2, Hops: []fibHop{{Port: 1, DMAC: "02:00:00:00:00:0a", Weight: 1}, {Port: 2, DMAC: "02:00:00:00:00:0b", Weight: 1}}},
		{Key: echo.String(), Len: 32, Kind: "local", Hops: []fibHop{{Port: 3, DMAC: "02:00:00:00:00:0c", Instance: 7, Weight: 1}}},
	}
	if cart.String() < node.String() {
		want[0], want[1] = want[1], want[0]
	}
	for i := range sf.Routes {
		sf.Routes[i].Bytes = 0 // frame sizes are the wire package's business
	}
	if !slices.EqualFunc(sf.Routes, want, func(a, b fibRoute) bool {
		return a.Key == b.Key && a.Len == b.Len && a.Kind == b.Kind && a.Packets == b.Packets && slices.Equal(a.Hops, b.Hops)
	}) {
		t.Errorf("routes\n got %+v\nwant %+v", sf.Routes, want)
	}
	if p := sf.Ports["1"]; p.RxPackets != 3 || p.RxBytes == 0 {
		t.Errorf("port 1 counters %+v, want 3 frames received", p)
	}
	if tx := sf.Ports["1"].TxPackets + sf.Ports["2"].TxPackets; tx != 2 {
		t.Errorf("ports 1 and 2 sent %d frames, want the 2 to /shop/cart: %+v", tx, sf.Ports)
	}
	if _, ok := sf.Ports["3"]; ok {
		t.Errorf("port 3 counted frames: %+v", sf.Ports)
	}
	if sf.Drops[wire.DropNoRoute.String()] != 1 || len(sf.Drops) != 1 {
		t.Errorf("drops %v, want 1 %s", sf.Drops, wire.DropNoRoute)
	}

	out, err := run(ctx, "topo", "fib", "--p4rt", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = strings.Join(f[1:], " ")
		}
	}
	for first, rest := range map[string]string{
		"KEY":                     "LEN KIND PACKETS NEXT HOPS",
		cart.String():             "64 forward 2 port 1, port 2",
		echo.String():             "32 local 0 port 3 instance 7",
		"1":                       "3 " + strconv.FormatInt(sf.Ports["1"].RxBytes, 10) + " " + strconv.FormatInt(sf.Ports["1"].TxPackets, 10) + " " + strconv.FormatInt(sf.Ports["1"].TxBytes, 10),
		wire.DropNoRoute.String(): "1",
	} {
		if rows[first] != rest {
			t.Errorf("table row %s: %q, want %q\n%s", first, rows[first], rest, out)
		}
	}
}

func TestTopoFIBErrors(t *testing.T) {
	bare := switchtest.Start(t, 1) // no pipeline pushed
	ctx := context.Background()
	if _, err := run(ctx, "topo", "fib", "--p4rt", bare.Addr, "--timeout", "2s"); err == nil || !strings.Contains(err.Error(), "--p4rt "+bare.Addr) || !strings.Contains(err.Error(), "pipeline") {
		t.Errorf("a switch without a pipeline: %v", err)
	}
	if _, err := run(ctx, "topo", "fib", "--p4rt", "127.0.0.1:1", "--timeout", "300ms"); err == nil || !strings.Contains(err.Error(), "--p4rt 127.0.0.1:1") {
		t.Errorf("nothing listening: %v", err)
	}
}

// The verb is registered on the root command.
func TestTopoRegistered(t *testing.T) {
	var names []string
	for _, c := range newRootCommand().Commands() {
		if c.Name() == "topo" {
			for _, sub := range c.Commands() {
				names = append(names, sub.Name())
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"fib", "mininet"}) {
		t.Errorf("dmsc topo subcommands %v", names)
	}
}
