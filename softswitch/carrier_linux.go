//go:build linux

package softswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// WatchCarrier follows the carrier of AF_PACKET ports (interface name →
// switch port) through netlink and brings each port down or up with its
// link, until ctx ends. A Switch tells its P4Runtime controllers of each
// change (p4rt/portstatus), so the agent takes an adjacency down when its
// cable is pulled instead of after the HELLO dead interval. It starts from
// the interfaces' present state. It must run in the network namespace of
// the interfaces (netlink sockets see their own namespace only).
func WatchCarrier(ctx context.Context, sw PortSetter, ifaces map[string]uint16, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byIndex := map[int32]uint16{}
	names := map[int32]string{}
	for name, port := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("carrier: interface %q: %w", name, err)
		}
		byIndex[int32(ifi.Index)] = port
		names[int32(ifi.Index)] = name
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("carrier: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("carrier: netlink bind: %w", err)
	}
	// A non-blocking descriptor in an os.File reads through the runtime's
	// poller, so that closing the file ends a read in progress.
	f := os.NewFile(uintptr(fd), "netlink-route")
	var once sync.Once
	closeFile := func() { once.Do(func() { f.Close() }) }
	defer closeFile()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			closeFile()
		case <-stop:
		}
	}()

	state := map[int32]bool{}
	apply := func(idx int32, up bool) {
		port, ok := byIndex[idx]
		if !ok {
			return
		}
		if was, seen := state[idx]; seen && was == up {
			return
		}
		state[idx] = up
		if err := sw.SetPortUp(port, up); err != nil {
			log.Warn("carrier: cannot set the port", "port", port, "iface", names[idx], "err", err)
			return
		}
		log.Info("carrier", "port", port, "iface", names[idx], "up", up)
	}
	// The present state, read after the socket is bound so that no change
	// falls between the two.
	rescan := func() {
		for idx := range byIndex {
			ifi, err := net.InterfaceByIndex(int(idx))
			if err != nil {
				apply(idx, false) // gone
				continue
			}
			apply(idx, ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0)
		}
	}
	rescan()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The kernel dropped messages: read the state afresh.
				log.Warn("carrier: netlink overrun; reading the interfaces again")
				rescan()
				continue
			}
			return fmt.Errorf("carrier: netlink read: %w", err)
		}
		evs, perr := parseLinkEvents(buf[:n])
		for _, ev := range evs {
			apply(ev.Index, ev.Up)
		}
		if perr != nil {
			log.Warn("carrier: malformed netlink message", "err", perr)
		}
	}
}
