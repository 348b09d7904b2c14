package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
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
// together. The figures are what the path sends today; a change that adds
// a round trip to every request fails here and says how many it added.
func TestRoundTripsOfARequestOnPostgreSQL(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	t.Parallel()
	const maxRead, maxEnrol = 9, 16
	cs := startCapture(t, sqldb.Postgres, map[string]any{"key": "one", "title": "One", "fields": []map[string]any{
		{"name": "f", "label": "F", "type": "text"}}})
	inv := cs.signIn(authz.SiteInvestigator)
	people := cs.enrol(t, 1)
	participants := cs.url + cs.base + "/sites/" + cs.site + "/participants"
	trips := func() int64 { return cs.inst.Clinical.RoundTrips() + cs.inst.Identity.RoundTrips() }
	// The fewest of a few tries: a sweep running meanwhile only adds.
	fewest := func(send func(i int) *http.Request, want int) int64 {
		least := int64(-1)
		for i := range 4 {
			req := send(i)
			before := trips()
			resp, err := inv.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			n := trips() - before
			if resp.StatusCode != want {
				t.Fatalf("%s %s: %d, want %d", req.Method, req.URL.Path, resp.StatusCode, want)
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
			"national_id": fmt.Sprintf("RT%d", i)})
		req, _ := http.NewRequest("POST", participants, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", cs.url)
		return req
	}, http.StatusCreated)
	t.Logf("round trips: %d for a read, %d for an enrolment", read, enrol)
	if read > maxRead {
		t.Errorf("a read of a participant sent %d statements to PostgreSQL, %d more than the path's %d", read, read-maxRead, maxRead)
	}
	if enrol > maxEnrol {
		t.Errorf("an enrolment sent %d statements to PostgreSQL, %d more than the path's %d", enrol, enrol-maxEnrol, maxEnrol)
	}
}
