package router

import (
	"io"
	"net/http"
	"time"
)

// StreamIdle is how long one write of a streamed body may take.
const StreamIdle = time.Minute

// Stream is the writer of a long response body, an export: the server's
// WriteTimeout bounds a whole response, and would cut an export off after
// its 200 was sent; through Stream each write has StreamIdle instead, so a
// large export runs to its end while a client that stops reading is still
// let go.
func Stream(w http.ResponseWriter) io.Writer {
	return &stream{w: w, rc: http.NewResponseController(w)}
}

type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *stream) Write(p []byte) (int, error) {
	// Not every ResponseWriter can move its deadline (a test recorder);
	// the server's own can.
	_ = s.rc.SetWriteDeadline(time.Now().Add(StreamIdle))
	return s.w.Write(p)
}
