package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// Listen opens the server's one TCP port.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, errs.E(errs.Unavailable, "listen on %s: the address is in use by another program", addr)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "listen on "+addr)
	}
	return ln, nil
}

// ShutdownGrace is how long in-flight requests may take after a stop signal.
const ShutdownGrace = 15 * time.Second

// Serve answers HTTPS on ln (and redirects plain HTTP to it) until ctx ends, then stops accepting, lets
// in-flight requests finish (up to ShutdownGrace) and returns.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg *tls.Config, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	tickets, err := newTicketKeys(cfg)
	if err != nil {
		return err
	}
	go tickets.rotateEvery(ctx, TicketKeyRotation)
	done := make(chan error, 1)
	plain := redirectListener{Listener: ln, fallbackHost: ln.Addr().String()}
	// tls.NewListener, not ServeTLS: ServeTLS would serve a copy of cfg,
	// out of reach of the ticket keys' rotation.
	go func() { done <- srv.Serve(tls.NewListener(plain, cfg)) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-done
	return err
}
