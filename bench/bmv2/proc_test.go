package bmv2

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// proc is a switch process running in a network namespace (started through
// ip netns exec, which execs it: the pid is the switch's own). The test's
// cleanup stops it by its pid and, if the test failed, shows the end of its
// output.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProc runs argv in namespace ns with env, its output in dir.
func startProc(t testing.TB, name, ns, dir string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: filepath.Join(dir, name+".out"), done: make(chan struct{})}
	out, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// Pdeathsig: a benchmark binary killed outright takes its switches
	// with it. It fires when the thread that forked the child exits, so the
	// child is started (and waited for) from a goroutine locked to its
	// thread.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (%s), the end of its output:\n%s", name, ns, p.tail(30))
		}
	})
	return p
}

// exited reports why the process is gone, or nil while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.tail(10))
	default:
		return nil
	}
}

// stop ends the process by its pid: SIGTERM, then SIGKILL.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	data, err := os.ReadFile(p.out)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
