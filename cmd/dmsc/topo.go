package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dmsc-mesh/dmsc/bmv2-tests/mininet"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

func newTopoCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topo",
		Short: "Run a topology file on real network stacks (mininet), and read switches back over P4Runtime",
		Long: `topo runs a topology file (examples/fig2.yaml) outside the single process of
'dmsc demo': 'topo mininet' builds it on mininet, with one switch process per
node, veth links, the agents, SPA and SCSC as processes on the host and pods in
mininet hosts. 'topo fib' reads a switch's FIB and counters over P4Runtime, as
the switch holds them (dmsc show fib shows what the agent believes it wrote).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTopoMininetCommand(g), newTopoFIBCommand(g))
	return cmd
}

// Targets of topo mininet: the switch process each node runs.
const (
	targetSoftswitch = "softswitch"
	targetBMv2       = "bmv2"
)

// mininetScenarios are the scenarios dmsc_mininet.py knows.
var mininetScenarios = []string{"fig2"}

type topoMininetFlags struct {
	target, scenario string
	keep, scsc       bool
	workdir          string
	python, script   string
	simpleSwitch     string
	p4JSON           string
	intfPrefix       string

	// env is what the prerequisites are checked against; tests replace it.
	env mininetEnv
	// exit ends the process with the script's exit status when it is
	// neither 0 nor 1 (main exits 1 on any error); tests replace it.
	exit func(code int)
}

func newTopoMininetCommand(g *globalFlags) *cobra.Command {
	return newTopoMininetCommandWith(g, hostEnv(), os.Exit)
}

// newTopoMininetCommandWith is the verb with the machine it checks and the
// way it exits given (tests give fakes).
func newTopoMininetCommandWith(g *globalFlags, env mininetEnv, exit func(int)) *cobra.Command {
	f := &topoMininetFlags{env: env, exit: exit}
	cmd := &cobra.Command{
		Use:   "mininet FILE",
		Short: "Build a topology file on mininet: a switch process per node, agents, SPA, SCSC, pods in mininet hosts",
		Long: `mininet builds the topology FILE with Debian's mininet (its Python API, run by
/usr/bin/python3; mininet's kernel Open vSwitch datapath is not used): a
switch per node, whose data ports are mininet veth links named
<node>-eth<port>, and one mininet host per pod port (h-<node>-<port>) linked
to it. Checksum and segmentation offloads and IPv6 are turned off on every
interface it makes, as user-space switches need.

--target picks the switch:
  softswitch  the Go software switch (dmsc softswitch) on the node's
              interfaces over AF_PACKET, serving P4Runtime on 127.0.0.1
  bmv2        BMv2's simple_switch_grpc, each in a network namespace of its
              own (it always opens Thrift on 0.0.0.0:9090); its P4Runtime
              is relayed to 127.0.0.1 on the host with socat

Then it makes a domain CA and certificates, starts SPA, one agent per node
(dmsc agent: the node's switch, its ports, gNMI with TLS on 127.0.0.1) and
SCSC (--scsc), all on the host, and waits until every switch's FIB, read back
over P4Runtime, routes every node's key.

--scenario fig2 then runs the Figure 2 checks (examples/fig2.yaml): an echo
pod at sg4's first pod port, calls by name from a pod at sg1's, the sr1–sr3
link cut and restored, the echo pod withdrawn, each step asserted on the
replies, on the FIBs read back over P4Runtime and on the routes' counters
(which switches carried the frames); it prints PASS or FAIL per check and a
summary, and exits non-zero on any failure. Without --scenario (or with
--keep) the fabric stays up until SIGINT or SIGTERM, and the addresses to use
are printed.

It cleans up only what it made: the processes it started (by their PIDs),
the mininet network it built (net.stop(): its veths and host shells). It never
runs 'mn -c' or kills anything by name. The run's files (certificates,
configurations, logs) are in --workdir, or in a temporary directory that is
removed after a successful run without --keep.

Needs root, network namespaces, /usr/bin/python3 with mininet
(apt-get install -y --no-install-recommends mininet ethtool), and for bmv2
simple_switch_grpc (PATH or /opt/p4/bin), the BMv2 JSON (p4/build/dmsc.json)
and socat. Exit status: 0 all checks passed (or the fabric, kept up, was
stopped by a signal), 1 a check failed, 2 the fabric could not be built, 130
interrupted before that.`,
		Example: `  sudo bin/dmsc topo mininet examples/fig2.yaml --scenario fig2
  sudo bin/dmsc topo mininet examples/fig2.yaml --target bmv2 --scenario fig2
  sudo bin/dmsc topo mininet examples/fig2.yaml --keep --workdir /tmp/fig2   # explore it, Ctrl-C to stop`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := runTopoMininet(cmd, g, f, args[0])
			if err != nil && code > 1 {
				fmt.Fprintln(cmd.ErrOrStderr(), "dmsc:", err)
				f.exit(code)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", targetSoftswitch, "the switch of every node: softswitch or bmv2")
	fl.StringVar(&f.scenario, "scenario", "", "a scenario to run and assert on: "+strings.Join(mininetScenarios, ", "))
	fl.BoolVar(&f.keep, "keep", false, "keep the fabric up (after the scenario, if any) until SIGINT or SIGTERM, and keep the work directory")
	fl.BoolVar(&f.scsc, "scsc", true, "start SCSC, subscribed to every agent")
	fl.StringVar(&f.workdir, "workdir", "", "where the run's files go (default: a temporary directory)")
	fl.StringVar(&f.python, "python", "/usr/bin/python3", "the Python that has Debian's mininet")
	fl.StringVar(&f.script, "script", "", "run this dmsc_mininet.py instead of the one built into dmsc")
	fl.StringVar(&f.simpleSwitch, "simple-switch-grpc", "", "BMv2's simple_switch_grpc (default: from PATH, else /opt/p4/bin)")
	fl.StringVar(&f.p4JSON, "p4-json", "", "the BMv2 JSON of the DMSC program (default: p4/build/dmsc.json in the working directory or beside the dmsc binary's bin/)")
	fl.StringVar(&f.intfPrefix, "intf-prefix", "", "a prefix for the names of the interfaces made in the host's namespace, so that two runs do not collide")
	return cmd
}

// mininetEnv is what topo mininet needs from the machine.
type mininetEnv struct {
	euid     func() int
	lookPath func(string) (string, error)
	isFile   func(string) bool
	// netns tries to make a network namespace (and lets it go).
	netns func() error
	// pyImport runs python and imports mininet.
	pyImport func(ctx context.Context, python string) error
}

func hostEnv() mininetEnv {
	return mininetEnv{
		euid:     os.Geteuid,
		lookPath: lookPathSbin,
		isFile: func(p string) bool {
			st, err := os.Stat(p)
			return err == nil && st.Mode().IsRegular()
		},
		netns: func() error {
			// A child in a new network namespace that exits at once: the
			// namespace is anonymous and goes with it.
			c := exec.Command("/bin/true")
			c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
			return c.Run()
		},
		pyImport: func(ctx context.Context, python string) error {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, "-c", "import mininet.net, mininet.node, mininet.link").CombinedOutput()
			if err != nil {
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				return fmt.Errorf("%w: %s", err, lines[len(lines)-1])
			}
			return nil
		},
	}
}

// sbinDirs are on the script's PATH whatever the caller's is (mininetScriptEnv).
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// lookPathSbin is exec.LookPath, also trying the directories the script's
// PATH gets (a user's PATH often lacks /usr/sbin, where ip and ethtool are).
func lookPathSbin(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		if st, serr := os.Stat(filepath.Join(d, name)); serr == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return filepath.Join(d, name), nil
		}
	}
	return "", err
}

// mininetTools are the commands mininet and the script run, with the
// Debian package of each.
var mininetTools = []struct{ name, pkg string }{
	{"mnexec", "mininet"},
	{"ip", "iproute2"},
	{"ifconfig", "net-tools"},
	{"ethtool", "ethtool"},
}

// bmv2Paths are where the BMv2 target's files are when found.
type bmv2Paths struct {
	simpleSwitch, p4JSON, socat string
}

// checkMininet lists every missing prerequisite, one sentence each.
func checkMininet(ctx context.Context, f *topoMininetFlags) (bmv2Paths, []string) {
	env := f.env
	var problems []string
	var bp bmv2Paths
	if env.euid() != 0 {
		problems = append(problems, "not root: mininet makes network namespaces and veth pairs (run with sudo)")
	} else if err := env.netns(); err != nil {
		problems = append(problems, fmt.Sprintf("cannot make a network namespace (%v): mininet needs them (a container without CAP_SYS_ADMIN?)", err))
	}
	if !env.isFile(f.python) {
		problems = append(problems, fmt.Sprintf("--python %s: no such file (mininet's Python API is Debian's: apt-get install -y --no-install-recommends mininet)", f.python))
	} else if err := env.pyImport(ctx, f.python); err != nil {
		problems = append(problems, fmt.Sprintf("mininet is not importable by %s (%v): apt-get install -y --no-install-recommends mininet", f.python, err))
	}
	for _, tool := range mininetTools {
		if _, err := env.lookPath(tool.name); err != nil {
			problems = append(problems, fmt.Sprintf("%s not found on PATH: apt-get install %s", tool.name, tool.pkg))
		}
	}
	if f.script != "" && !env.isFile(f.script) {
		problems = append(problems, fmt.Sprintf("--script %s: no such file", f.script))
	}
	if f.target != targetBMv2 {
		return bp, problems
	}
	switch {
	case f.simpleSwitch != "":
		if !env.isFile(f.simpleSwitch) {
			problems = append(problems, fmt.Sprintf("--simple-switch-grpc %s: no such file", f.simpleSwitch))
		}
		bp.simpleSwitch = f.simpleSwitch
	default:
		if p, err := env.lookPath("simple_switch_grpc"); err == nil {
			bp.simpleSwitch = p
		} else if env.isFile("/opt/p4/bin/simple_switch_grpc") {
			bp.simpleSwitch = "/opt/p4/bin/simple_switch_grpc"
		} else {
			problems = append(problems, "simple_switch_grpc not found on PATH or in /opt/p4/bin: --target bmv2 needs BMv2 (or give --simple-switch-grpc)")
		}
	}
	if f.p4JSON != "" {
		if !env.isFile(f.p4JSON) {
			problems = append(problems, fmt.Sprintf("--p4-json %s: no such file", f.p4JSON))
		}
		bp.p4JSON = f.p4JSON
	} else {
		var tried []string
		for _, c := range p4JSONCandidates() {
			if env.isFile(c) {
				bp.p4JSON = c
				break
			}
			tried = append(tried, c)
		}
		if bp.p4JSON == "" {
			problems = append(problems, fmt.Sprintf("the BMv2 JSON of the DMSC program is not at %s: give --p4-json p4/build/dmsc.json", strings.Join(tried, " or ")))
		}
	}
	if p, err := env.lookPath("socat"); err == nil {
		bp.socat = p
	} else {
		problems = append(problems, "socat not found on PATH: --target bmv2 relays each BMv2's P4Runtime out of its namespace with it (apt-get install socat)")
	}
	return bp, problems
}

// p4JSONCandidates are where p4/build/dmsc.json is looked for: the working
// directory (a checkout) and the checkout a bin/dmsc binary sits in.
func p4JSONCandidates() []string {
	out := []string{filepath.Join("p4", "build", "dmsc.json")}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			out = append(out, filepath.Join(filepath.Dir(exe), "..", "p4", "build", "dmsc.json"))
		}
	}
	for i, p := range out {
		if abs, err := filepath.Abs(p); err == nil {
			out[i] = abs
		}
	}
	return out
}

// mnRun is run.json, what dmsc_mininet.py reads (its load_config checks the
// same fields).
type mnRun struct {
	Dmsc       string     `json:"dmsc"`
	Workdir    string     `json:"workdir"`
	Target     string     `json:"target"`
	Scenario   string     `json:"scenario"`
	Keep       bool       `json:"keep"`
	SCSC       bool       `json:"scsc"`
	IntfPrefix string     `json:"intf_prefix"`
	LogLevel   string     `json:"log_level"`
	Topology   mnTopology `json:"topology"`
	BMv2       *mnBMv2    `json:"bmv2,omitempty"`
}

type mnBMv2 struct {
	SimpleSwitchGRPC string `json:"simple_switch_grpc"`
	DeviceConfig     string `json:"device_config"`
	Socat            string `json:"socat"`
}

type mnTopology struct {
	Name  string   `json:"name"`
	Nodes []mnNode `json:"nodes"`
	Links []mnLink `json:"links"`
}

type mnNode struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	PodPorts []uint16 `json:"pod_ports"`
}

type mnEndpoint struct {
	Node string `json:"node"`
	Port uint16 `json:"port"`
}

type mnLink struct {
	A, B        mnEndpoint
	CapacityBPS uint64 `json:"capacity_bps"`
	DelayNS     int64  `json:"delay_ns"`
	Metric      uint32 `json:"metric"`
}

// mininetTopology is t as run.json carries it, in a stable order.
func mininetTopology(t *topo.Topology) mnTopology {
	out := mnTopology{Name: t.Name, Nodes: []mnNode{}, Links: []mnLink{}}
	for _, name := range t.NodeNames() {
		n := t.Nodes[name]
		pp := slices.Clone(n.PodPorts)
		if pp == nil {
			pp = []uint16{}
		}
		out.Nodes = append(out.Nodes, mnNode{Name: name, Role: string(n.Role), PodPorts: pp})
	}
	for _, l := range t.Links {
		out.Links = append(out.Links, mnLink{
			A: mnEndpoint{l.A.Node, l.A.Port}, B: mnEndpoint{l.B.Node, l.B.Port},
			CapacityBPS: l.Capacity, DelayNS: l.Delay.Nanoseconds(), Metric: l.Metric,
		})
	}
	return out
}

// runTopoMininet checks, prepares and runs the script; code is its exit
// status (or 2 when it could not be started).
func runTopoMininet(cmd *cobra.Command, g *globalFlags, f *topoMininetFlags, file string) (code int, err error) {
	ctx := cmd.Context()
	if f.target != targetSoftswitch && f.target != targetBMv2 {
		return 2, fmt.Errorf("--target %q: want %s or %s", f.target, targetSoftswitch, targetBMv2)
	}
	if f.scenario != "" && !slices.Contains(mininetScenarios, f.scenario) {
		return 2, fmt.Errorf("--scenario %q: want one of %s", f.scenario, strings.Join(mininetScenarios, ", "))
	}
	if len(f.intfPrefix) > 4 || strings.Trim(f.intfPrefix, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return 2, fmt.Errorf("--intf-prefix %q: want at most 4 of a-z, 0-9 and '-' (interface names have at most 15 characters)", f.intfPrefix)
	}
	t, err := topo.Load(file)
	if err != nil {
		return 2, err
	}
	bp, problems := checkMininet(ctx, f)
	if len(problems) > 0 {
		return 2, fmt.Errorf("topo mininet cannot run here:\n  %s", strings.Join(problems, "\n  "))
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return 2, fmt.Errorf("finding the dmsc binary to run: %w", err)
	}

	workdir, removeWorkdir := f.workdir, false
	if workdir == "" {
		if workdir, err = os.MkdirTemp("", "dmsc-mininet-"); err != nil {
			return 2, err
		}
		removeWorkdir = !f.keep
	} else if err := os.MkdirAll(workdir, 0o755); err != nil {
		return 2, fmt.Errorf("--workdir: %w", err)
	}
	if workdir, err = filepath.Abs(workdir); err != nil {
		return 2, err
	}
	defer func() {
		if removeWorkdir && code == 0 {
			os.RemoveAll(workdir)
		} else if removeWorkdir {
			fmt.Fprintf(cmd.ErrOrStderr(), "the run's files and logs are kept in %s\n", workdir)
		}
	}()

	script := f.script
	if script == "" {
		script = filepath.Join(workdir, mininet.ScriptName)
		if err := os.WriteFile(script, mininet.Script, 0o644); err != nil {
			return 2, err
		}
	}
	run := mnRun{
		Dmsc: exe, Workdir: workdir, Target: f.target, Scenario: f.scenario, Keep: f.keep,
		SCSC: f.scsc, IntfPrefix: f.intfPrefix, LogLevel: g.logLevel, Topology: mininetTopology(t),
	}
	if f.target == targetBMv2 {
		run.BMv2 = &mnBMv2{SimpleSwitchGRPC: bp.simpleSwitch, DeviceConfig: bp.p4JSON, Socat: bp.socat}
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return 2, err
	}
	config := filepath.Join(workdir, "run.json")
	if err := os.WriteFile(config, b, 0o644); err != nil {
		return 2, err
	}

	py := exec.CommandContext(ctx, f.python, script, "--config", config)
	py.Stdout, py.Stderr, py.Stdin = cmd.OutOrStdout(), cmd.ErrOrStderr(), os.Stdin
	py.Env = mininetScriptEnv(os.Environ(), bp.simpleSwitch)
	// On SIGINT or SIGTERM the script is asked to stop; it then stops what it
	// started and the network it built, which takes a few seconds.
	py.Cancel = func() error { return py.Process.Signal(syscall.SIGTERM) }
	py.WaitDelay = 90 * time.Second
	err = py.Run()
	var ee *exec.ExitError
	switch {
	case err == nil, py.ProcessState != nil && py.ProcessState.Success():
		// Exit 0 after SIGINT or SIGTERM is a fabric kept up and stopped
		// as asked (Run reports the cancelled context then).
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		what := map[int]string{1: "a check failed", 2: "the fabric could not be built", 130: "interrupted"}[ee.ExitCode()]
		if what == "" {
			what = "it failed"
		}
		return ee.ExitCode(), fmt.Errorf("topo mininet: %s (%s exited with status %d)", what, filepath.Base(script), ee.ExitCode())
	case ctx.Err() != nil:
		return 130, fmt.Errorf("topo mininet: interrupted: %w", err)
	default:
		return 2, fmt.Errorf("topo mininet: running %s %s: %w", f.python, script, err)
	}
}

// mininetScriptEnv is the script's environment: the sbin directories on PATH
// (ip, ethtool), and BMv2's libraries when it is built into a prefix of its
// own (/opt/p4/lib).
func mininetScriptEnv(env []string, simpleSwitch string) []string {
	out := slices.Clone(env)
	path, ld := "", ""
	for _, kv := range out {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
		if v, ok := strings.CutPrefix(kv, "LD_LIBRARY_PATH="); ok {
			ld = v
		}
	}
	dirs := filepath.SplitList(path)
	for _, d := range sbinDirs {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	out = append(out, "PATH="+strings.Join(dirs, string(filepath.ListSeparator)))
	if simpleSwitch != "" {
		// A BMv2 built into a prefix of its own (/opt/p4) has its libraries
		// in <prefix>/lib; a system one needs nothing.
		lib := filepath.Join(filepath.Dir(filepath.Dir(simpleSwitch)), "lib")
		st, err := os.Stat(lib)
		system := lib == "/usr/lib" || lib == "/lib" || lib == "/usr/local/lib"
		if err == nil && st.IsDir() && !system && !slices.Contains(filepath.SplitList(ld), lib) {
			out = append(out, "LD_LIBRARY_PATH="+strings.Join(append([]string{lib}, filepath.SplitList(ld)...), string(filepath.ListSeparator)))
		}
	}
	return out
}

type topoFIBFlags struct {
	p4rt     string
	deviceID uint64
	json     bool
	timeout  time.Duration
}

func newTopoFIBCommand(g *globalFlags) *cobra.Command {
	f := &topoFIBFlags{}
	cmd := &cobra.Command{
		Use:   "fib",
		Short: "Read a switch's FIB, port counters and drop counters over P4Runtime",
		Long: `fib reads, with P4Runtime Read RPCs only (no stream, no arbitration: the agent
stays primary), what the switch at --p4rt holds: the fib_* routes with their
next-hop groups resolved to ports, the port_rx/port_tx counters of the ports
that counted anything, and the drop counters by reason. The P4Info comes from
the switch (GetForwardingPipelineConfig), so it works on any switch its agent
has programmed: dmsc softswitch, BMv2, Tofino.

Keys are printed as wire keys (8d9001d3:652f5501:00000000:00000000) with the
prefix length; kinds are forward, local, to_cpu and drop; a route's packets
are its direct counter (the frames it matched). --json prints one object:
  {"routes": [{"key", "len", "kind", "packets", "bytes",
               "hops": [{"port", "dmac", "instance", "weight"}]}],
   "ports": {"N": {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes"}},
   "drops": {"reason": packets}}`,
		Example: `  dmsc topo fib --p4rt 127.0.0.1:9559
  dmsc topo fib --p4rt 127.0.0.1:9559 --json | jq '.routes[] | select(.len == 32)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			sf, err := readSwitchFIB(ctx, f.p4rt, f.deviceID)
			if err != nil {
				return err
			}
			if f.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sf)
			}
			return sf.print(cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.p4rt, "p4rt", "127.0.0.1:9559", "the switch's P4Runtime address")
	fl.Uint64Var(&f.deviceID, "device-id", 1, "its P4Runtime device id")
	fl.BoolVar(&f.json, "json", false, "print JSON instead of tables")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "bound on the whole read")
	return cmd
}

// switchFIB is what topo fib prints.
type switchFIB struct {
	Routes []fibRoute            `json:"routes"`
	Ports  map[string]portCounts `json:"ports"`
	Drops  map[string]int64      `json:"drops"`
}

type fibRoute struct {
	Key  string   `json:"key"`
	Len  int      `json:"len"`
	Kind string   `json:"kind"`
	Hops []fibHop `json:"hops"`
	// Packets and Bytes are the route's direct counter: frames it matched.
	Packets int64 `json:"packets"`
	Bytes   int64 `json:"bytes"`
}

type fibHop struct {
	Port     uint16 `json:"port"`
	DMAC     string `json:"dmac"`
	Instance uint32 `json:"instance,omitempty"`
	Weight   int32  `json:"weight"`
}

type portCounts struct {
	RxPackets int64 `json:"rx_packets"`
	RxBytes   int64 `json:"rx_bytes"`
	TxPackets int64 `json:"tx_packets"`
	TxBytes   int64 `json:"tx_bytes"`
}

// readSwitchFIB reads the switch at addr with Read RPCs.
func readSwitchFIB(ctx context.Context, addr string, deviceID uint64) (*switchFIB, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("--p4rt %s: %w", addr, err)
	}
	defer conn.Close()
	rpc := p4v1.NewP4RuntimeClient(conn)
	cfg, err := rpc.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{
		DeviceId: deviceID, ResponseType: p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE,
	}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("--p4rt %s: reading the pipeline: %w", addr, err)
	}
	if cfg.GetConfig().GetP4Info() == nil {
		return nil, fmt.Errorf("--p4rt %s: the switch has no pipeline yet (its agent pushes it)", addr)
	}
	s, err := p4info.New(cfg.GetConfig().GetP4Info())
	if err != nil {
		return nil, fmt.Errorf("--p4rt %s: the switch's P4Info: %w", addr, err)
	}
	read := func(what string, ents ...*p4v1.Entity) ([]*p4v1.Entity, error) {
		stream, err := rpc.Read(ctx, &p4v1.ReadRequest{DeviceId: deviceID, Entities: ents})
		if err != nil {
			return nil, fmt.Errorf("--p4rt %s: reading %s: %w", addr, what, err)
		}
		var out []*p4v1.Entity
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("--p4rt %s: reading %s: %w", addr, what, err)
			}
			out = append(out, resp.Entities...)
		}
	}
	ents, err := read("the tables", p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		return nil, err
	}
	// fib.Recover is the agent's own reading of a switch's FIB (warm
	// restarts): the same decoding, so this shows what the agent would see.
	prog, err := fib.Recover(s, ents)
	if err != nil {
		return nil, fmt.Errorf("--p4rt %s: %w", addr, err)
	}
	// The routes' direct counters: what each route forwarded.
	counted := map[spf.Prefix]*p4v1.CounterData{}
	for _, ft := range p4.FIBTables {
		t, err := s.Table(ft.Name)
		if err != nil {
			return nil, fmt.Errorf("--p4rt %s: %w", addr, err)
		}
		ents, err := read(ft.Name+" counters", &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{
			TableEntry: &p4v1.TableEntry{TableId: t.Preamble.Id, CounterData: &p4v1.CounterData{}}}})
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			te := e.GetTableEntry()
			if te == nil || len(te.Match) != 1 || te.Match[0].GetExact() == nil {
				continue
			}
			f, ok := t.FieldByID(te.Match[0].FieldId)
			if !ok {
				continue
			}
			var pfx spf.Prefix
			copy(pfx.Key[:], p4info.Padded(te.Match[0].GetExact().Value, f.Bitwidth))
			pfx.Len = uint8(f.Bitwidth)
			counted[pfx] = te.GetCounterData()
		}
	}
	out := &switchFIB{Routes: []fibRoute{}, Ports: map[string]portCounts{}, Drops: map[string]int64{}}
	for pfx, r := range prog.Routes() {
		fr := fibRoute{Key: wire.Key(pfx.Key).String(), Len: int(pfx.Len), Kind: r.Kind.String(), Hops: []fibHop{},
			Packets: counted[pfx].GetPacketCount(), Bytes: counted[pfx].GetByteCount()}
		for _, h := range r.Hops {
			fr.Hops = append(fr.Hops, fibHop{Port: h.Port, DMAC: macString(h.DMAC), Instance: h.Instance, Weight: h.Weight})
		}
		slices.SortFunc(fr.Hops, func(a, b fibHop) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Instance, b.Instance))
		})
		out.Routes = append(out.Routes, fr)
	}
	slices.SortFunc(out.Routes, func(a, b fibRoute) int { return cmp.Or(cmp.Compare(b.Len, a.Len), cmp.Compare(a.Key, b.Key)) })

	counter := func(name string) (map[int64]*p4v1.CounterData, error) {
		c, err := s.Counter(name)
		if err != nil {
			return nil, fmt.Errorf("--p4rt %s: %w", addr, err)
		}
		ents, err := read(name, &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: &p4v1.CounterEntry{CounterId: c.Preamble.Id}}})
		if err != nil {
			return nil, err
		}
		cells := map[int64]*p4v1.CounterData{}
		for _, e := range ents {
			if ce := e.GetCounterEntry(); ce != nil && ce.GetData().GetPacketCount() > 0 {
				cells[ce.GetIndex().GetIndex()] = ce.GetData()
			}
		}
		return cells, nil
	}
	rx, err := counter(p4.CounterPortRx)
	if err != nil {
		return nil, err
	}
	tx, err := counter(p4.CounterPortTx)
	if err != nil {
		return nil, err
	}
	ports := map[int64]bool{}
	for p := range rx {
		ports[p] = true
	}
	for p := range tx {
		ports[p] = true
	}
	for port := range ports {
		out.Ports[strconv.FormatInt(port, 10)] = portCounts{
			RxPackets: rx[port].GetPacketCount(), RxBytes: rx[port].GetByteCount(),
			TxPackets: tx[port].GetPacketCount(), TxBytes: tx[port].GetByteCount(),
		}
	}
	drops, err := counter(p4.CounterDrop)
	if err != nil {
		return nil, err
	}
	for reason, d := range drops {
		out.Drops[wire.DropReason(reason).String()] += d.GetPacketCount()
	}
	return out, nil
}

func macString(v uint64) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func (sf *switchFIB) print(w io.Writer) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLEN\tKIND\tPACKETS\tNEXT HOPS")
	for _, r := range sf.Routes {
		var hops []string
		for _, h := range r.Hops {
			s := fmt.Sprintf("port %d", h.Port)
			if h.Instance != 0 {
				s += fmt.Sprintf(" instance %d", h.Instance)
			}
			if h.Weight > 1 {
				s += fmt.Sprintf(" weight %d", h.Weight)
			}
			hops = append(hops, s)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", r.Key, r.Len, r.Kind, r.Packets, strings.Join(hops, ", "))
	}
	tw.Flush()
	fmt.Fprintln(&b)
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tRX PACKETS\tRX BYTES\tTX PACKETS\tTX BYTES")
	ports := slices.SortedFunc(maps.Keys(sf.Ports), func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return cmp.Compare(x, y)
	})
	for _, p := range ports {
		c := sf.Ports[p]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", p, c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes)
	}
	tw.Flush()
	if len(sf.Drops) > 0 {
		fmt.Fprintln(&b)
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DROP REASON\tPACKETS")
		for _, r := range slices.Sorted(maps.Keys(sf.Drops)) {
			fmt.Fprintf(tw, "%s\t%d\n", r, sf.Drops[r])
		}
		tw.Flush()
	}
	_, err := w.Write(b.Bytes())
	return err
}
