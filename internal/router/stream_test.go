package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An export streamed through Stream is not cut off by the server's
// WriteTimeout after its 200 was sent (ASVS V15.2.2); written plainly, the
// same body is.
func TestStreamOutlivesTheServersWriteTimeout(t *testing.T) {
	const chunks = 8
	body := func(stream bool) (string, error) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var out io.Writer = w
			if stream {
				out = Stream(w)
			}
			w.WriteHeader(http.StatusOK)
			for range chunks {
				if _, err := io.WriteString(out, strings.Repeat("x", 1024)+"\n"); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
				time.Sleep(60 * time.Millisecond)
			}
		}))
		srv.Config.WriteTimeout = 200 * time.Millisecond
		srv.Start()
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	got, err := body(true)
	if err != nil || strings.Count(got, "\n") != chunks {
		t.Fatalf("streamed: %d of %d lines, %v", strings.Count(got, "\n"), chunks, err)
	}
	got, err = body(false)
	if err == nil && strings.Count(got, "\n") == chunks {
		t.Fatal("written plainly, the body outlived the write timeout too: the test shows nothing")
	}
}
