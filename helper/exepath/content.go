package exepath

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultDpkgInfo is where dpkg keeps each package's file checksums (PACKAGE.md5sums).
const DefaultDpkgInfo = "/var/lib/dpkg/info"

// Contents tells what an executable file holds: its SHA-256 (the content a rule was made for) and whether it
// is the file a package installed there (the package manager's checksum for that path matches), Linux's
// counterpart of a code signature. Sums are cached by (device, inode, size, modification and change time), so
// a file is read again only when it changed. Safe for concurrent use.
type Contents struct {
	dpkgInfo string

	mu    sync.Mutex
	sums  map[fileKey]sums
	index map[string]string // dpkg: "/usr/bin/curl" -> md5 hex
	stamp int64             // dpkg info directory's change time when index was built
}

type fileKey struct {
	dev, ino, size uint64
	mtime, ctime   int64
}

type sums struct{ sha256, md5 string }

// NewContents returns a checker reading dpkg's database at dpkgInfo (DefaultDpkgInfo when empty).
func NewContents(dpkgInfo string) *Contents {
	if dpkgInfo == "" {
		dpkgInfo = DefaultDpkgInfo
	}
	return &Contents{dpkgInfo: dpkgInfo, sums: map[fileKey]sums{}}
}

// maxSums bounds the cache.
const maxSums = 4096

func (c *Contents) sumsOf(path string) (sums, error) {
	f, err := os.Open(path)
	if err != nil {
		return sums{}, fmt.Errorf("read executable %s: %w", path, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return sums{}, fmt.Errorf("stat executable %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return sums{}, fmt.Errorf("%s is not a regular file", path)
	}
	k := fileKey{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	c.mu.Lock()
	s, ok := c.sums[k]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	sh, m5 := sha256.New(), md5.New()
	if _, err := io.Copy(io.MultiWriter(sh, m5), f); err != nil {
		return sums{}, fmt.Errorf("read executable %s: %w", path, err)
	}
	s = sums{sha256: hexOf(sh), md5: hexOf(m5)}
	c.mu.Lock()
	if len(c.sums) >= maxSums {
		c.sums = map[fileKey]sums{}
	}
	c.sums[k] = s
	c.mu.Unlock()
	return s, nil
}

func hexOf(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// SHA256 returns the hex SHA-256 of the file at path.
func (c *Contents) SHA256(path string) (string, error) {
	s, err := c.sumsOf(path)
	return s.sha256, err
}

// Packaged reports whether the file at path is the one a package installed there: dpkg lists the path and its
// MD5 matches the file's content now.
func (c *Contents) Packaged(path string) bool {
	want, ok := c.dpkgSum(path)
	if !ok {
		return false
	}
	s, err := c.sumsOf(path)
	return err == nil && s.md5 == want
}

// dpkgSum looks path up in dpkg's md5sums files, rebuilding the index when the database changed.
func (c *Contents) dpkgSum(path string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Stat(c.dpkgInfo, &st); err != nil {
		return "", false
	}
	stamp := st.Mtim.Nano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index == nil || stamp != c.stamp {
		c.index = readMD5Sums(c.dpkgInfo)
		c.stamp = stamp
	}
	sum, ok := c.index[path]
	return sum, ok
}

// readMD5Sums reads every PACKAGE.md5sums: lines of "MD5  relative/path".
func readMD5Sums(dir string) map[string]string {
	out := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.md5sums"))
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			sum, p, ok := strings.Cut(sc.Text(), "  ")
			if ok && len(sum) == 32 {
				out["/"+strings.TrimPrefix(p, "/")] = sum
			}
		}
		f.Close()
	}
	return out
}
