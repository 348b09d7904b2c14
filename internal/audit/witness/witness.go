// Package witness speaks the C2SP tlog-witness protocol
// (c2sp.org/tlog-witness) to a witness over HTTP: the audit trail's
// sequencer hands it each signed checkpoint with a consistency proof from
// the size the witness saw last, and the witness answers with its
// cosignature, after checking the proof against what it saw before. It is
// the HTTP adapter behind audit.Witness, as keys/vault is behind
// keys.Provider: only the command line picks it.
package witness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// Client is one C2SP tlog-witness.
type Client struct {
	// URL is the witness's submission prefix; requests go to
	// URL + "/add-checkpoint".
	URL string
	// Key checks the witness's cosignatures; its name names the witness.
	Key  note.Verifier
	HTTP *http.Client
}

// maxAnswer bounds what is read of a witness's answer.
const maxAnswer = 64 << 10

// Parse reads a witness named as URL@vkey, as the --audit-witness flag
// takes it: the witness's http(s) URL and its verifier key.
func Parse(spec string) (*Client, error) {
	i := strings.LastIndex(spec, "@")
	if i < 0 {
		return nil, errs.E(errs.Invalid, "witness %q: want URL@KEY, the witness's URL and its verifier key", spec)
	}
	raw, vkey := spec[:i], spec[i+1:]
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errs.E(errs.Invalid, "witness %q: %q is not an http(s) URL", spec, raw)
	}
	key, err := audit.ParseWitnessKey(vkey)
	if err != nil {
		return nil, err
	}
	return &Client{URL: strings.TrimSuffix(raw, "/"), Key: key,
		HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

// Name is the witness key's name, as in its cosignature lines.
func (c *Client) Name() string { return c.Key.Name() }

// AddCheckpoint posts the checkpoint and checks the cosignature answered.
func (c *Client) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, cp []byte) ([]byte, error) {
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", oldSize)
	for _, h := range proof {
		fmt.Fprintf(&body, "%s\n", h)
	}
	body.WriteString("\n")
	body.Write(cp)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/add-checkpoint", &body)
	if err != nil {
		return nil, errs.E(errs.Invalid, "witness %s: bad URL", c.Name())
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, errs.E(errs.Unavailable, "witness %s does not answer", c.Name())
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, errs.E(errs.Unavailable, "witness %s: answer cut short", c.Name())
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := audit.CheckCosignature(cp, answer, c.Key); err != nil {
			return nil, errs.E(errs.Unavailable, "witness %s answered a cosignature that does not verify with its key", c.Name())
		}
		return answer, nil
	case http.StatusConflict:
		known, err := strconv.ParseInt(strings.TrimSpace(string(answer)), 10, 64)
		if err != nil || known < 0 {
			return nil, errs.E(errs.Unavailable, "witness %s answered a conflict without its size", c.Name())
		}
		return nil, &audit.WitnessConflict{Known: known}
	case http.StatusUnprocessableEntity:
		return nil, audit.ErrWitnessInconsistent
	case http.StatusForbidden:
		return nil, errs.E(errs.Unavailable, "witness %s does not know this log or its key (add both to the witness)", c.Name())
	default:
		return nil, errs.E(errs.Unavailable, "witness %s answered %s", c.Name(), resp.Status)
	}
}
