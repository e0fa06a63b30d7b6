package main

import "unsafe"

// unsafeBytePtr returns a pointer to a NUL-terminated copy of s, for prctl(PR_SET_NAME).
func unsafeBytePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
