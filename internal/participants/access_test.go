package participants_test

import (
	"context"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestACL08_ParticipantsOfOtherSitesStudiesAndOrganizationsAreNotFound(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		theirs := f.enrol(t, f.otherAdmin, f.far, ada())
		inv := f.confirmed(f.investigator)
		admin := f.confirmed(f.admin)

		// The reference answer: a pseudonym that does not exist.
		_, missing := f.svc.Get(ctx, inv, f.org.Slug, f.study.ID, f.north.ID, ids.New())
		if !errs.Is(missing, errs.NotFound) {
			t.Fatalf("missing participant: %v", missing)
		}
		cases := []struct {
			name                    string
			a                       gate.Actor
			slug, study, site, pseu string
		}{
			{"under another site", admin, f.org.Slug, f.study.ID, f.south.ID, p.Pseudonym},
			{"under another study", admin, f.org.Slug, f.registry.ID, f.reg.ID, p.Pseudonym},
			{"under a site of another study", admin, f.org.Slug, f.study.ID, f.reg.ID, p.Pseudonym},
			{"of another organization", admin, f.org.Slug, f.trial2.ID, f.far.ID, theirs.Pseudonym},
			{"of another organization, by its own path", admin, f.other.Slug, f.trial2.ID, f.far.ID, theirs.Pseudonym},
			{"of another site, for a site investigator", f.confirmed(f.southInvestigator), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym},
			{"for an organization manager (ACL-06)", f.confirmed(f.manager), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym},
			{"for a study admin", f.confirmed(f.studyAdmin), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym},
			{"malformed", admin, f.org.Slug, f.study.ID, f.north.ID, "x' OR '1'='1"},
			{"unknown organization", admin, "nowhere", f.study.ID, f.north.ID, p.Pseudonym},
		}
		for _, c := range cases {
			_, errGet := f.svc.Get(ctx, c.a, c.slug, c.study, c.site, c.pseu)
			_, errReveal := f.svc.Reveal(ctx, c.a, c.slug, c.study, c.site, c.pseu)
			_, errErase := f.svc.Erase(ctx, c.a, c.slug, c.study, c.site, c.pseu)
			for what, err := range map[string]error{"get": errGet, "reveal": errReveal, "erase": errErase} {
				if !errs.Is(err, errs.NotFound) || err.Error() != missing.Error() {
					t.Errorf("%s %s: %v, want the answer for a missing participant", what, c.name, err)
				}
			}
		}
		// Nothing was erased on the way.
		for _, q := range []struct {
			who gate.Actor
			p   participants.Participant
		}{{admin, p}, {f.confirmed(f.otherAdmin), theirs}} {
			if rv, err := f.reveal(q.who, q.p); err != nil || rv.State != participants.IdentityRecorded {
				t.Errorf("after the attempts: %+v, %v", rv, err)
			}
		}
	})
}

func TestACL06_OnlyRolesGrantedItReIdentifyOrErase(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	p := f.enrol(t, f.investigator, f.north, ada())
	for _, c := range []struct {
		name            string
		a               gate.Actor
		reveal, erase   errs.Kind
		list, enrolKind errs.Kind
	}{
		// Those who see the participant but may not act are told so.
		{"data manager", f.dataManager, errs.Forbidden, errs.Forbidden, -1, -1},
		{"monitor", f.monitor, errs.Forbidden, errs.Forbidden, -1, errs.NotFound},
		{"site investigator", f.investigator, -1, errs.Forbidden, -1, -1},
		// Those who do not see the participant learn nothing.
		{"organization manager", f.manager, errs.NotFound, errs.NotFound, errs.NotFound, errs.NotFound},
		{"study admin", f.studyAdmin, errs.NotFound, errs.NotFound, errs.NotFound, errs.NotFound},
		{"investigator of another site", f.southInvestigator, errs.NotFound, errs.NotFound, errs.NotFound, errs.NotFound},
	} {
		a := f.confirmed(c.a)
		check := func(what string, err error, want errs.Kind) {
			t.Helper()
			if want == -1 && err != nil || want != -1 && !errs.Is(err, want) {
				t.Errorf("%s as %s: %v, want %v", what, c.name, err, want)
			}
		}
		_, err := f.svc.Reveal(ctx, a, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		check("reveal", err, c.reveal)
		_, err = f.svc.List(ctx, a, f.org.Slug, f.study.ID, f.north.ID, "", 0)
		check("list", err, c.list)
		_, err = f.svc.Enrol(ctx, a, f.org.Slug, f.study.ID, f.north.ID, nil)
		check("enrol", err, c.enrolKind)
		_, err = f.svc.Erase(ctx, a, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		check("erase", err, c.erase)
	}
	if rv, err := f.reveal(f.confirmed(f.admin), p); err != nil || rv.State != participants.IdentityRecorded {
		t.Errorf("after the refused erasures: %+v, %v", rv, err)
	}
}
