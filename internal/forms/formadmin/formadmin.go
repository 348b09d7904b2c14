// Package formadmin offers a study's forms (package forms) to requests:
// listing and reading them, creating them, saving drafts, publishing and
// retiring versions (WEB-05). Every method runs through the gate:
// authorized before anything is read, in one transaction, audited. A form
// of a study the requester may not reach is reported as not found (ACL-08).
package formadmin

import (
	"context"
	"strconv"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// Service offers the forms of studies to requests.
type Service struct {
	Gate *gate.Gate
}

// Form is a form with its versions, newest first.
type Form struct {
	Summary  forms.Summary
	Versions []forms.Version
}

// work runs fn for a request about the forms of a study, authorized as
// action on the study, which must exist.
func (s *Service) work(ctx context.Context, a gate.Actor, slug, studyID, key, event string, action authz.Action, fn func(t *gate.Tx, org orgs.Organization) error) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), event, func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if key != "" {
			t.Detail("form", forms.KeyForTrail(key))
		}
		if err := t.Authorize(action, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		if _, err := orgs.StudyByID(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		return fn(t, org)
	})
}

// List lists the forms of a study.
func (s *Service) List(ctx context.Context, a gate.Actor, slug, studyID string) ([]forms.Summary, error) {
	var out []forms.Summary
	err := s.work(ctx, a, slug, studyID, "", "form.list", authz.FormRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		out, err = forms.List(ctx, t, org.ID, studyID)
		return err
	})
	return out, err
}

// Form reads a form and the list of its versions.
func (s *Service) Form(ctx context.Context, a gate.Actor, slug, studyID, key string) (Form, error) {
	var out Form
	err := s.work(ctx, a, slug, studyID, key, "form.read", authz.FormRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out.Versions, err = forms.Versions(ctx, t, org.ID, studyID, key); err != nil {
			return err
		}
		if len(out.Versions) == 0 {
			return errs.E(errs.NotFound, "form not found")
		}
		out.Summary = forms.Summary{ID: out.Versions[0].FormID, Key: key, Title: out.Versions[0].Title}
		for _, v := range out.Versions {
			switch {
			case v.State == forms.Draft:
				out.Summary.Draft = v.Version
			case v.State == forms.Published && out.Summary.Published == 0:
				out.Summary.Published = v.Version
			}
		}
		return nil
	})
	return out, err
}

// Version reads one version of a form with its definition; version 0 is
// the newest published one (the draft if none is).
func (s *Service) Version(ctx context.Context, a gate.Actor, slug, studyID, key string, version int) (forms.Version, error) {
	var out forms.Version
	err := s.work(ctx, a, slug, studyID, key, "form.read", authz.FormRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = forms.VersionOf(ctx, t, org.ID, studyID, key, version); err != nil {
			return err
		}
		t.Detail("version", strconv.Itoa(out.Version))
		return nil
	})
	return out, err
}

// Create adds a form to a study, its definition the draft of version 1.
func (s *Service) Create(ctx context.Context, a gate.Actor, slug, studyID string, f *forms.Form) (forms.Version, error) {
	var out forms.Version
	err := s.work(ctx, a, slug, studyID, f.Key, "form.create", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = forms.Create(ctx, t, org.ID, studyID, t.Subject.AccountID, f); err != nil {
			return err
		}
		t.Detail("version", "1")
		t.Detail("digest", out.Digest)
		return nil
	})
	return out, err
}

// SaveDraft saves the draft of a form; base is the digest of the draft the
// designer started from, "" for a new draft.
func (s *Service) SaveDraft(ctx context.Context, a gate.Actor, slug, studyID, key, base string, f *forms.Form) (forms.Version, error) {
	var out forms.Version
	err := s.work(ctx, a, slug, studyID, key, "form.draft", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = forms.SaveDraft(ctx, t, org.ID, studyID, key, t.Subject.AccountID, base, f); err != nil {
			return err
		}
		t.Detail("version", strconv.Itoa(out.Version))
		t.Detail("digest", out.Digest)
		return nil
	})
	return out, err
}

// Publish publishes the draft of a form whose digest is digest.
func (s *Service) Publish(ctx context.Context, a gate.Actor, slug, studyID, key, digest string) (forms.Version, error) {
	var out forms.Version
	err := s.work(ctx, a, slug, studyID, key, "form.publish", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = forms.Publish(ctx, t, org.ID, studyID, key, t.Subject.AccountID, digest); err != nil {
			return err
		}
		t.Detail("version", strconv.Itoa(out.Version))
		t.Detail("digest", out.Digest)
		return nil
	})
	return out, err
}

// Retire retires a published version of a form.
func (s *Service) Retire(ctx context.Context, a gate.Actor, slug, studyID, key string, version int) error {
	return s.work(ctx, a, slug, studyID, key, "form.retire", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		t.Detail("version", strconv.Itoa(version))
		return forms.Retire(ctx, t, org.ID, studyID, key, version)
	})
}

// Schedule reads a study's schedule of visits.
func (s *Service) Schedule(ctx context.Context, a gate.Actor, slug, studyID string) ([]forms.Visit, error) {
	var out []forms.Visit
	err := s.work(ctx, a, slug, studyID, "", "schedule.read", authz.FormRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		out, err = forms.Schedule(ctx, t, org.ID, studyID)
		return err
	})
	return out, err
}

// SetSchedule replaces a study's schedule of visits, and answers it as
// stored.
func (s *Service) SetSchedule(ctx context.Context, a gate.Actor, slug, studyID string, visits []forms.Visit) ([]forms.Visit, error) {
	var out []forms.Visit
	err := s.work(ctx, a, slug, studyID, "", "schedule.set", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		if err := forms.SetSchedule(ctx, t, org.ID, studyID, visits); err != nil {
			return err
		}
		t.Detail("visits", strconv.Itoa(len(visits)))
		var err error
		out, err = forms.Schedule(ctx, t, org.ID, studyID)
		return err
	})
	return out, err
}

// Import saves imported forms in a study (a REDCap dictionary read by
// forms.ReadREDCap, an ODM file's metadata read by forms.ReadODM), all or
// none: a form new to the study is created, one it has gets the next
// draft; a form with a draft not yet published is a conflict. visits, if
// any, become the study's schedule when it has none (scheduled reports
// it). format and digest (the SHA-256 of the file) are for the audit
// event.
func (s *Service) Import(ctx context.Context, a gate.Actor, slug, studyID, format, digest string, fs []*forms.Form, visits []forms.Visit) (out []forms.Version, scheduled bool, err error) {
	err = s.work(ctx, a, slug, studyID, "", "form.import", authz.FormDesign, func(t *gate.Tx, org orgs.Organization) error {
		existing, err := forms.List(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		drafts := map[string]int{}
		known := map[string]bool{}
		for _, f := range existing {
			known[f.Key], drafts[f.Key] = true, f.Draft
		}
		fields := 0
		for _, f := range fs {
			fields += len(f.Fields)
			var v forms.Version
			switch {
			case !known[f.Key]:
				v, err = forms.Create(ctx, t, org.ID, studyID, t.Subject.AccountID, f)
			case drafts[f.Key] != 0:
				return errs.E(errs.Conflict, "form %s has a draft (version %d) not yet published; publish it before importing over it", f.Key, drafts[f.Key])
			default:
				v, err = forms.SaveDraft(ctx, t, org.ID, studyID, f.Key, t.Subject.AccountID, "", f)
			}
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		if len(visits) > 0 {
			current, err := forms.Schedule(ctx, t, org.ID, studyID)
			if err != nil {
				return err
			}
			if len(current) == 0 {
				if err := forms.SetSchedule(ctx, t, org.ID, studyID, visits); err != nil {
					return err
				}
				scheduled = true
				t.Detail("visits", strconv.Itoa(len(visits)))
			}
		}
		t.Detail("format", format)
		t.Detail("sha256", digest)
		t.Detail("forms", strconv.Itoa(len(fs)))
		t.Detail("fields", strconv.Itoa(fields))
		return nil
	})
	return out, scheduled, err
}

// ExportForms reads the forms of a study, each as it stands (its newest
// published version, else its draft), in the study's order, with the
// study and its schedule, for a dictionary or an ODM file.
func (s *Service) ExportForms(ctx context.Context, a gate.Actor, slug, studyID, format string) (forms.ODMStudy, error) {
	var study forms.ODMStudy
	var out []*forms.Form
	err := s.work(ctx, a, slug, studyID, "", "form.export", authz.FormRead, func(t *gate.Tx, org orgs.Organization) error {
		list, err := forms.List(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		for _, f := range list {
			v, err := forms.VersionOf(ctx, t, org.ID, studyID, f.Key, 0)
			if err != nil {
				return err
			}
			out = append(out, v.Form)
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		visits, err := forms.Schedule(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		study = forms.ODMStudy{OID: "S." + studyID, Name: st.Name, Visits: visits, Forms: out}
		t.Detail("format", format)
		t.Detail("forms", strconv.Itoa(len(out)))
		return nil
	})
	return study, err
}
