package atomicfile

import (
	"errors"
	"syscall"
)

// isUnsupported reports a folder sync the file system does not offer.
func isUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EBADF)
}
