package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startServe runs Serve on a loopback port and returns its address.
func startServe(t *testing.T, h http.Handler) string {
	t.Helper()
	cert, _, err := SelfSignedCertificate(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, TLSConfig(cert), slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

func TestCRY01_PlainHTTPIsOnlyRedirected(t *testing.T) {
	t.Parallel()
	var reached atomic.Bool
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Store(true) }))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /orgs/clinic?x=1 HTTP/1.1\r\nHost: custodia.example:8443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://custodia.example:8443/orgs/clinic?x=1" {
		t.Errorf("plain HTTP answer: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	// The API is not redirected (ASVS V4.1.2): its client learns that it
	// sent the request in clear.
	for _, path := range []string{"/api/v1/orgs?x=1", "/api"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: custodia.example:8443\r\nContent-Length: 2\r\n\r\n{}")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "HTTPS") {
			t.Errorf("plain HTTP to %s: %s, Location %q, %s", path, resp.Status, resp.Header.Get("Location"), body)
		}
	}
	if reached.Load() {
		t.Error("a plain-HTTP request reached the handler")
	}
	// A forged Host cannot inject headers or send the client elsewhere by
	// scheme tricks.
	conn2, _ := net.Dial("tcp", addr)
	defer conn2.Close()
	io.WriteString(conn2, "GET / HTTP/1.1\r\nHost: evil.example/\"><x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err == nil && strings.Contains(resp.Header.Get("Location"), "evil") {
		t.Errorf("redirect followed an invalid Host: %q", resp.Header.Get("Location"))
	}
}

func TestServeAnswersTLSAndShutsDown(t *testing.T) {
	t.Parallel()
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS answer: %q, %+v", b, resp.TLS)
	}
}

func TestListenReportsPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a used port: %v", err)
	}
}
