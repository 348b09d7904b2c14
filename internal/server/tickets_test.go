package server

import (
	"crypto/tls"
	"io"
	"testing"
)

// A resumed TLS session lives at most two rotations of the ticket keys: a
// ticket made under the key before the current one still resumes, one made
// under an older key does not, and the client falls back to a full
// handshake (CRY-01; Go's own keys would open a ticket for 7 days).
func TestCRY01_SessionTicketsOpenForTwoRotationsOnly(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			cert := ecdsaServerCert(t)
			cfg := TLSConfig(cert)
			tickets, err := newTicketKeys(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					// One byte after the handshake carries a TLS 1.3
					// ticket to the client before the connection ends.
					c.Write([]byte("x"))
					c.Close()
				}
			}()
			client := clientConfig(t, cert)
			client.MaxVersion = version
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			resumed := func() bool {
				t.Helper()
				c, err := tls.Dial("tcp", ln.Addr().String(), client)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				if got := c.ConnectionState().Version; got != version {
					t.Fatalf("negotiated %s, want %s", tls.VersionName(got), tls.VersionName(version))
				}
				return c.ConnectionState().DidResume
			}
			if resumed() {
				t.Fatal("the first connection resumed a session")
			}
			if !resumed() {
				t.Fatal("a fresh ticket did not resume: the test shows nothing")
			}
			tickets.rotate()
			if !resumed() {
				t.Error("a ticket under the previous key did not resume")
			}
			tickets.rotate()
			tickets.rotate()
			if resumed() {
				t.Error("a ticket two rotations old resumed its session")
			}
		})
	}
}
