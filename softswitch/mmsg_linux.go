//go:build linux

package softswitch

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchIO moves batches of datagrams or frames through one socket with
// recvmmsg(2) and sendmmsg(2), integrated with Go's network poller through a
// syscall.RawConn so that blocking reads park the goroutine, honour read
// deadlines and wake on Close. It allocates nothing per batch: the mmsghdr
// arrays are kept (the reader's) or pooled (the writers').
type batchIO struct {
	rc syscall.RawConn

	rmu  sync.Mutex // one reader at a time; uncontended in the switch
	rh   []unix.Mmsghdr
	riov []unix.Iovec
	rnum int
	rerr syscall.Errno
	rcnt int
	rfn  func(fd uintptr) bool

	wpool sync.Pool // *writeBatch

	rxTrunc  atomic.Uint64 // frames longer than their buffer, dropped
	txErrors atomic.Uint64 // frames the kernel refused
}

type writeBatch struct {
	b    *batchIO
	h    []unix.Mmsghdr
	iov  []unix.Iovec
	off  int // next message to send
	num  int
	sent int
	err  syscall.Errno
	fn   func(fd uintptr) bool
}

func newBatchIO(rc syscall.RawConn) *batchIO {
	b := &batchIO{rc: rc}
	b.rfn = b.recv
	b.wpool.New = func() any {
		w := &writeBatch{b: b}
		w.fn = w.send
		return w
	}
	return b
}

// recv runs inside RawConn.Read: false asks the poller to wait.
func (b *batchIO) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rh[0])), uintptr(b.rnum), 0, 0, 0)
		switch e {
		case 0:
			b.rcnt, b.rerr = int(n), 0
			return true
		case unix.EAGAIN:
			return false
		case unix.EINTR, unix.ECONNREFUSED:
			// ECONNREFUSED is a connected UDP socket's report of an ICMP
			// port unreachable for an earlier send: the peer is not up
			// yet. It says nothing about this read.
			continue
		default:
			b.rcnt, b.rerr = 0, e
			return true
		}
	}
}

// ReadBatch reads at least one frame into ms, blocking until one arrives or
// the read deadline passes.
func (b *batchIO) ReadBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	b.rmu.Lock()
	defer b.rmu.Unlock()
	if len(b.rh) < len(ms) {
		b.rh = make([]unix.Mmsghdr, len(ms))
		b.riov = make([]unix.Iovec, len(ms))
	}
	for {
		for i := range ms {
			if len(ms[i].Buf) == 0 {
				return 0, errors.New("softswitch: read into an empty buffer")
			}
			b.riov[i].Base = &ms[i].Buf[0]
			b.riov[i].SetLen(len(ms[i].Buf))
			h := &b.rh[i]
			h.Hdr = unix.Msghdr{Iov: &b.riov[i]}
			h.Hdr.SetIovlen(1)
			h.Len = 0
		}
		b.rnum = len(ms)
		if err := b.rc.Read(b.rfn); err != nil {
			return 0, err
		}
		if b.rerr != 0 {
			return 0, b.rerr
		}
		// Drop truncated frames, keeping every buffer in ms.
		n := 0
		for i := 0; i < b.rcnt; i++ {
			if b.rh[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				b.rxTrunc.Add(1)
				continue
			}
			if n != i {
				ms[n], ms[i] = ms[i], ms[n]
			}
			ms[n].N = int(b.rh[i].Len)
			n++
		}
		if n > 0 {
			return n, nil
		}
	}
}

// send runs inside RawConn.Write.
func (w *writeBatch) send(fd uintptr) bool {
	for w.off < w.num {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.h[w.off])), uintptr(w.num-w.off), 0, 0, 0)
		switch e {
		case 0:
			w.off += int(n)
			w.sent += int(n)
		case unix.EAGAIN:
			return false
		case unix.EINTR:
		case unix.EBADF, unix.ENOTSOCK:
			w.err = e
			return true
		default:
			// The message at w.off was refused (ECONNREFUSED from a
			// UDP peer that is not up, ENOBUFS, EMSGSIZE, a down
			// link): count it and go on with the rest, as a NIC would.
			w.b.txErrors.Add(1)
			w.off++
		}
	}
	return true
}

// WriteBatch sends every frame in ms; safe for concurrent use.
func (b *batchIO) WriteBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	w := b.wpool.Get().(*writeBatch)
	if len(w.h) < len(ms) {
		w.h = make([]unix.Mmsghdr, len(ms))
		w.iov = make([]unix.Iovec, len(ms))
	}
	for i := range ms {
		m := &ms[i]
		if m.N > 0 {
			w.iov[i].Base = &m.Buf[0]
		} else {
			w.iov[i].Base = nil
		}
		w.iov[i].SetLen(m.N)
		h := &w.h[i]
		h.Hdr = unix.Msghdr{Iov: &w.iov[i]}
		h.Hdr.SetIovlen(1)
		h.Len = 0
	}
	w.off, w.num, w.sent, w.err = 0, len(ms), 0, 0
	err := b.rc.Write(w.fn)
	sent := w.sent
	if err == nil && w.err != 0 {
		err = w.err
	}
	// Drop the references to the frames before pooling the batch.
	clear(w.iov[:len(ms)])
	b.wpool.Put(w)
	return sent, err
}
