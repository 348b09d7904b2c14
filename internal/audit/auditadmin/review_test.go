package auditadmin

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
)

// parseSD reads the first RFC 5424 structured-data element of s: its id,
// its parameters (unescaping \" \\ \]) and what follows it.
func parseSD(t *testing.T, s string) (id string, params map[string]string, rest string) {
	t.Helper()
	if !strings.HasPrefix(s, "[") {
		t.Fatalf("no structured data at %.40q", s)
	}
	s = s[1:]
	sp := strings.IndexByte(s, ' ')
	id, s = s[:sp], s[sp:]
	params = map[string]string{}
	for {
		switch {
		case strings.HasPrefix(s, "]"):
			return id, params, s[1:]
		case strings.HasPrefix(s, " "):
			eq := strings.Index(s, `="`)
			if eq < 0 {
				t.Fatalf("a parameter without a value at %.40q", s)
			}
			name := s[1:eq]
			s = s[eq+2:]
			var v strings.Builder
			for {
				if s == "" {
					t.Fatal("a parameter value runs off the line")
				}
				c := s[0]
				if c == '"' {
					s = s[1:]
					break
				}
				if c == '\\' && len(s) > 1 && strings.IndexByte(`"\]`, s[1]) >= 0 {
					v.WriteByte(s[1])
					s = s[2:]
					continue
				}
				if c == ']' {
					t.Fatalf("an unescaped ] inside the value of %s", name)
				}
				v.WriteByte(c)
				s = s[1:]
			}
			params[name] = v.String()
		default:
			t.Fatalf("structured data broken at %.40q", s)
		}
	}
}

// TestAUD04_ExportedLinesCannotBeForgedByTheirValues proves, with
// TestAUD03_EveryLogIsJSONSoValuesCannotForgeLines, ASVS V16.4.1 (log
// injection prevented) for the trail's exports: an event whose values
// hold what would start a forged entry (a newline and a whole fake line,
// a carriage return, terminal escapes, the Unicode line separator, a
// quote, a backslash, a bracket closing the structured data) is exported,
// as JSON lines and as RFC 5424 syslog, as exactly one line with no raw
// C0 control character or Unicode line separator; the JSON gives back every value as it was, and the
// syslog line's structured data, escaped (sdEscape), parses to the
// event's own values, its timestamp in UTC.
func TestAUD04_ExportedLinesCannotBeForgedByTheirValues(t *testing.T) {
	forged := "\n<110>1 2026-01-01T00:00:00.000000Z host custodia - auth.login [custodia@32473 outcome=\"success\"] {\"action\":\"auth.login\"}\n"
	ev := audit.Event{
		ID:            "aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Time:          time.Date(2026, 5, 4, 3, 2, 1, 123456000, time.FixedZone("UTC+02:00", 7200)),
		OrgID:         `org"] [custodia@32473 outcome="success`,
		ActorAccount:  `actor\"]`,
		StudyID:       `study]`,
		ParticipantID: `part\`,
		ActorRole:     "monitor",
		RemoteAddr:    "192.0.2.1\r\n192.0.2.2",
		UserAgent:     "Mozilla/5.0" + forged + "\r\x1b[1A\x1b[2K\u2028\u2029\x00\x7f\u0085end",
		Action:        "participant.read",
		Outcome:       audit.Failure,
		ObjectType:    "form",
		ObjectID:      "x\ny",
		Details:       map[string]string{"reason": "monitoring" + forged, "name": "Zoë \"Z\" O'Neil\\"},
	}
	// What ends or rewrites a line: a C0 control (line feed, carriage
	// return, escape, …) or a Unicode line or paragraph separator.
	control := regexp.MustCompile("[\x00-\x1f\u2028\u2029]")
	for _, format := range []string{"jsonl", "syslog"} {
		line, err := ExportLine(ev, format, "custodia.example")
		if err != nil {
			t.Fatal(err)
		}
		s := string(line)
		if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
			t.Fatalf("%s: %d lines, want one: %q", format, strings.Count(s, "\n"), s)
		}
		s = strings.TrimSuffix(s, "\n")
		if m := control.FindString(s); m != "" {
			t.Errorf("%s: a raw control character %q in the line", format, m)
		}
		body := s
		if format == "syslog" {
			head := regexp.MustCompile(`^<(\d+)>1 (\S+) custodia\.example custodia - participant\.read `).FindStringSubmatch(s)
			if head == nil {
				t.Fatalf("syslog: the header is not RFC 5424's: %.100q", s)
			}
			if head[1] != "108" { // facility 13 (log audit) × 8 + severity 4 (warning: a failure)
				t.Errorf("syslog: PRI %s, want 108", head[1])
			}
			if when, err := time.Parse(time.RFC3339Nano, head[2]); err != nil || !strings.HasSuffix(head[2], "Z") || !when.Equal(ev.Time) {
				t.Errorf("syslog: timestamp %q, want %s in UTC (ASVS V16.2.2)", head[2], ev.Time.UTC())
			}
			id, params, rest := parseSD(t, s[len(head[0]):])
			want := map[string]string{"id": ev.ID, "outcome": string(ev.Outcome), "org": ev.OrgID, "actor": ev.ActorAccount,
				"study": ev.StudyID, "participant": ev.ParticipantID, "security": "false"}
			if id != "custodia@32473" || !reflect.DeepEqual(params, want) {
				t.Errorf("syslog: structured data %s %q, want %q: a value escaped its parameter", id, params, want)
			}
			if !strings.HasPrefix(rest, " {") {
				t.Fatalf("syslog: after the structured data %.40q, want the event's JSON", rest)
			}
			body = rest[1:]
		}
		var back audit.Event
		if err := json.Unmarshal([]byte(body), &back); err != nil {
			t.Fatalf("%s: the event's JSON does not parse: %v\n%s", format, err, body)
		}
		ev.Time = ev.Time.UTC()
		back.Time = back.Time.UTC()
		if !reflect.DeepEqual(back, ev) {
			t.Errorf("%s: the exported event differs from the event:\n got %+v\nwant %+v", format, back, ev)
		}
	}
}
