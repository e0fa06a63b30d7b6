// Package exepath turns the executable identities the kernel reports (device, inode) into paths users can read.
//
// The kernel's identity is exact; a path is only a label. The resolver reads /proc/PID/exe of the process that
// made the attempt and accepts the answer only if that file is the same inode, so a PID reused by another
// program can never lend it a wrong name. Answers are cached per identity (bounded, least recently used).
package exepath

import (
	"container/list"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/shared/identity"
)

// DefaultCacheSize bounds the number of identities remembered.
const DefaultCacheSize = 4096

// Resolver maps executable identities to paths. It is safe for concurrent use.
type Resolver struct {
	procRoot string
	capacity int

	mu    sync.Mutex
	order *list.List // front: most recently used
	items map[identity.Executable]*list.Element
}

type entry struct {
	app  identity.Executable
	path string
}

// New returns a resolver reading procRoot (normally /proc) and remembering up to capacity identities.
func New(procRoot string, capacity int) *Resolver {
	if capacity <= 0 {
		capacity = DefaultCacheSize
	}
	return &Resolver{procRoot: procRoot, capacity: capacity, order: list.New(), items: map[identity.Executable]*list.Element{}}
}

// Path returns the path of app, learned from process tgid if not cached. It returns "" when the process is
// gone and the identity was never seen.
func (r *Resolver) Path(tgid uint32, app identity.Executable) string {
	if p, ok := r.cached(app); ok {
		return p
	}
	p, err := r.fromProc(tgid, app)
	if err != nil {
		return ""
	}
	r.remember(app, p)
	return p
}

// Learn records a path reported by the kernel for app.
func (r *Resolver) Learn(app identity.Executable, path string) {
	if path != "" {
		r.remember(app, path)
	}
}

// Forget drops a cached identity (for example when its file was replaced).
func (r *Resolver) Forget(app identity.Executable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.items[app]; ok {
		r.order.Remove(el)
		delete(r.items, app)
	}
}

// Len reports how many identities are cached.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}

func (r *Resolver) cached(app identity.Executable) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.items[app]
	if !ok {
		return "", false
	}
	r.order.MoveToFront(el)
	return el.Value.(*entry).path, true
}

func (r *Resolver) remember(app identity.Executable, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.items[app]; ok {
		el.Value.(*entry).path = path
		r.order.MoveToFront(el)
		return
	}
	r.items[app] = r.order.PushFront(&entry{app: app, path: path})
	for r.order.Len() > r.capacity {
		last := r.order.Back()
		r.order.Remove(last)
		delete(r.items, last.Value.(*entry).app)
	}
}

// fromProc reads /proc/TGID/exe and checks it is the identity the kernel reported.
func (r *Resolver) fromProc(tgid uint32, app identity.Executable) (string, error) {
	dir := filepath.Join(r.procRoot, strconv.FormatUint(uint64(tgid), 10))
	exe := filepath.Join(dir, "exe")
	// The executable's mount is in the process's own mount table (it may live in another namespace).
	mounts := identity.ReadMounts(filepath.Join(dir, "mountinfo"))
	same := func() bool {
		got, err := mounts.Stat(exe)
		return err == nil && got == app
	}
	if !same() {
		return "", fmt.Errorf("process %d is gone or runs another executable", tgid)
	}
	target, err := readlink(exe)
	if err != nil {
		return "", err
	}
	// Check again: the process may have exec'd between the stat and the readlink.
	if !same() {
		return "", fmt.Errorf("process %d changed executable while being inspected", tgid)
	}
	return target, nil
}

func readlink(path string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink(path, buf)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(buf[:n]), nil
}
