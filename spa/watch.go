package spa

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
)

// watchedFile holds the parsed content of a file that operators edit while
// SPA runs (policy, revocation list). poll re-reads it when its size, mtime
// or inode changed, and swaps the parsed value in atomically; readers never
// lock. A file that fails to parse, or disappears, leaves the last good value
// in force and is logged: SPA keeps deciding with the rules it had rather
// than with none.
type watchedFile[T any] struct {
	path  string
	what  string
	limit int64
	parse func(name string, data []byte) (*T, error)

	cur atomic.Pointer[T]

	mu      sync.Mutex // serializes poll
	stat    fileStamp
	sum     [32]byte
	lastErr string // the last error reported, so a lasting one is reported once
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), ino: inodeOf(fi)}
}

func newWatchedFile[T any](what, path string, limit int64, parse func(string, []byte) (*T, error)) (*watchedFile[T], error) {
	w := &watchedFile[T]{path: path, what: what, limit: limit, parse: parse}
	changed, err := w.poll()
	if err != nil {
		return nil, err
	}
	if !changed {
		return nil, fmt.Errorf("%s %s: not loaded", what, path)
	}
	return w, nil
}

func (w *watchedFile[T]) get() *T { return w.cur.Load() }

// poll reloads the file if it changed; it reports whether a new value is in
// force. An error is returned once, not again on every poll while it lasts.
func (w *watchedFile[T]) poll() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed, err := w.pollLocked()
	if err == nil {
		w.lastErr = ""
		return changed, nil
	}
	if err.Error() == w.lastErr {
		return false, nil
	}
	w.lastErr = err.Error()
	return false, err
}

func (w *watchedFile[T]) pollLocked() (bool, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	st := stampOf(fi)
	if w.cur.Load() != nil && st == w.stat {
		return false, nil
	}
	b, err := yamlconf.ReadFile(w.path, w.limit)
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	sum := sha256.Sum256(b)
	if w.cur.Load() != nil && bytes.Equal(sum[:], w.sum[:]) {
		w.stat = st // touched, not changed
		return false, nil
	}
	v, err := w.parse(w.path, b)
	if err != nil {
		// Remember the stamp so that the broken file is not parsed again
		// on every poll; the next edit is tried.
		w.stat = st
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	w.cur.Store(v)
	w.stat, w.sum = st, sum
	return true, nil
}
