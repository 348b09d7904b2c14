package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// On PostgreSQL every statement is a round trip to the server, and on a
// loaded machine the round trips, more than the work they carry, bound how
// many requests a node answers. The request path keeps them few: a read of
// a participant and an enrolment, each alone (a batch of its own, so its
// BEGIN and COMMIT are its own too), through the whole handler, send at
// most these many statements to the clinical and the identity databases
// together, signed in with a session (its cookie) or with a personal access
// token (its bearer header). The figures are what the path sends today; a
// change that adds a round trip to every request fails here and says how
// many it added.
func TestRoundTripsOfARequestOnPostgreSQL(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	t.Parallel()
	const maxRead, maxEnrol = 8, 12
	cs := startCapture(t, sqldb.Postgres, map[string]any{"key": "one", "title": "One", "fields": []map[string]any{
		{"name": "f", "label": "F", "type": "text"}}})
	inv := cs.signIn(authz.SiteInvestigator)
	people := cs.enrol(t, 1)
	participants := cs.url + cs.base + "/sites/" + cs.site + "/participants"
	trips := func() int64 { return cs.inst.Clinical.RoundTrips() + cs.inst.Identity.RoundTrips() }
	// The fewest of a few tries (fewest): a sweep running meanwhile only
	// adds.
	// The same requests with a write-scoped access token of the same person.
	resp, err := inv.Post(cs.url+"/api/v1/tokens", "application/json", strings.NewReader(`{"name":"trips","scopes":["write"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || tok.Token == "" {
		t.Fatalf("access token: %d", resp.StatusCode)
	}
	for _, bearer := range []string{"", tok.Token} {
		by := "a session"
		withToken := func(req *http.Request) *http.Request { return req }
		if bearer != "" {
			by = "an access token"
			withToken = func(req *http.Request) *http.Request {
				req.Header.Set("Authorization", "Bearer "+bearer)
				return req
			}
		}
		client := inv
		if bearer != "" {
			client = &http.Client{Transport: inv.Transport} // no cookie
		}
		fewest := func(send func(i int) *http.Request, want int) int64 {
			least := int64(-1)
			for i := range 4 {
				req := withToken(send(i))
				before := trips()
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				n := trips() - before
				if resp.StatusCode != want {
					t.Fatalf("%s %s with %s: %d, want %d", req.Method, req.URL.Path, by, resp.StatusCode, want)
				}
				if least < 0 || n < least {
					least = n
				}
			}
			return least
		}
		read := fewest(func(int) *http.Request {
			req, _ := http.NewRequest("GET", participants+"/"+people[0], nil)
			return req
		}, http.StatusOK)
		enrol := fewest(func(i int) *http.Request {
			body, _ := json.Marshal(map[string]string{"name": "Ada Lovelace", "birth_date": "1952-03-11",
				"national_id": fmt.Sprintf("RT%d-%d", len(bearer), i)})
			req, _ := http.NewRequest("POST", participants, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", cs.url)
			return req
		}, http.StatusCreated)
		t.Logf("round trips with %s: %d for a read, %d for an enrolment", by, read, enrol)
		if read > maxRead {
			t.Errorf("a read of a participant with %s sent %d statements to PostgreSQL, %d more than the path's %d", by, read, read-maxRead, maxRead)
		}
		if enrol > maxEnrol {
			t.Errorf("an enrolment with %s sent %d statements to PostgreSQL, %d more than the path's %d", by, enrol, enrol-maxEnrol, maxEnrol)
		}
	}
}
