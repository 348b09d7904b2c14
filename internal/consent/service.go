package consent

import (
	"context"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// Service offers a study's consent documents, settings and signatures to
// requests. Its gate needs the identity database and its keyring: every
// signature is sealed under the participant's key there.
type Service struct {
	Gate *gate.Gate
	// Now is the clock of signatures (and so of their PDFs); time.Now if
	// nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// study runs fn for a request about a study's consent documents or
// settings, authorized as action on the study, which must exist.
func (s *Service) study(ctx context.Context, a gate.Actor, slug, studyID, language, event string, action authz.Action, fn func(t *gate.Tx, org orgs.Organization) error) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), event, func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if language != "" {
			if CheckLanguage(language) != nil {
				language = "invalid"
			}
			t.Detail("language", language)
		}
		r := authz.Resource{OrgID: org.ID, StudyID: studyID}
		switch {
		case action != authz.ConsentRead:
			if err := t.Authorize(action, r); err != nil {
				return err
			}
		case t.Allowed(authz.ConsentDesign, r):
			// Designers read the documents too, with their answers.
		default:
			// The study's documents and settings are every site's: a
			// role that reads consents at one site of it reads them.
			if err := t.AuthorizeList(action, r); err != nil {
				return err
			}
		}
		if _, err := orgs.StudyByID(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		return fn(t, org)
	})
}

// Documents lists a study's consent documents, one per language.
func (s *Service) Documents(ctx context.Context, a gate.Actor, slug, studyID string) ([]DocumentSummary, error) {
	var out []DocumentSummary
	err := s.study(ctx, a, slug, studyID, "", "consent.document.list", authz.ConsentRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		out, err = listDocuments(ctx, t, org.ID, studyID)
		return err
	})
	return out, err
}

// Versions reads the versions of a study's document in language, newest
// first; the correct answers only for those who design the documents.
func (s *Service) Versions(ctx context.Context, a gate.Actor, slug, studyID, language string) ([]Version, error) {
	var out []Version
	err := s.study(ctx, a, slug, studyID, language, "consent.document.read", authz.ConsentRead, func(t *gate.Tx, org orgs.Organization) error {
		if err := CheckLanguage(language); err != nil {
			return errs.E(errs.NotFound, "consent document not found")
		}
		var err error
		if out, err = versions(ctx, t, org.ID, studyID, language); err != nil {
			return err
		}
		if len(out) == 0 {
			return errs.E(errs.NotFound, "consent document not found")
		}
		if !t.Allowed(authz.ConsentDesign, authz.Resource{OrgID: org.ID, StudyID: studyID}) {
			for i := range out {
				c := out[i].Content.ForReading()
				out[i].Content = &c
			}
		}
		return nil
	})
	return out, err
}

// Create adds a study's consent document in language, c the draft of its
// version 1.
func (s *Service) Create(ctx context.Context, a gate.Actor, slug, studyID, language string, c Content) (Version, error) {
	var out Version
	err := s.study(ctx, a, slug, studyID, language, "consent.document.create", authz.ConsentDesign, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = createDocument(ctx, t, org.ID, studyID, language, t.Subject.AccountID, c); err != nil {
			return err
		}
		t.Detail("version", "1")
		t.Detail("digest", out.Digest)
		return nil
	})
	return out, err
}

// SaveDraft saves the draft of a study's document in language; base is the
// digest of the draft the designer started from, "" to begin a new draft
// after a published version.
func (s *Service) SaveDraft(ctx context.Context, a gate.Actor, slug, studyID, language, base string, c Content) (Version, error) {
	var out Version
	err := s.study(ctx, a, slug, studyID, language, "consent.document.draft", authz.ConsentDesign, func(t *gate.Tx, org orgs.Organization) error {
		if err := CheckLanguage(language); err != nil {
			return errs.E(errs.NotFound, "consent document not found")
		}
		var err error
		if out, err = saveDraft(ctx, t, org.ID, studyID, language, t.Subject.AccountID, base, c); err != nil {
			return err
		}
		t.Detail("version", strconv.Itoa(out.Version))
		t.Detail("digest", out.Digest)
		return nil
	})
	return out, err
}

// Publish publishes the draft of a study's document in language whose
// digest is digest; reconsent asks everyone who consented to an older
// version to consent again (they are pending until then).
func (s *Service) Publish(ctx context.Context, a gate.Actor, slug, studyID, language, digest string, reconsent bool) (Version, error) {
	var out Version
	err := s.study(ctx, a, slug, studyID, language, "consent.document.publish", authz.ConsentDesign, func(t *gate.Tx, org orgs.Organization) error {
		if err := CheckLanguage(language); err != nil {
			return errs.E(errs.NotFound, "consent document not found")
		}
		var err error
		if out, err = publish(ctx, t, org.ID, studyID, language, t.Subject.AccountID, digest, reconsent); err != nil {
			return err
		}
		t.Detail("version", strconv.Itoa(out.Version))
		t.Detail("digest", out.Digest)
		t.Detail("reconsent", strconv.FormatBool(reconsent))
		return nil
	})
	return out, err
}

// Settings reads a study's consent settings.
func (s *Service) Settings(ctx context.Context, a gate.Actor, slug, studyID string) (Settings, error) {
	var out Settings
	err := s.study(ctx, a, slug, studyID, "", "consent.settings.read", authz.ConsentRead, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		out, err = settingsOf(ctx, t, org.ID, studyID)
		return err
	})
	return out, err
}

// SetSettings sets a study's consent settings. A requirement set later
// applies to every data entry from then on, and to consents signed from
// then on (a countersignature).
func (s *Service) SetSettings(ctx context.Context, a gate.Actor, slug, studyID string, in Settings) (Settings, error) {
	var out Settings
	err := s.study(ctx, a, slug, studyID, "", "consent.settings.set", authz.ConsentDesign, func(t *gate.Tx, org orgs.Organization) error {
		var err error
		if out, err = setSettings(ctx, t, org.ID, studyID, t.Subject.AccountID, in); err != nil {
			return err
		}
		t.Detail("entry_requires_consent", strconv.FormatBool(out.EntryRequiresConsent))
		t.Detail("countersign_required", strconv.FormatBool(out.CountersignRequired))
		return nil
	})
	return out, err
}
