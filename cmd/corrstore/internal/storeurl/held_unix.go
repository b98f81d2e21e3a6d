//go:build unix

package storeurl

import (
	"errors"
	"os"
	"syscall"
)

// held reports whether another process holds path's bbolt lock, without
// waiting: bbolt's own lock wait polls, and on a busy machine even a short
// timeout costs a second.
func held(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false // let the open report it
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}
