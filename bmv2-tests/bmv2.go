package bmv2tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dmsc-mesh/dmsc/p4"
)

// DeviceID is every test switch's P4Runtime device id.
const DeviceID = 1

// LogEnv, when set to a BMv2 log level (trace, debug, info, ...), makes
// every simple_switch_grpc log at that level into its directory, which is
// then kept and named in the test log.
const LogEnv = "DMSC_BMV2_LOG"

// BMv2 is one simple_switch_grpc running in its own network namespace
// (it always opens Thrift on 0.0.0.0:9090, so two cannot share one). Its
// P4Runtime server listens on a Unix socket in a directory of its own,
// which the test process reaches from the root namespace: a Unix socket
// path is the same in every network namespace, so no management link, no
// address and no route is needed.
type BMv2 struct {
	Name string
	NS   string
	// Addr is the P4Runtime address for grpc ("unix:///…/p4rt.sock").
	Addr string
	Dir  string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, once done is closed
	out  string
}

// StartBMv2 starts simple_switch_grpc without a program in namespace ns,
// with ports (port number → interface in ns) bound by -i, and waits until
// its P4Runtime server answers. The test's cleanup stops it (by its pid)
// and, if the test failed, shows the end of its output.
func StartBMv2(t testing.TB, tool Tool, name, ns string, ports map[uint16]string) *BMv2 {
	t.Helper()
	b := LaunchBMv2(t, tool, name, ns, ports)
	b.WaitReady(t)
	return b
}

// LaunchBMv2 is StartBMv2 without the wait: a switch takes about a second
// to start, so a test with several launches them all, then waits.
func LaunchBMv2(t testing.TB, tool Tool, name, ns string, ports map[uint16]string) *BMv2 {
	t.Helper()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s-%d-%s-", namePrefix, os.Getpid(), name))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "p4rt.sock")
	if len(sock) > 100 {
		t.Fatalf("BMv2 %s: socket path %s is too long for a Unix socket; set TMPDIR to a shorter directory", name, sock)
	}
	b := &BMv2{Name: name, NS: ns, Addr: "unix://" + sock, Dir: dir, done: make(chan struct{}), out: filepath.Join(dir, "bmv2.out")}
	args := []string{"netns", "exec", ns, tool.Path, "--device-id", strconv.Itoa(DeviceID), "--no-p4",
		// BMv2's default, ipc:///tmp/bmv2-<device-id>-notifications.ipc,
		// would be shared by every switch with device id 1.
		"--notifications-addr", "ipc://" + filepath.Join(dir, "notifications.ipc")}
	nums := make([]uint16, 0, len(ports))
	for p := range ports {
		nums = append(nums, p)
	}
	slices.Sort(nums)
	for _, p := range nums {
		args = append(args, "-i", fmt.Sprintf("%d@%s", p, ports[p]))
	}
	level := os.Getenv(LogEnv)
	if level != "" {
		args = append(args, "--log-console", "-L", level)
	}
	args = append(args, "--", "--grpc-server-addr", b.Addr, "--cpu-port", strconv.Itoa(p4.CPUPort))
	out, err := os.Create(b.out)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec enters the namespace and execs the switch: the pid is
	// the switch's own.
	b.cmd = exec.Command("ip", args...)
	b.cmd.Env = tool.Env
	b.cmd.Stdout, b.cmd.Stderr = out, out
	// Pdeathsig: a test binary killed outright takes its switches with it.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := startLocked(b.cmd, b.done, &b.err); err != nil {
		out.Close()
		os.RemoveAll(dir)
		t.Fatalf("BMv2 %s: %v", name, err)
	}
	out.Close()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() || level != "" {
			t.Logf("BMv2 %s (%s), the end of its output:\n%s", name, ns, b.tail(40))
		}
		if level != "" {
			t.Logf("BMv2 %s: output kept in %s", name, dir)
			return
		}
		os.RemoveAll(dir)
	})
	return b
}

// WaitReady waits until the switch's P4Runtime server answers.
func (b *BMv2) WaitReady(t testing.TB) {
	t.Helper()
	if err := b.waitReady(20 * time.Second); err != nil {
		t.Fatalf("BMv2 %s: %v\n%s", b.Name, err, b.tail(20))
	}
}

// startLocked starts cmd from a goroutine locked to its OS thread and waits
// for it there: Pdeathsig fires when the thread that forked the child
// exits, and an unlocked goroutine's thread may be any.
func startLocked(cmd *exec.Cmd, done chan struct{}, result *error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		*result = cmd.Wait()
		close(done)
	}()
	return <-started
}

// waitReady waits until the switch answers P4Runtime's Capabilities.
func (b *BMv2) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	conn, err := grpc.NewClient(b.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rpc := p4v1.NewP4RuntimeClient(conn)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return fmt.Errorf("simple_switch_grpc exited: %v", b.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, last = rpc.Capabilities(ctx, &p4v1.CapabilitiesRequest{})
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("P4Runtime server at %s not ready after %v: %v", b.Addr, timeout, last)
}

// Running reports whether the process is still there.
func (b *BMv2) Running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// stop ends the switch by its pid: SIGTERM, then SIGKILL.
func (b *BMv2) stop() {
	if !b.Running() {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = b.cmd.Process.Kill()
	<-b.done
}

// tail returns the last n lines of the switch's output.
func (b *BMv2) tail(n int) string {
	data, err := os.ReadFile(b.out)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// CheckAlive fails the test if the switch died (a crash on some input is a
// BMv2 bug worth reporting, not a test to pass).
func (b *BMv2) CheckAlive(t testing.TB) {
	t.Helper()
	if !b.Running() {
		t.Fatalf("BMv2 %s exited: %v\n%s", b.Name, b.err, b.tail(20))
	}
}

// RepoRoot finds the module root (the directory with go.mod) above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/dmsc-mesh/dmsc") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/dmsc-mesh/dmsc above the working directory")
		}
		dir = parent
	}
}

// BMv2JSON reads the committed device config, p4/build/dmsc.json.
func BMv2JSON(t testing.TB) []byte {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "p4", "build", "dmsc.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
