package bpf

import "crypto/sha256"

// CgroupObjectHash identifies the build of the cgroup backend's object, so a helper can tell whether the
// programs pinned in bpffs are the ones it carries.
func CgroupObjectHash() [32]byte { return sha256.Sum256(_CgroupBytes) }

// LsmObjectHash identifies the build of the lsm backend's object.
func LsmObjectHash() [32]byte { return sha256.Sum256(_LsmBytes) }
