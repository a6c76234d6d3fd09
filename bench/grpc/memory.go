package grpcbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Usage is what the process holds, or a difference of two such readings.
type Usage struct {
	// Heap is the live heap after a full GC (MemStats.HeapAlloc), Stack the
	// goroutine stacks (StackInuse), RSS the resident set (/proc/self/statm;
	// 0 where it is not readable) after the runtime returned what it could
	// to the OS.
	Heap, Stack, RSS int64
	Goroutines       int
}

// Sub is u − v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{Heap: u.Heap - v.Heap, Stack: u.Stack - v.Stack, RSS: u.RSS - v.RSS, Goroutines: u.Goroutines - v.Goroutines}
}

// ReadUsage collects garbage twice (finalizers of the first may free more),
// returns freed memory to the OS and reads the process's memory.
func ReadUsage() Usage {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u := Usage{Heap: int64(ms.HeapAlloc), Stack: int64(ms.StackInuse), Goroutines: runtime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				u.RSS = pages * int64(os.Getpagesize())
			}
		}
	}
	return u
}

// PodMemory is what K Echo pods cost the process that runs them and the
// fabric they are registered with.
type PodMemory struct {
	Pods int
	// Idle is the cost of the pods registered, serving and routable from
	// the other SG, with no connection: each pod's Endpoint, keepalives,
	// QUIC listener and gRPC server, and the fabric's state for it (the
	// SG's registration, SPA's lease, a route in every agent and switch),
	// since every pod announces a prefix of its own.
	Idle Usage
	// Connected adds one gRPC connection to each pod from a client pod on
	// the other SG (both ends of each QUIC connection), after one call.
	Connected Usage
	// Start is how long starting and registering the K pods took.
	Start time.Duration
}

// PodMemoryOptions tune MeasurePodMemory.
type PodMemoryOptions struct {
	// Pods is how many Echo pods to start (at least 1).
	Pods int
	// UDPPods attaches them (and the client) over UDP tunnels, as
	// FabricOptions.UDPPods: the lab's in-memory links then hold no
	// per-pod queues.
	UDPPods bool
	// HeapProfile, when set, is where the heap profile at the idle reading
	// is written (go tool pprof -sample_index=inuse_space shows what the
	// pods hold).
	HeapProfile string
	Logger      *slog.Logger
}

// MeasurePodMemory starts a fabric and a client pod, reads the memory,
// starts the pods alternately on sg1 and sg2 (each announcing /mem/pNNN),
// waits until the client's SG routes to every one, reads the memory again,
// then dials and calls each once and reads it a third time.
func MeasurePodMemory(ctx context.Context, opts PodMemoryOptions) (m PodMemory, err error) {
	k := opts.Pods
	if k < 1 {
		return m, fmt.Errorf("grpcbench: %d pods: want at least 1", k)
	}
	f, err := StartFabric(ctx, FabricOptions{PodPorts: k/2 + 2, UDPPods: opts.UDPPods, Logger: opts.Logger})
	if err != nil {
		return m, err
	}
	var stops []func() error
	defer func() {
		for _, s := range slices.Backward(stops) {
			err = errors.Join(err, s())
		}
		err = errors.Join(err, f.Close())
	}()
	client, err := f.Client(ctx, "sg1", "/mem/client")
	if err != nil {
		return m, err
	}
	// The client's first dial and the gRPC and QUIC packages' lazily
	// built tables belong in the baseline, not to the first pod.
	if _, stop, err := f.ServeEcho(ctx, "sg2", "/mem/warm"); err != nil {
		return m, err
	} else {
		stops = append(stops, stop)
	}
	cc, err := Dial(ctx, client, "/mem/warm")
	if err != nil {
		return m, err
	}
	stops = append(stops, cc.Close)
	if err := NewCaller(echopb.NewEchoClient(cc), DefaultPayload).Call(ctx); err != nil {
		return m, err
	}
	base := ReadUsage()

	t0 := time.Now()
	names := make([]string, k)
	for i := range k {
		names[i] = fmt.Sprintf("/mem/p%03d", i)
		node := []string{"sg1", "sg2"}[i%2]
		_, stop, err := f.ServeEcho(ctx, node, names[i])
		if err != nil {
			return m, fmt.Errorf("grpcbench: pod %d of %d: %w", i+1, k, err)
		}
		stops = append(stops, stop)
	}
	m.Start = time.Since(t0)
	m.Pods = k
	for _, name := range names {
		n, err := wire.ParseName(name)
		if err != nil {
			return m, err
		}
		key := wire.KeyOf(n)
		if err := poll(ctx, 10*time.Second, func() error {
			ok, _, err := client.Resolve(ctx, key)
			if err == nil && !ok {
				err = fmt.Errorf("no route to %s yet", name)
			}
			return err
		}); err != nil {
			return m, err
		}
	}
	m.Idle = ReadUsage().Sub(base)
	if opts.HeapProfile != "" {
		if err := writeHeapProfile(opts.HeapProfile); err != nil {
			return m, err
		}
	}

	for _, name := range names {
		cc, err := Dial(ctx, client, name)
		if err != nil {
			return m, err
		}
		stops = append(stops, cc.Close)
		if err := NewCaller(echopb.NewEchoClient(cc), DefaultPayload).Call(ctx); err != nil {
			return m, fmt.Errorf("grpcbench: call %s: %w", name, err)
		}
	}
	m.Connected = ReadUsage().Sub(base)
	return m, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
