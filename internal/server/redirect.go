package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// redirectListener lets the one HTTPS port answer a plain-HTTP request with
// a redirect to HTTPS instead of a garbled TLS error (CRY-01): the first
// byte of a connection tells a TLS handshake (0x16) from anything else.
type redirectListener struct {
	net.Listener
	fallbackHost string // used when the request's Host is unusable
}

func (l redirectListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, br: bufio.NewReaderSize(c, 4096), fallbackHost: l.fallbackHost}, nil
}

type sniffConn struct {
	net.Conn
	br           *bufio.Reader
	once         sync.Once
	err          error
	fallbackHost string
}

var errPlainHTTP = errors.New("plain HTTP request redirected to HTTPS")

func (c *sniffConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		first, err := c.br.Peek(1)
		if err != nil {
			c.err = err
			return
		}
		if first[0] != 0x16 { // not a TLS handshake record
			c.redirect()
			c.err = errPlainHTTP
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(p)
}

// redirect reads one HTTP request head and answers 308 to the same URL
// over HTTPS. A request to the API is refused instead, with no Location
// (ASVS V4.1.2): a client that sent its password or token in clear learns
// it from the error rather than having it repeated over HTTPS unnoticed.
func (c *sniffConn) redirect() {
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(c.br, 8192)))
	if err != nil {
		io.WriteString(c.Conn, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if req.URL.Path == "/api" || strings.HasPrefix(req.URL.Path, "/api/") {
		io.WriteString(c.Conn, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
			strconv.Itoa(len(plainAPIRefusal))+"\r\n\r\n"+plainAPIRefusal)
		return
	}
	host := req.Host
	if !validHost(host) {
		host = c.fallbackHost
	}
	target := "https://" + host + req.URL.RequestURI()
	io.WriteString(c.Conn, "HTTP/1.1 308 Permanent Redirect\r\nLocation: "+target+
		"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
}

// plainAPIRefusal is the answer of an API request sent over plain HTTP.
const plainAPIRefusal = `{"error":{"code":"https_required","message":"the API answers only over HTTPS; this request was sent in clear and was not carried out: if it held a password or a token, change it"}}` + "\n"

func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}
