package browsertest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/browsertest"
)

// The browser reaches the test server over HTTPS, accepting its
// certificate, and renders its pages.
func TestStartServesPagesToChromium(t *testing.T) {
	b := browsertest.Start(t, browsertest.Options{})
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(b.BaseURL+"/")); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(b.Ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	proto, err := chromedp.Run(b.Ctx, chromedp.Evaluate[string](`location.protocol`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "Custodia") || proto != "https:" {
		t.Errorf("title %q over %q", title, proto)
	}
}

// Chromium accepts the test server's own certificate only: another
// self-signed server on the same address is refused.
func TestOtherCertificatesAreRefused(t *testing.T) {
	b := browsertest.Start(t, browsertest.Options{})
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<title>other</title>")
	}))
	defer other.Close()
	err := chromedp.Do(b.Ctx, chromedp.Navigate(other.URL+"/"))
	if err == nil || !strings.Contains(err.Error(), "CERT") {
		title, _ := chromedp.Run(b.Ctx, chromedp.Title())
		t.Fatalf("navigation to a server with another certificate: %v (title %q), want a certificate error", err, title)
	}
}
