package audit

import (
	"errors"
	"net"
	"syscall"
)

// peek asks the kernel, without waiting and without taking anything,
// what conn's socket holds to read. ok is false when conn is not a socket
// it can ask.
func peek(conn net.Conn) (st peekState, ok bool) {
	sc, isSocket := conn.(syscall.Conn)
	if !isSocket {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed, true
	}
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) || errors.Is(rerr, syscall.EINTR):
			st = peekNothing
		case rerr != nil || n == 0:
			st = peekClosed
		default:
			st = peekBytes
		}
		return true // done: never wait for the socket
	})
	if err != nil { // the socket is closed on this side
		return peekClosed, true
	}
	return st, true
}
