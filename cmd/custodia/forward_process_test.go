package main

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAUD04_ServePushesTheTrailToACollector runs the built server with
// --audit-forward to a syslog collector on loopback (ASVS V16.4.3): the
// trail's events arrive as RFC 5424 messages, framed by octet counting,
// while the server runs.
func TestAUD04_ServePushesTheTrailToACollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu  sync.Mutex
		got []string
	)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(conn)
				for {
					n, err := r.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSpace(n))
					if err != nil {
						return
					}
					msg := make([]byte, size)
					if _, err := io.ReadFull(r, msg); err != nil {
						return
					}
					mu.Lock()
					got = append(got, string(msg))
					mu.Unlock()
				}
			}()
		}
	}()
	data := filepath.Join(t.TempDir(), "data")
	demoTrail(t, nil, 3, "--data", data, "--audit-forward", "syslog+tcp://"+ln.Addr().String())
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 5 {
		t.Fatalf("the collector got %d messages, want the trail's events", len(got))
	}
	sites := 0
	for _, m := range got {
		if !strings.HasPrefix(m, "<") || !strings.Contains(m, " custodia - ") || !strings.Contains(m, "[custodia@32473 id=") {
			t.Fatalf("not an RFC 5424 message of the trail: %q", m)
		}
		if strings.Contains(m, " site.create ") {
			sites++
		}
	}
	if sites != 3 {
		t.Errorf("%d site.create events forwarded, want the 3 the run made", sites)
	}
}
