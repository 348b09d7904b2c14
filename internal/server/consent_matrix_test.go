package server

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// The consent routes (issue 16) in the route×role matrix. Every study of
// both organizations has an English document, version 1 published, with
// one question (answer 0), and asks for countersignatures; every cell has
// a participant of its own at its target site, and documents of its own in
// two languages (de-<cell>, fr-<cell>) with a draft to save and to
// publish (seedConsent). The sessions are fresh, so signing (step-up)
// goes through.
//
//   - Documents and settings: written by organization admins and the
//     study's admins (consent.design), read also by those who read
//     consents at a site of the study (consent.read); the pending list by
//     the readers only.
//   - A participant's consent: read by those who read it; signed in person
//     and withdrawn by organization admins and the site's investigators,
//     countersigned by them (in this order: sign, countersign, read,
//     download, withdraw); those who read but may not sign, countersign or
//     download the PDF (it names the participant) are told so (403).
func init() {
	reads := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	designs := func(status string) string {
		return `
		org-admin           ` + status + ` ` + status + ` ` + status + ` 404
		org-manager         404 404 404 404
		study-admin         ` + status + ` ` + status + ` 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	}
	participantReads := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	signs := func(status string) string {
		return `
		org-admin           ` + status + ` ` + status + ` ` + status + ` 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   ` + status + ` 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	}
	const (
		study = "/api/v1/orgs/{org}/studies/{study}"
		part  = study + "/sites/{site}/participants/{participant}"
	)
	matrix = append(matrix,
		matrixRow{Route: "GET " + study + "/consent/documents", Grid: reads},
		matrixRow{Route: "POST " + study + "/consent/documents", Grid: designs("201")},
		matrixRow{Route: "GET " + study + "/consent/documents/{language}", Grid: reads},
		matrixRow{Route: "PUT " + study + "/consent/documents/{language}/draft", Grid: designs("200")},
		matrixRow{Route: "POST " + study + "/consent/documents/{language}/publish", Grid: designs("200")},
		matrixRow{Route: "GET " + study + "/consent/settings", Grid: reads},
		matrixRow{Route: "PUT " + study + "/consent/settings", Grid: designs("200")},
		matrixRow{Route: "GET " + study + "/consent/pending", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "GET " + part + "/consent/document", Grid: participantReads},
		matrixRow{Route: "POST " + part + "/consent/sign", Grid: signs("201")},
		matrixRow{Route: "POST " + part + "/consents/{consent}/countersign", Grid: signs("200")},
		matrixRow{Route: "GET " + part + "/consent", Grid: participantReads},
		matrixRow{Route: "GET " + part + "/consents", Grid: participantReads},
		matrixRow{Route: "GET " + part + "/consents/{consent}/pdf", Grid: signs("200")},
		matrixRow{Route: "POST " + part + "/consent/withdraw", Grid: signs("201")},
	)
	studyPath := func(tg target) string { return "/api/v1/orgs/" + tg.org + "/studies/" + tg.study }
	partPath := func(tg target, tag string) string {
		return studyPath(tg) + "/sites/" + tg.site + "/participants/" + consentTargetOf(tag)
	}
	content := map[string]any{"title": "Matrix consent", "sections": []map[string]string{{"heading": "About", "text": "Text"}}}
	targetedProbes["GET "+study+"/consent/documents"] = func(tg target, _ string) probe {
		return probe{path: studyPath(tg) + "/consent/documents"}
	}
	targetedProbes["POST "+study+"/consent/documents"] = func(tg target, tag string) probe {
		return jsonProbe(studyPath(tg)+"/consent/documents", map[string]any{"language": consentLanguage("it", tag), "content": content})
	}
	targetedProbes["GET "+study+"/consent/documents/{language}"] = func(tg target, _ string) probe {
		return probe{path: studyPath(tg) + "/consent/documents/en"}
	}
	targetedProbes["PUT "+study+"/consent/documents/{language}/draft"] = func(tg target, tag string) probe {
		lang := consentLanguage("de", tag)
		return jsonProbe(studyPath(tg)+"/consent/documents/"+lang+"/draft", map[string]any{"base_digest": consentDigests[lang], "content": content})
	}
	targetedProbes["POST "+study+"/consent/documents/{language}/publish"] = func(tg target, tag string) probe {
		lang := consentLanguage("fr", tag)
		return jsonProbe(studyPath(tg)+"/consent/documents/"+lang+"/publish", map[string]any{"digest": consentDigests[lang], "reconsent": false})
	}
	targetedProbes["GET "+study+"/consent/settings"] = func(tg target, _ string) probe {
		return probe{path: studyPath(tg) + "/consent/settings"}
	}
	// Data entry never waits for consent in the matrix (other rows save
	// entries); countersignatures stay asked for.
	targetedProbes["PUT "+study+"/consent/settings"] = func(tg target, _ string) probe {
		return jsonProbe(studyPath(tg)+"/consent/settings", map[string]bool{"entry_requires_consent": false, "countersign_required": true})
	}
	targetedProbes["GET "+study+"/consent/pending"] = func(tg target, _ string) probe {
		return probe{path: studyPath(tg) + "/consent/pending"}
	}
	targetedProbes["GET "+part+"/consent/document"] = func(tg target, tag string) probe {
		return probe{path: partPath(tg, tag) + "/consent/document?language=en"}
	}
	signature := map[string]any{"language": "en", "version": 1, "answers": []int{0}, "name": "Matrix Participant"}
	targetedProbes["POST "+part+"/consent/sign"] = func(tg target, tag string) probe {
		return jsonProbe(partPath(tg, tag)+"/consent/sign", signature)
	}
	targetedProbes["POST "+part+"/consents/{consent}/countersign"] = func(tg target, tag string) probe {
		return jsonProbe(partPath(tg, tag)+"/consents/"+consentOf(tag)+"/countersign", map[string]string{"name": "Matrix Investigator"})
	}
	targetedProbes["GET "+part+"/consent"] = func(tg target, tag string) probe {
		return probe{path: partPath(tg, tag) + "/consent"}
	}
	targetedProbes["GET "+part+"/consents"] = func(tg target, tag string) probe {
		return probe{path: partPath(tg, tag) + "/consents"}
	}
	targetedProbes["GET "+part+"/consents/{consent}/pdf"] = func(tg target, tag string) probe {
		return probe{path: partPath(tg, tag) + "/consents/" + consentOf(tag) + "/pdf"}
	}
	targetedProbes["POST "+part+"/consent/withdraw"] = func(tg target, tag string) probe {
		return jsonProbe(partPath(tg, tag)+"/consent/withdraw", map[string]string{"name": "Matrix Participant"})
	}
}

// consentTargets are the cells' participants, consentDigests the digests
// of the cells' drafts by language, and consentDB the database the
// probes find a cell's consent in once the sign row made it.
var (
	consentTargets = map[string]string{}
	consentDigests = map[string]string{}
	consentDB      *sqldb.DB
)

const noConsentTarget = "aaaaaaaaaaaaaaaaaaaaaaaaaa"

func consentTargetOf(tag string) string {
	if p, ok := consentTargets[tag]; ok {
		return p
	}
	return noConsentTarget
}

// consentLanguage is a language tag of the cell's own.
func consentLanguage(prefix, tag string) string {
	sum := sha256.Sum256([]byte(tag))
	return prefix + "-" + hex.EncodeToString(sum[:4])
}

// consentOf finds the newest consent of the cell's participant (none: a
// well-formed id of nothing).
func consentOf(tag string) string {
	id := noConsentTarget
	if consentDB != nil {
		consentDB.QueryRowContext(context.Background(), `SELECT id FROM consents WHERE participant_id = $1 AND kind = 'consent'
			ORDER BY signed_at DESC LIMIT 1`, consentTargetOf(tag)).Scan(&id)
	}
	return id
}

// seedConsent gives every study the matrix reaches its English document
// and settings, and every cell its participant and drafts (see above).
func seedConsent(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	clear(consentTargets)
	clear(consentDigests)
	consentDB = ts.inst.Clinical
	q := 0
	document := func(questions bool) (string, string) {
		c := consent.Content{Title: "Matrix consent", Sections: []consent.Section{{Heading: "About", Text: "What the study does."}}}
		if questions {
			c.Questions = []consent.Question{{Text: "Is it voluntary?", Choices: []string{"Yes", "No"}, Answer: &q}}
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		return string(b), hex.EncodeToString(sum[:])
	}
	studies := map[string]bool{}
	seedCells(t, ts, f, false, func(tx *sql.Tx, tag string, tg target) error {
		o, err := orgs.OrganizationBySlug(ctx, tx, tg.org)
		if err != nil {
			return err
		}
		acc, err := accounts.ByEmail(ctx, tx, ts.logins[authz.OrgAdmin].Email)
		if err != nil {
			return err
		}
		now := time.Now().UnixMicro()
		insert := func(language, state string, questions bool) (string, error) {
			body, digest := document(questions)
			var by, at any
			if state == "published" {
				by, at = acc.ID, now
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO consent_versions (org_id, study_id, language, version, state, title, content, digest,
				saved_by, saved_at, published_by, published_at) VALUES ($1, $2, $3, 1, $4, 'Matrix consent', $5, $6, $7, $8, $9, $10)`,
				o.ID, tg.study, language, state, body, digest, acc.ID, now, by, at)
			return digest, err
		}
		if !studies[tg.study] {
			studies[tg.study] = true
			if _, err := insert("en", "published", true); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO consent_settings (org_id, study_id, entry_requires_consent, countersign_required,
				updated_by, updated_at) VALUES ($1, $2, FALSE, TRUE, $3, $4)`, o.ID, tg.study, acc.ID, now); err != nil {
				return err
			}
		}
		for _, prefix := range []string{"de", "fr", "dw", "fw"} { // dw, fw: the pages'
			lang := consentLanguage(prefix, tag)
			if consentDigests[lang], err = insert(lang, "draft", false); err != nil {
				return err
			}
		}
		p, err := participants.Create(ctx, tx, o.ID, tg.study, tg.site)
		if err != nil {
			return err
		}
		consentTargets[tag] = p.Pseudonym
		return nil
	})
}
