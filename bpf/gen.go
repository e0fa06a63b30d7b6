// Package bpf holds Tattle's kernel programs: C sources beside the Go bindings that bpf2go generated from them.
// The compiled objects are embedded; helper/enforce loads them. Regenerate with `go generate ./bpf/...`
// (clang-16 and Debian 12's libbpf-dev headers); CI regenerates and fails if the committed output differs.
//
// Both backends' objects declare the same maps, from the headers core.h includes (maps.h, identity.h, path.h)
// and process.h; the Go types of their keys and values are generated once, from the cgroup object, and
// shared.
package bpf

//go:generate go tool bpf2go -cc clang-16 -target bpfel -type event -type exec_event Cgroup cgroup.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -cc clang-16 -target bpfel -no-global-types Lsm lsm.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
