package web

import (
	"net/http"
	"net/url"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/keys/keyadmin"
)

func keysPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/keys" }

// keysNotices are the notices of the keys page, by the "done" of the
// address; the others (a confirmation) are the administration pages'.
var keysNotices = map[string]string{
	"key-requested": "The request is recorded. A second administrator of the organization must approve it within 24 hours.",
	"key-approved":  "The request is approved. Give its ID to the operator, who carries it out on the server.",
}

func keysNotice(r *http.Request) string {
	if n, ok := keysNotices[r.URL.Query().Get("done")]; ok {
		return n
	}
	return adminNotice(r)
}

// keyChoice is one operation the request form offers, as the value of its
// "operation" field. A provider change takes its provider from the form's
// "provider" field.
type keyChoice struct {
	Value, Label string
	Kind         keyadmin.Kind
	Params       keyadmin.Params
}

var keyChoices = []keyChoice{
	{Value: "rotate-data-keys", Label: "Rotate the organization's data keys", Kind: keyadmin.Rotate, Params: keyadmin.Params{DataKeys: true}},
	{Value: "rotate-kek", Label: "Rotate the key-encryption key", Kind: keyadmin.Rotate, Params: keyadmin.Params{KEK: true}},
	{Value: "rotate-both", Label: "Rotate the key-encryption key and the data keys", Kind: keyadmin.Rotate, Params: keyadmin.Params{KEK: true, DataKeys: true}},
	{Value: "export-recovery", Label: "Export recovery material", Kind: keyadmin.ExportRecovery},
	{Value: "provider-change", Label: "Change the key provider to", Kind: keyadmin.ProviderChange},
}

// keyOperationOf reads the request form: which operation, and for a
// provider change which provider (checked by the service).
func keyOperationOf(form url.Values) (keyadmin.Kind, keyadmin.Params, error) {
	for _, c := range keyChoices {
		if c.Value != form.Get("operation") {
			continue
		}
		p := c.Params
		if c.Kind == keyadmin.ProviderChange {
			p.Provider = form.Get("provider")
		}
		return c.Kind, p, nil
	}
	return "", keyadmin.Params{}, errs.E(errs.Invalid, "choose a key operation: a rotation of data keys, of the "+
		"key-encryption key or of both, an export of recovery material, or a change of provider")
}

// keyWhat says in words what a request asks for.
func keyWhat(r keyadmin.Request) string {
	switch {
	case r.Kind == keyadmin.ExportRecovery:
		return "Export recovery material"
	case r.Kind == keyadmin.ProviderChange:
		return "Change the key provider to " + r.Params.Provider
	case r.Params.KEK && r.Params.DataKeys:
		return "Rotate the key-encryption key and the data keys"
	case r.Params.KEK:
		return "Rotate the key-encryption key"
	}
	return "Rotate the organization's data keys"
}

// keyStatusWords are a request's status (keyadmin.Request.Status) in words.
var keyStatusWords = map[string]string{
	"pending": "pending", "approved": "approved", "used": "carried out", "expired": "expired",
}

// keyRow is one request as the keys page shows it.
type keyRow struct {
	ID          string
	What        string
	RequestedBy string
	RequestedAt time.Time
	ExpiresAt   time.Time
	Status      string // pending, approved, used, expired
	StatusWords string
	ApprovedBy  string
	// Approvable: pending and not the viewer's own request (CRY-08).
	Approvable bool
	// Command is what the operator runs to carry an approved request out.
	Command string
}

// nameOf names account id as the page shows it, from people (the accounts
// the listing names): its name and address, else its address, and the id
// of an account that no longer exists.
func nameOf(people map[string]accounts.Account, id string) string {
	acc, ok := people[id]
	switch {
	case id == "":
		return ""
	case !ok:
		return id
	case acc.DisplayName != "":
		return acc.DisplayName + " (" + acc.Email + ")"
	}
	return acc.Email
}

// keysPage renders the organization's key requests of the last 30 days and
// the request form, with status and data's extra fields (an error, the
// form as posted).
func keysPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	l, err := d.Keys.Listing(r.Context(), actor(d, r), r.PathValue("org"))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	org, self, now := l.Org, sessionOf(r).AccountID, time.Now()
	rows := make([]keyRow, 0, len(l.Requests))
	for _, kr := range l.Requests {
		st := kr.Status(now)
		row := keyRow{ID: kr.ID, What: keyWhat(kr), RequestedBy: nameOf(l.People, kr.RequestedBy),
			RequestedAt: kr.RequestedAt, ExpiresAt: kr.ExpiresAt, Status: st, StatusWords: keyStatusWords[st],
			ApprovedBy: nameOf(l.People, kr.ApprovedBy), Approvable: st == "pending" && kr.RequestedBy != self}
		if st == "approved" {
			row.Command = "custodia keys " + string(kr.Kind) + " --request " + kr.ID
		}
		rows = append(rows, row)
	}
	data["Title"] = "Keys"
	data["Org"], data["Requests"], data["Choices"], data["Providers"] = org, rows, keyChoices, keys.ProviderNames
	data["Next"] = keysPath(org.Slug)
	if data["Notice"] == nil {
		data["Notice"] = keysNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{"operation": {"rotate-data-keys"}}
	}
	render(w, r, d.Log, status, "keys", data)
}

func handleKeys(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keysPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleRequestKeyOperation files a key operation for a second
// administrator to approve (keyadmin.Service.Request, the API's call): the
// parameters, who may ask for what and the step-up are the service's.
func handleRequestKeyOperation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), keysPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug := r.PathValue("org")
		kind, p, err := keyOperationOf(r.PostForm)
		if err == nil {
			_, err = d.Keys.Request(r.Context(), actor(d, r), slug, kind, p)
		}
		if err != nil {
			adminError(w, r, d, err, keysPage, data)
			return
		}
		http.Redirect(w, r, keysPath(slug)+"?done=key-requested", http.StatusSeeOther)
	})
}

// handleApproveKeyOperation approves a request (keyadmin.Service.Approve):
// never the requester's own (CRY-08).
func handleApproveKeyOperation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), keysPage, map[string]any{})
			return
		}
		slug := r.PathValue("org")
		if _, err := d.Keys.Approve(r.Context(), actor(d, r), slug, r.PathValue("request")); err != nil {
			adminError(w, r, d, err, keysPage, map[string]any{})
			return
		}
		http.Redirect(w, r, keysPath(slug)+"?done=key-approved", http.StatusSeeOther)
	})
}
