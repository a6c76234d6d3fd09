// Package netns creates network namespaces and veth pairs for tests and
// benchmarks, and removes them, by name, when the test ends, whatever
// happens. Everything it creates carries a prefix chosen by the caller and
// the creating process's pid, so that a later run can tell a killed run's
// leftovers from anybody else's and remove them; callers that may run side
// by side (go test ./... runs packages in parallel) use different
// prefixes, since each removes the leftovers of its prefix:
//
//	network namespaces   <prefix>-<pid>-<n>
//	interfaces           <prefix><pid in base 36>-<n in base 36><a|b> (15 bytes at most)
//	directories          $TMPDIR/<prefix>-<pid>-*
package netns

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

const netnsDir = "/run/netns"

// seq numbers namespaces and interfaces within this process; the kernel's
// names are process-wide, so the counter is too, and so is the record of
// the prefixes whose leftovers this process has already removed.
var (
	seq       atomic.Uint64
	leftovers sync.Map // prefix → *sync.Once
)

// Net creates network namespaces and veth pairs for one test and removes
// them, by name, when the test ends, whatever happens.
type Net struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	nss    []string
	links  []string // root-side interfaces created
}

// New starts a test's namespace set, its names starting with prefix
// (letters only, at most 5 of them, so that interface names fit 15
// bytes); the first one of a prefix in a process also removes what dead
// runs left behind under it.
func New(t testing.TB, prefix string) *Net {
	t.Helper()
	if prefix == "" || len(prefix) > 5 || strings.ContainsAny(prefix, "-0123456789") {
		t.Fatalf("netns: prefix %q: want 1 to 5 letters", prefix)
	}
	once, _ := leftovers.LoadOrStore(prefix, new(sync.Once))
	once.(*sync.Once).Do(func() { removeLeftovers(t, prefix) })
	n := &Net{t: t, prefix: prefix}
	t.Cleanup(n.remove)
	return n
}

func (n *Net) remove() {
	n.mu.Lock()
	nss, links := n.nss, n.links
	n.nss, n.links = nil, nil
	n.mu.Unlock()
	// Deleting a namespace deletes its interfaces and, with them, the
	// peers of its veth pairs; what is left are root-side interfaces of
	// pairs whose other end never made it into a namespace.
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := ipCmd("netns", "delete", nss[i]); err != nil {
			n.t.Errorf("removing network namespace %s: %v: %s", nss[i], err, out)
		}
	}
	for _, l := range links {
		// The kernel destroys a deleted namespace's interfaces, and their
		// veth peers, asynchronously: one may vanish under our feet.
		if out, err := ipCmd("link", "delete", l); err != nil && linkExists(l) && !strings.Contains(out, "Cannot find device") {
			n.t.Errorf("removing interface %s: %v: %s", l, err, out)
		}
	}
}

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (n *Net) must(args ...string) {
	n.t.Helper()
	if out, err := ipCmd(args...); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNS runs a command in namespace ns.
func (n *Net) inNS(ns string, args ...string) {
	n.t.Helper()
	n.must(append([]string{"netns", "exec", ns}, args...)...)
}

// Namespace creates a network namespace with its loopback up and IPv6 off
// (so that no neighbour discovery or MLD frame appears on a test link).
func (n *Net) Namespace() string {
	n.t.Helper()
	name := fmt.Sprintf("%s-%d-%d", n.prefix, os.Getpid(), seq.Add(1))
	n.must("netns", "add", name)
	n.mu.Lock()
	n.nss = append(n.nss, name)
	n.mu.Unlock()
	n.must("-n", name, "link", "set", "lo", "up")
	n.inNS(name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return name
}

func (n *Net) linkName() string {
	return n.prefix + strconv.FormatUint(uint64(os.Getpid()), 36) + "-" + strconv.FormatUint(seq.Add(1), 36)
}

// VethToRoot creates a veth pair between the root namespace and ns: the end
// in ns is called nsName, the root end's name is returned. Both are up,
// without IPv6 and without offloads.
func (n *Net) VethToRoot(ns, nsName string) string {
	n.t.Helper()
	base := n.linkName()
	root, peer := base+"a", base+"b"
	n.addPair(root, peer)
	n.moveInto(peer, ns, nsName)
	n.prepareRoot(root)
	return root
}

// VethBetween links namespaces a and b with a veth pair whose ends are
// called nameA (in a) and nameB (in b).
func (n *Net) VethBetween(a, nameA, b, nameB string) {
	n.t.Helper()
	base := n.linkName()
	n.addPair(base+"a", base+"b")
	n.moveInto(base+"a", a, nameA)
	n.moveInto(base+"b", b, nameB)
}

func (n *Net) addPair(a, b string) {
	n.t.Helper()
	n.mu.Lock()
	n.links = append(n.links, a, b)
	n.mu.Unlock()
	n.must("link", "add", a, "type", "veth", "peer", "name", b)
}

func (n *Net) moveInto(iface, ns, name string) {
	n.t.Helper()
	n.must("link", "set", iface, "netns", ns)
	n.must("-n", ns, "link", "set", iface, "name", name)
	n.inNS(ns, "sysctl", "-q", "-w", "net.ipv6.conf."+name+".disable_ipv6=1")
	offloadsOff(ns, name)
	n.must("-n", ns, "link", "set", name, "up")
}

func (n *Net) prepareRoot(iface string) {
	n.t.Helper()
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", iface, "disable_ipv6"), []byte("1"), 0o644); err != nil && !os.IsNotExist(err) {
		n.t.Fatalf("disabling IPv6 on %s: %v", iface, err)
	}
	offloadsOff("", iface)
	n.must("link", "set", iface, "up")
}

// offloadsOff turns off checksum and segmentation offloads, so that frames
// cross the link as written. It is best effort: veths refuse some of
// them, and without ethtool there is nothing to do (DMSC frames are not
// IP, so no offload applies to them anyway).
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

// SetLinkUp brings an interface in ns up or down: down cuts the veth pair
// in both directions, as a pulled cable would.
func (n *Net) SetLinkUp(ns, iface string, up bool) {
	n.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	n.must("-n", ns, "link", "set", iface, state)
}

// Blackhole makes an interface in ns drop every frame it would send (on) or
// send again (off), with its carrier up: a tbf qdisc whose burst no frame
// fits in. Applied to both ends, the link carries nothing either way and
// only the agents' HELLOs can tell. (Taking the interface down instead
// would stop BMv2 receiving on all its ports: README.md, "An interface
// going down stops BMv2".)
func (n *Net) Blackhole(ns, iface string, on bool) {
	n.t.Helper()
	if on {
		n.inNS(ns, "tc", "qdisc", "replace", "dev", iface, "root", "tbf", "rate", "1kbit", "burst", "1", "latency", "1ms")
	} else {
		n.inNS(ns, "tc", "qdisc", "del", "dev", iface, "root")
	}
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// removeLeftovers removes the namespaces, interfaces and directories under
// prefix of runs that are gone: their name carries a pid that is not a
// running binary like this one. Anything else is left alone.
func removeLeftovers(t testing.TB, prefix string) {
	self := os.Getpid()
	myComm, _ := os.ReadFile("/proc/self/comm")
	ours := func(pid int) bool {
		if pid == self {
			return false
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err != nil || !bytes.Equal(comm, myComm) || zombie(pid)
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			pid, ok := PidOf(e.Name(), prefix+"-", 10, "-")
			if !ok || !ours(pid) {
				continue
			}
			// Its processes first (a BMv2 of a run killed with SIGKILL
			// dies with it, by Pdeathsig; this is for anything else),
			// each by its own pid.
			if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if p, err := strconv.Atoi(f); err == nil && p > 1 && p != self {
						_ = syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			if out, err := ipCmd("netns", "delete", e.Name()); err != nil {
				t.Logf("leftover namespace %s: %v: %s", e.Name(), err, out)
			} else {
				t.Logf("removed namespace %s, left by a dead run", e.Name())
			}
		}
	}
	if entries, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range entries {
			pid, ok := PidOf(e.Name(), prefix, 36, "-")
			if !ok || !ours(pid) {
				continue
			}
			if out, err := ipCmd("link", "delete", e.Name()); err == nil {
				t.Logf("removed interface %s, left by a dead run", e.Name())
			} else if linkExists(e.Name()) {
				t.Logf("leftover interface %s: %v: %s", e.Name(), err, out)
			}
		}
	}
	if entries, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range entries {
			pid, ok := PidOf(e.Name(), prefix+"-", 10, "-")
			if ok && ours(pid) && e.IsDir() {
				_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

// zombie reports whether pid has exited and waits to be reaped: a killed
// run whose parent has not looked yet.
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

// PidOf reads the pid from a name made of prefix, the pid in base, and sep.
func PidOf(name, prefix string, base int, sep string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, sep)
	if !ok || digits == "" {
		return 0, false
	}
	pid, err := strconv.ParseUint(digits, base, 31)
	if err != nil || pid == 0 {
		return 0, false
	}
	return int(pid), true
}

// Enter runs fn on an OS thread that has entered network namespace ns: the
// sockets fn creates (an AF_PACKET port, a TCP connection) belong to ns and
// stay there. The thread goes back to its own namespace afterwards; if it
// cannot, it stays locked and exits with the goroutine.
func Enter(ns string, fn func() error) error {
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
