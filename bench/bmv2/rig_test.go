package bmv2

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Names. Everything this package creates in the kernel carries the test
// process's pid, so that a later run can tell a killed run's leftovers from
// anybody else's. The prefix is not bmv2-tests' ("dmsct"): that harness
// takes a name whose pid runs another binary than its own for a leftover,
// so sharing it would let a bmv2-tests run and this one, started side by
// side by go test ./..., delete each other's namespaces.
//
//	network namespaces   dmscb-<pid>-<n>
//	interfaces           dmscb<pid in base 36>-<n in base 36><a|b> (15 bytes at most)
const (
	nsPrefix   = "dmscb-"
	linkPrefix = "dmscb"
	netnsDir   = "/run/netns"
)

// seq numbers namespaces and interfaces within this process; kernel names
// are process-wide, so the counter is too.
var seq atomic.Uint64

var leftovers sync.Once

// need skips t with one line unless this machine can build a rig: root
// and ip(8). (The BMv2 path also asks bmv2-tests' Require.)
func need(t testing.TB) {
	t.Helper()
	var missing []string
	if euid := os.Geteuid(); euid != 0 {
		missing = append(missing, fmt.Sprintf("network namespaces need root (euid %d)", euid))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (iproute2) is not on PATH")
	}
	if len(missing) > 0 {
		t.Skip("bench/bmv2: " + strings.Join(missing, "; "))
	}
}

// rig creates network namespaces and veth pairs and removes them, by name,
// when the test or benchmark ends.
type rig struct {
	t     testing.TB
	mu    sync.Mutex
	nss   []string
	links []string
}

func newRig(t testing.TB) *rig {
	t.Helper()
	leftovers.Do(func() { removeLeftovers(t) })
	r := &rig{t: t}
	t.Cleanup(r.remove)
	return r
}

func (r *rig) remove() {
	r.mu.Lock()
	nss, links := r.nss, r.links
	r.nss, r.links = nil, nil
	r.mu.Unlock()
	// Deleting a namespace deletes its interfaces and with them their veth
	// peers; what may remain are root-side ends of pairs whose other end
	// never reached a namespace.
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := ip("netns", "delete", nss[i]); err != nil {
			r.t.Errorf("removing network namespace %s: %v: %s", nss[i], err, out)
		}
	}
	for _, l := range links {
		// The kernel destroys a namespace's interfaces asynchronously: one
		// may vanish under our feet.
		if out, err := ip("link", "delete", l); err != nil && linkExists(l) {
			r.t.Errorf("removing interface %s: %v: %s", l, err, out)
		}
	}
}

func ip(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (r *rig) must(args ...string) {
	r.t.Helper()
	if out, err := ip(args...); err != nil {
		r.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// namespace creates a network namespace with its loopback up and IPv6 off,
// so that no neighbour discovery or MLD frame appears on a link.
func (r *rig) namespace() string {
	r.t.Helper()
	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq.Add(1))
	r.must("netns", "add", name)
	r.mu.Lock()
	r.nss = append(r.nss, name)
	r.mu.Unlock()
	r.must("-n", name, "link", "set", "lo", "up")
	r.must("netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return name
}

// vethToRoot creates a veth pair between the root namespace and ns, the end
// in ns called nsName, and returns the root end's name. Both ends are up,
// without IPv6 and without offloads.
func (r *rig) vethToRoot(ns, nsName string) string {
	r.t.Helper()
	base := linkPrefix + strconv.FormatUint(uint64(os.Getpid()), 36) + "-" + strconv.FormatUint(seq.Add(1), 36)
	root, peer := base+"a", base+"b"
	r.mu.Lock()
	r.links = append(r.links, root, peer)
	r.mu.Unlock()
	r.must("link", "add", root, "type", "veth", "peer", "name", peer)
	r.must("link", "set", peer, "netns", ns)
	r.must("-n", ns, "link", "set", peer, "name", nsName)
	r.must("netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf."+nsName+".disable_ipv6=1")
	offloadsOff(ns, nsName)
	r.must("-n", ns, "link", "set", nsName, "up")
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", root, "disable_ipv6"), []byte("1"), 0o644); err != nil && !os.IsNotExist(err) {
		r.t.Fatalf("disabling IPv6 on %s: %v", root, err)
	}
	offloadsOff("", root)
	r.must("link", "set", root, "up")
	return root
}

// offloadsOff turns checksum and segmentation offloads off, best effort
// (DMSC frames are not IP, so none applies; this keeps the veths as
// bmv2-tests configures them).
func offloadsOff(ns, iface string) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		return
	}
	args := []string{"-K", iface, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off"}
	cmd := exec.Command("ethtool", args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "ethtool"}, args...)...)
	}
	_ = cmd.Run()
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// inNamespace runs fn on an OS thread that has entered network namespace
// ns: the sockets fn creates (an AF_PACKET port, a TCP connection) belong
// to ns and stay there. The thread goes back to its own namespace
// afterwards; if it cannot, it stays locked and exits with the goroutine.
func inNamespace(ns string, fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", ns, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("entering network namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// removeLeftovers removes the namespaces and interfaces of runs of this
// package that are gone: their name carries a pid that is no running
// process with this binary's name. Anything else is left alone.
func removeLeftovers(t testing.TB) {
	self := os.Getpid()
	myComm, _ := os.ReadFile("/proc/self/comm")
	dead := func(pid int) bool {
		if pid == self {
			return false
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err != nil || !bytes.Equal(comm, myComm) || zombie(pid)
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			pid, ok := pidOf(e.Name(), nsPrefix, 10)
			if !ok || !dead(pid) {
				continue
			}
			// Its processes first, each by its own pid (a switch of a run
			// killed outright dies with it by Pdeathsig; this is for the
			// rest).
			if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if p, err := strconv.Atoi(f); err == nil && p > 1 && p != self {
						_ = syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			if out, err := ip("netns", "delete", e.Name()); err != nil {
				t.Logf("leftover namespace %s: %v: %s", e.Name(), err, out)
			} else {
				t.Logf("removed namespace %s, left by a dead run", e.Name())
			}
		}
	}
	if entries, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range entries {
			pid, ok := pidOf(e.Name(), linkPrefix, 36)
			if !ok || !dead(pid) {
				continue
			}
			if out, err := ip("link", "delete", e.Name()); err == nil {
				t.Logf("removed interface %s, left by a dead run", e.Name())
			} else if linkExists(e.Name()) {
				t.Logf("leftover interface %s: %v: %s", e.Name(), err, out)
			}
		}
	}
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// pidOf reads the pid from a name made of prefix, the pid in base, and "-".
func pidOf(name, prefix string, base int) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok || digits == "" {
		return 0, false
	}
	pid, err := strconv.ParseUint(digits, base, 31)
	if err != nil || pid == 0 {
		return 0, false
	}
	return int(pid), true
}
